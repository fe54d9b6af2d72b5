"""progreid.models: backbones (torchvision-compatible ResNets, MobileNetV2, EfficientNet-Lite)
and the ReID networks built on them."""

from progreid.models.backbones import BACKBONES, build_backbone
from progreid.models.baseline import Baseline, NeckClassifier, pool_stripes
from progreid.models.mgn import MGN
from progreid.models.output import ModelOutput
from progreid.models.pla import PLANet
from progreid.models.pretrained import (
    IMAGENET_URLS,
    LoadedKeys,
    PretrainedWeightsError,
    load_pretrained,
)
from progreid.models.registry import PAPER_DEFAULTS, build_model
from progreid.models.resnet import ResNet, resnet18, resnet34, resnet50

__all__ = [
    "BACKBONES", "IMAGENET_URLS", "MGN", "PAPER_DEFAULTS", "Baseline", "LoadedKeys",
    "ModelOutput", "NeckClassifier", "PLANet", "PretrainedWeightsError", "ResNet",
    "build_backbone", "build_model", "load_pretrained",
    "pool_stripes", "resnet18", "resnet34", "resnet50",
]
