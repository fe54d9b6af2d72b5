"""Config loading: overrides, validation errors naming the key, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from progreid.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    override_config,
    save_config,
)


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_and_overrides_are_applied(tmp_path):
    path = write(tmp_path, {"optim": {"lr": 0.01}, "data": {"p": 8}})
    cfg = load_config(path, ["data.k=2", "model.embedding_dim=null", "optim.betas=[0.5, 0.9]"])
    assert cfg.optim.lr == 0.01 and cfg.data.p == 8 and cfg.data.k == 2
    assert cfg.model.embedding_dim is None and cfg.optim.betas == (0.5, 0.9)


def test_int_is_accepted_for_float():
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize(("override", "message"), [
    (["optim.lrr=1"], "--set optim.lrr=1: unknown key 'optim.lrr'"),
    (["nosuch.key=1"], "--set nosuch.key=1: unknown key 'nosuch'"),
    (["optim.lr=-0.1"], "--set optim.lr=-0.1: optim.lr = -0.1 is out of range"),
    (["optim.lr=0"], "--set optim.lr=0: optim.lr = 0 is out of range; must be greater than 0"),
    (["data.p=two"], "--set data.p=two: data.p = 'two' has the wrong type; expected int"),
    (["data.p=1.5"], "--set data.p=1.5: data.p = 1.5 has the wrong type; expected int"),
    (["train.amp=yes please"], "--set train.amp=yes please: train.amp = 'yes please' has "
     "the wrong type; expected bool"),
    (["model.name=resnet"], "--set model.name=resnet: model.name = 'resnet' is not allowed"),
    (["optim.betas=[0.9]"], "--set optim.betas=[0.9]: optim.betas = [0.9] has the wrong "
     "type; expected a list of 2 numbers"),
    (["optim.betas=[0.9, 1.5]"], "--set optim.betas=[0.9, 1.5]: optim.betas = [0.9, 1.5]: "
     "each beta must be in [0, 1)"),
    (["data.erase_p=1.5"], "--set data.erase_p=1.5: data.erase_p = 1.5 is out of range; "
     "must be at most 1.0"),
    (["schedule.milestones=[20, 10]"], "--set schedule.milestones=[20, 10]: "
     "schedule.milestones = [20, 10] must be increasing"),
    (["schedule.name=exponential", "schedule.e0=10", "schedule.e1=5"],
     "--set schedule.name=exponential, --set schedule.e0=10, --set schedule.e1=5: schedule.e1 = 5 "
     "must be greater than schedule.e0 = 10"),
    (["train.method=pla", "loss.metric=generalized_batch_hard", "loss.metric_params={}",
      "pla.lambda_range=[2, 0]"],
     "--set pla.lambda_range=[2, 0]: pla.lambda_range = [2.0, 0.0]: lower bound above upper "
     "bound"),
    (["pla.ei_samples=10"], "--set pla.ei_samples=10: section 'pla' applies to train.method = "
     "'pla' only"),
    (["train.method=trc", "loss.metric=top_rank_counter", "loss.metric_params={}",
      "train.epochs=3"],
     "--set train.method=trc, --set train.epochs=3: train.epochs is not used by train.method "
     "= 'trc'"),
    (["train.method=trc", "loss.metric=top_rank_counter", "loss.metric_params={}",
      "trc.vanilla_epochs=0", "trc.full_epochs=0"],
     "--set trc.vanilla_epochs=0, --set trc.full_epochs=0: trc.vanilla_epochs and "
     "trc.full_epochs are both 0: nothing to train"),
    (["optim.lr"], "expected key=value"),
    (["lr=1"], "section.name"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=None) as info:
        load_config(None, override)
    assert message in str(info.value)


def test_errors_name_the_file(tmp_path):
    path = write(tmp_path, {"data": {"height": "tall"}})
    with pytest.raises(ConfigError) as info:
        load_config(path, ["optim.lr=0.1"])  # a valid --set is not blamed
    assert str(info.value) == (f"{path}: data.height = 'tall' has the wrong type; expected int")


def test_set_errors_name_the_item_not_the_file(tmp_path):
    path = write(tmp_path, {"optim": {"lr": 0.01}})
    with pytest.raises(ConfigError) as info:
        load_config(path, ["data.p=8", "optim.lrr=0.1"])
    assert str(info.value).startswith("--set optim.lrr=0.1: unknown key 'optim.lrr'; valid keys "
                                      "here: optim.name, optim.lr,")
    assert str(path) not in str(info.value)
    with pytest.raises(ConfigError) as info:  # the last --set of a key is the one used
        load_config(path, ["data.k=1", "data.k=3", "data.p=1"])
    assert str(info.value).startswith("--set data.p=1: data.p = 1: the metric loss")
    with pytest.raises(ConfigError) as info:  # a whole section set by --set
        load_config(path, ["loss.metric_params={kk: 1}"])
    assert str(info.value).startswith("--set loss.metric_params={kk: 1}: unknown key "
                                      "'loss.metric_params.kk' of metric loss 'batch_hard'")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)
    section = tmp_path / "section.yaml"
    section.write_text("data: 3\n")
    with pytest.raises(ConfigError, match="data must be a mapping"):
        load_config(section)


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ["optim.lr=0.002", "data.options={variant: labeled}"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_override_config_validates():
    cfg = load_config(None)
    assert override_config(cfg, ["eval.rerank=true"]).eval.rerank is True
    with pytest.raises(ConfigError) as info:
        override_config(cfg, ["eval.rerank=true", "eval.k1=0"], source="--set")
    assert str(info.value) == ("--set eval.k1=0: eval.k1 = 0 is out of range; must be at least 1")


ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs").rglob("*.yaml")) + [
    ROOT / "src" / "progreid" / "recipes" / "demo.yaml"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_shipped_recipes_load_with_their_values(recipe):
    """Every key a recipe sets has its value (YAML 1.1 numbers like 3e-4 read as floats), the
    rest the defaults, and only the method's own section is kept."""
    raw = yaml.safe_load(recipe.read_text())
    loaded = config_to_dict(load_config(recipe))
    defaults = config_to_dict(Config())
    method = raw["train"].get("method", "standard")
    assert {"pla", "trc"} & loaded.keys() == {"pla", "trc"} & {method}
    for section, values in loaded.items():
        written = raw.get(section) or {}
        for key, value in values.items():
            if key not in written:
                assert value == defaults.get(section, {key: value})[key], f"{section}.{key}"
            elif isinstance(value, float):
                assert value == float(written[key]), f"{section}.{key}"
            else:
                assert value == written[key], f"{section}.{key}"
