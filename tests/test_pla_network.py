"""PLA's network (Sec. 3.1) and the Fig. 3 recipes: the test feature's halves on one scale, the
paper's heads by default, and the four CUHK01 and Market-1501 recipes (CE only, triplet only,
the concatenation with w fixed, PLA) on one backbone, data, schedule and kept-epoch budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from progreid.cli import main
from progreid.config import load_config
from progreid.models import build_model

REPO = Path(__file__).resolve().parents[1]
FIG3 = {"": "pla", "-ce": "pla_ce", "-triplet": "pla_triplet", "-fixed": "pla"}
#: (folder, recipe prefix, the recipe whose data, optimiser, schedule, evaluation and kept budget
#: they share, the baseline whose input size and backbone they share). Market-1501's PLA family
#: counts its budget in 50-batch epochs (PLA's explorations are 100 batches there).
SETS = [("cuhk01", "pla", "baseline", "baseline"),
        ("market1501", "cpu-pla", "cpu-pla-ce", "cpu-baseline")]
RECIPES = [REPO / "configs" / folder / f"{prefix}{suffix}.yaml"
           for folder, prefix, *_ in SETS for suffix in FIG3]


# ----------------------------------------------------------------------------- the network

def tiny_net(name: str, bnneck: bool | None = None) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(7, name, "resnet18", width=0.125, embedding_dim=16, bnneck=bnneck)


@pytest.mark.parametrize("bnneck", [None, True])
def test_test_feature_joins_two_unit_halves(bnneck: bool | None, one_torch_thread) -> None:
    """[ce | triplet], each half L2-normalised: each half's squared distance is in [0, 4]
    whatever the scale its loss gave it (with or without the BNNeck variant)."""
    net = tiny_net("pla", bnneck).eval()
    embedding = net(torch.randn(5, 3, 32, 16))
    assert embedding.shape == (5, 32)
    for half in embedding.split(16, dim=1):
        assert torch.allclose(half.norm(dim=1), torch.ones(5))


@pytest.mark.parametrize("name", ["pla_ce", "pla_triplet"])
def test_single_head_variants_give_one_unit_feature(name: str, one_torch_thread) -> None:
    embedding = tiny_net(name).eval()(torch.randn(3, 3, 32, 16))
    assert embedding.shape == (3, 32)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(3))


def test_paper_heads_by_default(one_torch_thread) -> None:
    """PLA Sec. 3.1: max pooling, plain 1x1-conv heads, no BNNeck; the losses see raw features."""
    net = tiny_net("pla").train()
    assert net.pooling == "max"
    assert isinstance(net.ce_classifier.neck, torch.nn.Identity)
    for head in (net.ce_head, net.triplet_head):
        assert head.kernel_size == (1, 1) and head.in_channels == net.backbone.out_channels
    output = net(torch.randn(4, 3, 32, 16))
    assert not torch.allclose(output.metric_features[0].norm(dim=1), torch.ones(4))
    assert output.logits[0].shape == (4, 7)


# ----------------------------------------------------------------------------- Fig. 3 recipes

@pytest.mark.parametrize(("folder", "prefix", "shared", "baseline"), SETS)
def test_fig3_recipes_share_all_but_heads_and_loss(folder: str, prefix: str, shared: str,
                                                   baseline: str) -> None:
    reference = load_config(REPO / "configs" / folder / f"{shared}.yaml")
    network = load_config(REPO / "configs" / folder / f"{baseline}.yaml")
    for suffix, model_name in FIG3.items():
        cfg = load_config(REPO / "configs" / folder / f"{prefix}{suffix}.yaml")
        assert (cfg.data, cfg.optim, cfg.schedule, cfg.eval) == \
            (reference.data, reference.optim, reference.schedule, reference.eval), suffix
        assert (cfg.data.height, cfg.data.width, cfg.model.frozen_stride) == \
            (network.data.height, network.data.width, network.model.frozen_stride), suffix
        kept = cfg.pla.max_epochs if cfg.train.method == "pla" else cfg.train.epochs
        assert kept == reference.train.epochs, suffix
        model = cfg.model
        assert (model.name, model.backbone, model.pretrained, model.pooling, model.bnneck) == \
            (model_name, reference.model.backbone, "imagenet", "max", False), suffix
        assert cfg.loss.label_smoothing == 0.0
    fixed = load_config(REPO / "configs" / folder / f"{prefix}-fixed.yaml").loss
    assert (fixed.metric, fixed.metric_weight, fixed.metric_params) == \
        ("generalized_batch_hard", 1.0, {"k": 1, "p": 1, "margin": 0.0})
    triplet = load_config(REPO / "configs" / folder / f"{prefix}-triplet.yaml").loss
    assert triplet.ce_weight == 0.0 and triplet.metric_params == fixed.metric_params
    assert load_config(REPO / "configs" / folder / f"{prefix}-ce.yaml").loss.metric is None


TINY = ["data.dataset=synthetic", "data.height=64", "data.width=32", "data.p=4",
        "data.batches_per_epoch=1", "model.pretrained=null", "model.width=0.25",
        "model.embedding_dim=8", "train.progress=false", "train.device=cpu",
        "train.threads=1", "eval.batch_size=64", "eval.ten_crop=false",
        "eval.cpu_runtime=torch"]  # an ONNX export costs more than these tiny evaluations
TINY_PLA = ["pla.initial_candidates=2", "pla.explore_epochs=2", "pla.exploit_epochs=1",
            "pla.max_epochs=1", "pla.ei_samples=16"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_fig3_recipe_trains(recipe: Path, tiny_pedestrians, tmp_path: Path) -> None:
    """Each recipe as shipped but for size: one batch an epoch on the tiny synthetic set."""
    cfg = load_config(recipe)
    budget = TINY_PLA if cfg.train.method == "pla" else ["train.epochs=1"]
    overrides = [*TINY, *budget, f"data.root={tiny_pedestrians(seed=1)}",
                 f"train.output_dir={tmp_path / 'run'}"]
    assert main(["train", str(recipe), *(a for o in overrides for a in ("--set", o))]) == 0
    assert (tmp_path / "run" / "model.pt").is_file()
