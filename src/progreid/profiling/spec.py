"""What to profile: a network described by its ``build_model`` arguments, so that a subprocess
can rebuild it (peak-memory measurement) without pickling weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from progreid.config import Config, load_config
from progreid.models import build_model

#: Training identities of Market-1501: the classifier size used when a recipe is profiled on its
#: own (the classifier is excluded from the inference counts anyway).
DEFAULT_NUM_CLASSES = 751


@dataclass(frozen=True)
class ModelSpec:
    """A network to profile: a row label, ``build_model`` keyword arguments, classifier size."""

    label: str
    model: dict[str, Any] = field(default_factory=dict)
    num_classes: int = DEFAULT_NUM_CLASSES

    def build(self) -> nn.Module:
        """The network with fresh (random) weights; profiling never needs trained ones."""
        return build_model(num_classes=self.num_classes, **{**self.model, "pretrained": None})

    @classmethod
    def from_config(cls, cfg: Config, label: str,
                    num_classes: int = DEFAULT_NUM_CLASSES) -> ModelSpec:
        return cls(label, cfg.model.model_dump(), num_classes)


#: PLA Sec. 4.5 at 256 x 128: the plain ResNet-50 (last stride 2, the usual 2.7 G Mul-Add
#: network), the PLA two-head network as its recipes build it (last stride 2; the paper does not
#: state it) and MGN (part branches with the stride 1 of its paper).
COMPARISON: tuple[ModelSpec, ...] = (
    ModelSpec("ResNet-50 baseline", {"name": "baseline", "backbone": "resnet50",
                                     "last_stride": 2}),
    ModelSpec("PLA two-head", {"name": "pla", "backbone": "resnet50", "last_stride": 2}),
    ModelSpec("MGN", {"name": "mgn", "backbone": "resnet50", "last_stride": 1}),
)


def spec_from_path(path: str | Path) -> tuple[ModelSpec, Config]:
    """A YAML recipe or a run folder / ``model.pt`` -> its network spec and config.

    A run's spec takes the classifier size it was trained with; a recipe's the Market-1501 one.
    """
    from progreid.deploy.bundle import load_bundle

    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        cfg = load_config(path)
        return ModelSpec.from_config(cfg, path.stem), cfg
    if not path.exists():
        raise FileNotFoundError(f"{path}: neither a YAML recipe nor a run folder / model.pt")
    bundle = load_bundle(path)
    label = path.name if path.is_dir() else path.parent.name
    return ModelSpec.from_config(bundle.config, label, bundle.num_classes), bundle.config
