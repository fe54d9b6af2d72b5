"""Loss terms by name: typed terms equal the loss functions; a recipe with a misspelled loss, an
unknown loss parameter, the wrong metric for PLA or a section of another method is refused when
it loads, before any file is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reliability_support import run_cli

from progreid.losses import (
    METRIC_LOSSES,
    BatchHard,
    GeneralizedBatchHard,
    Quadruplet,
    TopRankCounter,
    Triplet,
    batch_hard_triplet,
    generalized_batch_hard_triplet,
    metric_params,
    metric_term,
    quadruplet,
    random_triplet,
    top_rank_counter,
)

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
EMBEDDINGS = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
REPO = Path(__file__).resolve().parents[1]


def test_registry_names() -> None:
    assert {"batch_hard": BatchHard,
                             "generalized_batch_hard": GeneralizedBatchHard,
                             "triplet": Triplet, "quadruplet": Quadruplet,
                             "top_rank_counter": TopRankCounter} == METRIC_LOSSES
    assert metric_params("generalized_batch_hard") == ["k", "p", "margin"]


@pytest.mark.parametrize(("name", "params", "function"), [
    ("batch_hard", {"margin": 0.2}, batch_hard_triplet),
    ("batch_hard", {"margin": None}, batch_hard_triplet),
    ("generalized_batch_hard", {"k": 2, "p": 3, "margin": 0.1}, generalized_batch_hard_triplet),
    ("quadruplet", {"margin1": 0.4, "margin2": 0.2}, quadruplet),
    ("top_rank_counter", {"k": 20.0, "phase": "vanilla"}, top_rank_counter),
])
def test_term_equals_direct_call(name: str, params: dict, function) -> None:
    torch.testing.assert_close(metric_term(name, params)(EMBEDDINGS, LABELS),
                               function(EMBEDDINGS, LABELS, **params))


def test_triplet_term_draws_from_the_global_generator() -> None:
    torch.manual_seed(1)
    via_term = Triplet(0.5)(EMBEDDINGS, LABELS)
    torch.manual_seed(1)
    torch.testing.assert_close(via_term, random_triplet(EMBEDDINGS, LABELS, 0.5))


def test_unknown_name_is_named() -> None:
    with pytest.raises(ValueError, match="'circle'.*batch_hard"):
        metric_term("circle", {})


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ValueError, match="'lam'.*'generalized_batch_hard'"):
        metric_term("generalized_batch_hard", {"lam": 1.0})


@pytest.mark.parametrize(("name", "params", "match"), [
    ("top_rank_counter", {"phase": "foo"}, "phase"),
    ("top_rank_counter", {"k": 0}, "k must be > 0"),
    ("generalized_batch_hard", {"p": 0}, "p must be an integer >= 1"),
    ("generalized_batch_hard", {"k": -2}, "k must be an integer >= 1"),
    ("batch_hard", {"margin": "0.3"}, "margin"),
])
def test_invalid_values_are_named(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metric_term(name, params)


# ----------------------------------------------------------------------------- at load time

@pytest.mark.parametrize(("recipe", "overrides", "message"), [
    ("pla/cpu-small.yaml", ["loss.metric=generalised_batch_hrad"],
     "loss.metric = 'generalised_batch_hrad' is not allowed; choose one of 'batch_hard', "
     "'generalized_batch_hard', 'triplet', 'quadruplet', 'top_rank_counter'"),
    ("pla/cpu-small.yaml", ["loss.metric_params={kk: 3}"],
     "unknown key 'loss.metric_params.kk' of metric loss 'generalized_batch_hard'; valid keys "
     "here: loss.metric_params.k, loss.metric_params.p, loss.metric_params.margin"),
    ("pla/cpu-small.yaml", ["loss.metric=batch_hard", "loss.metric_params={margin: 0.3}"],
     "train.method = 'pla' needs loss.metric = 'generalized_batch_hard', got 'batch_hard'"),
    ("pla/cpu-small.yaml", ["train.method=standard"],
     "section 'pla' applies to train.method = 'pla' only, but train.method = 'standard'"),
    ("pla/cpu-small.yaml", ["loss.metric_params={k: 0}"],
     "loss.metric_params of 'generalized_batch_hard': k must be an integer >= 1"),
])
def test_bad_loss_setups_are_refused_before_any_file(capsys, tmp_path: Path, recipe: str,
                                                       overrides: list[str],
                                                       message: str) -> None:
    run_dir = tmp_path / "run"
    sets = [a for o in [*overrides, f"train.output_dir={run_dir}"] for a in ("--set", o)]
    code, err = run_cli(capsys, "train", REPO / "configs" / recipe, *sets)
    assert code == 2 and message in err
    assert not run_dir.exists()
