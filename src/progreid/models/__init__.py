"""progreid.models: torchvision-compatible ResNets and the ReID networks built on them."""

from progreid.models.baseline import Baseline, NeckClassifier, pool_stripes
from progreid.models.mgn import MGN
from progreid.models.output import ModelOutput
from progreid.models.pla import PLANet
from progreid.models.pretrained import IMAGENET_URLS, LoadedKeys, load_pretrained
from progreid.models.registry import PAPER_DEFAULTS, build_model
from progreid.models.resnet import ResNet, build_resnet, resnet18, resnet34, resnet50

__all__ = [
    "IMAGENET_URLS", "MGN", "PAPER_DEFAULTS", "Baseline", "LoadedKeys", "ModelOutput",
    "NeckClassifier", "PLANet", "ResNet", "build_model", "build_resnet", "load_pretrained",
    "pool_stripes", "resnet18", "resnet34", "resnet50",
]
