"""Load torchvision-format ImageNet weights into a progreid :class:`ResNet`."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from progreid.models.resnet import ResNet

log = logging.getLogger(__name__)

IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}


class LoadedKeys(NamedTuple):
    """Keys of the backbone the file did not provide, and keys of the file the backbone lacks."""

    missing: list[str]
    unexpected: list[str]


def _read_state_dict(spec: str, backbone: ResNet) -> tuple[str, Mapping[str, object]]:
    """The state dict named by ``spec`` (a local path or ``imagenet``) and a label for messages."""
    if spec == "imagenet":
        url = IMAGENET_URLS[backbone.arch]
        if backbone.width != 1:
            raise ValueError(f"pretrained='imagenet' needs width 1.0 (the {backbone.arch} ImageNet "
                             f"weights have full width), got width={backbone.width}")
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                       check_hash=True, weights_only=True)
        except OSError as exc:  # URLError, HTTPError, socket timeouts, SSL errors
            raise RuntimeError(
                f"cannot download the {backbone.arch} ImageNet weights from {url}: no network is "
                f"available ({exc}). Download the file elsewhere and pass its local path as "
                "pretrained: PATH instead.") from exc
        return url, state
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} "
                                "(expected a torchvision-format .pth state dict, or 'imagenet')")
    try:
        return str(path), torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path}: cannot be read as a torch state dict "
                         f"(torch.load with weights_only=True): {exc}") from exc


def load_pretrained(backbone: ResNet, spec: str) -> LoadedKeys:
    """Copy a torchvision ResNet state dict into ``backbone`` (non-strict, ``fc.*`` ignored).

    ``spec`` is a local ``.pth`` path or ``"imagenet"`` (torchvision's official weights through
    ``torch.hub``). Missing and unexpected keys are logged and returned; a tensor whose shape
    differs from the backbone's is an error naming the key.
    """
    source, state = _read_state_dict(spec, backbone)
    if not isinstance(state, Mapping) or not all(
            isinstance(key, str) and isinstance(value, Tensor) for key, value in state.items()):
        raise ValueError(f"{source}: expected a state dict (a mapping of parameter names to "
                         f"tensors), got {type(state).__name__}")
    weights = {key: value for key, value in state.items() if not key.startswith("fc.")}
    own = backbone.state_dict()
    mismatched = [f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}"
                  for key, value in weights.items()
                  if key in own and value.shape != own[key].shape]
    if mismatched:
        raise ValueError(f"{source}: {len(mismatched)} tensor shape(s) do not fit the "
                         f"{backbone.arch} at width {backbone.width}: " + "; ".join(mismatched[:5])
                         + (" ..." if len(mismatched) > 5 else ""))
    result = backbone.load_state_dict(weights, strict=False)
    loaded = LoadedKeys(list(result.missing_keys), list(result.unexpected_keys))
    log.info("loaded %d tensors into %s from %s", len(weights) - len(loaded.unexpected),
             backbone.arch, source)
    if loaded.missing:
        log.warning("%s: %d backbone keys missing from the file: %s", source,
                    len(loaded.missing), ", ".join(loaded.missing))
    if loaded.unexpected:
        log.warning("%s: %d unexpected keys ignored: %s", source, len(loaded.unexpected),
                    ", ".join(loaded.unexpected))
    return loaded
