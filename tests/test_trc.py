"""TRC end to end: phase switch, per-phase learning-rate restart, S histograms (TRC Fig. 3),
resume in phase 2, the plot command, and MGN's loss terms for TRC-MGN."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from progreid.cli import main
from progreid.config import ConfigError, load_config
from progreid.losses import CrossEntropy, TopRankCounter
from progreid.models import ModelOutput, build_model
from progreid.training.hooks import training_hooks
from progreid.training.objective import Objective
from progreid.training.trainer import EpochStats, Trainer
from progreid.training.trc import PhaseProgress, SHistogram, TRCPlan
from progreid.utils.checkpoint import CheckpointError
from progreid.utils.metrics_log import MetricsLog, events, read_records

REPO = Path(__file__).resolve().parents[1]
CPU_SMALL = REPO / "configs" / "trc" / "cpu-small.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- references

def reference_s_values(features: np.ndarray, labels: np.ndarray, k: float) -> list[float]:
    """S(a, p, N_a; k) of TRC Eq. 4 for every anchor/positive pair, by plain loops."""
    values = []
    n = len(labels)
    for a in range(n):
        negatives = [np.linalg.norm(features[a] - features[j]) for j in range(n)
                     if labels[j] != labels[a]]
        if not negatives:
            continue
        nearest = min(negatives)
        for p in range(n):
            if p != a and labels[p] == labels[a]:
                d_ap = np.linalg.norm(features[a] - features[p])
                values.append(1.0 / (1.0 + math.exp(-k * (d_ap - nearest))))
    return values


def reference_histogram(values: list[float], bins: int) -> list[int]:
    counts = [0] * bins
    for v in values:
        counts[min(int(v * bins), bins - 1)] += 1
    return counts


# ----------------------------------------------------------------------------- fake trainer

class FakeTrainer(Trainer):
    """Trainer's loop without a model: records (phase, phase-local epoch) per epoch and
    checkpoints."""

    def __init__(self, overrides: list[str], epoch: int = 0) -> None:
        self.cfg = load_config(CPU_SMALL, ["train.checkpoint_every=2", *overrides])
        self.epoch = epoch
        self.schedule_start = 0
        self.is_main = True
        self.calls: list[tuple[str, int]] = []
        self.saved: list[tuple[int, dict]] = []
        generator = torch.Generator().manual_seed(0)
        self.features = torch.randn(12, 5, generator=generator)
        self.labels = torch.arange(4).repeat_interleave(3)

    def train_epoch(self, objective: Objective, hooks=()) -> EpochStats:
        self.calls.append((objective.metric.phase, self.epoch - self.schedule_start))
        for hook in hooks:
            hook.after_step(self, ModelOutput([], [self.features], self.features), self.labels)
        self.epoch += 1
        return EpochStats(self.epoch, {"loss": 0.25, "metric": 0.25}, 1e-3, 0.5, 12)

    def save_checkpoint(self, extra=None, path=None) -> None:
        self.saved.append((self.epoch, dict(extra)))


def run_trc(trainer: FakeTrainer, objective: Objective, log: MetricsLog, progress: dict) -> None:
    plan = TRCPlan(trainer.cfg, objective, log, progress)
    trainer.fit(plan, training_hooks(plan, log))


def trc_objective() -> Objective:
    return Objective(TopRankCounter(k=10.0), ce_weight=0.0)


def test_phase_switch_objective_per_epoch_and_checkpoints(tmp_path: Path) -> None:
    trainer = FakeTrainer(["trc.vanilla_epochs=3", "trc.full_epochs=2"])
    log = MetricsLog(tmp_path / "metrics.jsonl")
    run_trc(trainer, trc_objective(), log, {})
    assert trainer.calls == [("vanilla", 0), ("vanilla", 1), ("vanilla", 2),
                             ("full", 0), ("full", 1)]
    # every checkpoint_every (2) epochs and at the end of each phase
    assert trainer.saved == [(2, {"phase": "vanilla", "phase_epoch": 2}),
                             (3, {"phase": "vanilla", "phase_epoch": 3}),
                             (4, {"phase": "full", "phase_epoch": 1}),
                             (5, {"phase": "full", "phase_epoch": 2})]
    epochs = events(read_records(tmp_path), "epoch")
    assert [(r["epoch"], r["phase"], r["phase_epoch"]) for r in epochs] == [
        (1, "vanilla", 1), (2, "vanilla", 2), (3, "vanilla", 3), (4, "full", 1), (5, "full", 2)]
    histograms = events(read_records(tmp_path), "trc_histogram")
    assert [(r["epoch"], r["phase"]) for r in histograms] == [
        (r["epoch"], r["phase"]) for r in epochs]
    expected = reference_histogram(reference_s_values(trainer.features.numpy(),
                                                      trainer.labels.numpy(), 10.0), 20)
    assert all(r["counts"] == expected for r in histograms)


@pytest.mark.parametrize(("progress", "epoch", "calls"), [
    ({"phase": "full", "phase_epoch": 1}, 4, [("full", 1)]),
    ({"phase": "vanilla", "phase_epoch": 3}, 3, [("full", 0), ("full", 1)]),
    ({"phase": "vanilla", "phase_epoch": 1}, 1, [("vanilla", 1), ("vanilla", 2), ("full", 0),
                                                 ("full", 1)]),
    ({"phase": "full", "phase_epoch": 2}, 5, []),
])
def test_resume_continues_in_the_recorded_phase(tmp_path: Path, progress, epoch, calls) -> None:
    trainer = FakeTrainer(["trc.vanilla_epochs=3", "trc.full_epochs=2"], epoch=epoch)
    run_trc(trainer, trc_objective(), MetricsLog(tmp_path / "m.jsonl"), progress)
    assert trainer.calls == calls


@pytest.mark.parametrize(("vanilla", "full", "calls"), [
    (2, 0, [("vanilla", 0), ("vanilla", 1)]),
    (0, 2, [("full", 0), ("full", 1)]),
])
def test_single_phase_budgets(tmp_path: Path, vanilla: int, full: int, calls) -> None:
    trainer = FakeTrainer([f"trc.vanilla_epochs={vanilla}", f"trc.full_epochs={full}"])
    run_trc(trainer, trc_objective(), MetricsLog(tmp_path / "m.jsonl"), {})
    assert trainer.calls == calls


def test_bad_setups_are_clear_errors(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "m.jsonl")
    with pytest.raises(ConfigError, match="loss.metric"):
        FakeTrainer(["loss.metric=batch_hard"])
    with pytest.raises(ConfigError, match="both 0"):
        run_trc(FakeTrainer(["trc.vanilla_epochs=0", "trc.full_epochs=0"]), trc_objective(),
                log, {})
    with pytest.raises(CheckpointError, match="not a TRC progress record"):
        run_trc(FakeTrainer([]), trc_objective(), log, {"round": 3})
    with pytest.raises(CheckpointError, match="phase_epoch"):
        PhaseProgress.from_extra({"phase": "full", "phase_epoch": -1})


# ----------------------------------------------------------------------------- histogram

@pytest.mark.parametrize("k", [1.0, 3.0, 10.0])
def test_histogram_equals_reference_over_batches_and_features(k: float) -> None:
    generator = torch.Generator().manual_seed(int(k))
    histogram = SHistogram(bins=7, term=TopRankCounter(k=k))
    values: list[float] = []
    for _ in range(2):
        labels = torch.randint(0, 4, (10,), generator=generator)
        features = [torch.randn(10, 6, generator=generator) for _ in range(3)]
        histogram.after_step(None, ModelOutput([], features, features[0]), labels)
        for f in features:
            values += reference_s_values(f.numpy(), labels.numpy(), k)
    record = histogram.record()
    assert record["counts"] == reference_histogram(values, 7)
    assert record["pairs"] == len(values)
    assert record["violations"] == sum(v >= 0.5 for v in values)
    assert record["edges"] == pytest.approx(np.linspace(0, 1, 8).tolist())
    assert (record["k"], record["features"], record["scale"]) == (k, "raw", 1.0)


def test_histogram_default_term_and_empty_epoch() -> None:
    features = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    histogram = SHistogram(bins=4)  # the loss's defaults (k = 10, raw features)
    histogram.after_step(None, ModelOutput([], [features], features), labels)
    assert histogram.record()["counts"] == reference_histogram(
        reference_s_values(features.numpy(), labels.numpy(), 10.0), 4)
    assert SHistogram(bins=3).record() == {
        "edges": pytest.approx([0, 1 / 3, 2 / 3, 1]), "counts": [0, 0, 0], "pairs": 0,
        "violations": 0, "saturated": 0, "anchors": 0, "active_anchors": 0,
        "feature_norm": None, "k": 10.0, "features": "raw", "scale": 1.0}


def test_histogram_counts_saturated_pairs_and_active_anchors_per_phase() -> None:
    # Three identities on a line, k = 10; k Delta per anchor (one positive each):
    # -2.5 (satisfied), 17.5 (violated, saturated), 2.5, 0 and 2.5 (violated), -5 (saturated).
    x = torch.tensor([[0.0], [2.0], [2.25], [2.75], [3.25], [4.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    expected = {"pairs": 6, "violations": 4, "saturated": 2, "anchors": 6}
    for phase, active in (("vanilla", 3), ("full", 4)):
        histogram = SHistogram(bins=2, term=TopRankCounter(phase=phase))
        histogram.after_step(None, ModelOutput([], [x], x), labels)
        record = histogram.record()
        assert {key: record[key] for key in expected} == expected
        assert record["active_anchors"] == active
        assert record["feature_norm"] == pytest.approx(14.25 / 6)
    # normalised, the points become -1 or +1: |k Delta| <= 2 k, nothing saturates at k = 1
    histogram = SHistogram(bins=2, term=TopRankCounter(k=1.0, features="normalized"))
    histogram.after_step(None, ModelOutput([], [x - 3.0], x), labels)
    record = histogram.record()
    assert (record["saturated"], record["active_anchors"], record["features"]) == (
        0, 6, "normalized")


def test_histogram_follows_the_stage_term(tmp_path: Path) -> None:
    trainer = FakeTrainer(["trc.vanilla_epochs=1", "trc.full_epochs=1"])
    term = TopRankCounter(k=10.0, features="normalized", scale=2.0)
    run_trc(trainer, Objective(term, ce_weight=0.0), MetricsLog(tmp_path / "metrics.jsonl"),
            {})
    histograms = events(read_records(tmp_path), "trc_histogram")
    normalized = F.normalize(trainer.features, dim=1) * 2.0
    expected = reference_histogram(reference_s_values(normalized.numpy(),
                                                      trainer.labels.numpy(), 10.0), 20)
    assert [(r["phase"], r["features"], r["scale"]) for r in histograms] == [
        ("vanilla", "normalized", 2.0), ("full", "normalized", 2.0)]
    assert all(r["counts"] == expected for r in histograms)


# ----------------------------------------------------------------------------- TRC-MGN terms

def test_mgn_objective_is_mean_of_eight_ce_and_three_trc_terms() -> None:
    torch.manual_seed(0)
    model = build_model(5, "mgn", backbone="resnet18", width=0.125, embedding_dim=8).train()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    output = model(torch.randn(8, 3, 48, 24))
    assert len(output.logits) == 8 and len(output.metric_features) == 3
    objective = Objective(TopRankCounter(k=10.0, phase="full"), ce=CrossEntropy(0.0))
    loss, terms = objective(output, labels)
    ce = sum(F.cross_entropy(logits, labels).item() for logits in output.logits) / 8
    trc = sum(np.sum(reference_s_values(f.detach().numpy(), labels.numpy(), 10.0)) / 8
              for f in output.metric_features) / 3  # 8 anchor/positive pairs per feature
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert terms["metric"].item() == pytest.approx(trc, rel=1e-5)
    assert loss.item() == pytest.approx(ce + trc, rel=1e-5)


# ----------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def tiny_root(tiny_pedestrians) -> Path:
    return tiny_pedestrians(seed=3)


def train_tiny(root: Path, run_dir: Path, vanilla: int, full: int, resume: bool = False) -> int:
    """``progreid train configs/trc/cpu-small.yaml`` on the tiny synthetic set, one PK batch of
    4 x 4 images an epoch, the step scheme with a milestone at phase epoch 1."""
    overrides = ["data.dataset=synthetic", f"data.root={root}", "data.height=32", "data.width=16",
                 "data.p=4", "data.k=4", "data.batches_per_epoch=1", "data.workers=0",
                 "model.width=0.125", "optim.lr=0.001", "schedule.milestones=[1]",
                 "train.progress=false", "train.device=cpu", f"train.output_dir={run_dir}",
                 "train.checkpoint_every=1", f"trc.vanilla_epochs={vanilla}",
                 f"trc.full_epochs={full}", "trc.histogram_bins=10", "eval.batch_size=64"]
    args = ["train", str(CPU_SMALL), *(a for o in overrides for a in ("--set", o))]
    return main(args + (["--resume"] if resume else []))


def records(run_dir: Path, event: str) -> list[dict]:
    return events(read_records(run_dir), event)


@pytest.fixture(scope="module")
def resumed_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both phases, stopped after phase 2's first epoch and resumed with a longer phase 2."""
    run_dir = tmp_path_factory.mktemp("runs") / "resumed"
    assert train_tiny(tiny_root, run_dir, vanilla=2, full=1) == 0
    assert train_tiny(tiny_root, run_dir, vanilla=2, full=2, resume=True) == 0
    return run_dir


def test_train_runs_both_phases_and_resumes_in_phase_two(resumed_run: Path) -> None:
    epochs = records(resumed_run, "epoch")
    assert [(r["epoch"], r["phase"], r["phase_epoch"]) for r in epochs] == [
        (1, "vanilla", 1), (2, "vanilla", 2), (3, "full", 1), (4, "full", 2)]
    assert [r["epoch"] for r in records(resumed_run, "resume")] == [3]
    # the step scheme (milestone at phase epoch 1, gamma 0.1) restarts with each phase
    assert [r["lr"] for r in epochs] == pytest.approx([1e-3, 1e-4, 1e-3, 1e-4])
    histograms = records(resumed_run, "trc_histogram")
    # one batch of 4 identities x 4 images: 16 anchors x 3 positives
    assert [(r["epoch"], r["phase"], r["pairs"]) for r in histograms] == [
        (1, "vanilla", 48), (2, "vanilla", 48), (3, "full", 48), (4, "full", 48)]
    assert all(len(r["counts"]) == 10 and len(r["edges"]) == 11 for r in histograms)
    result = json.loads((resumed_run / "results.json").read_text())
    assert result["epoch"] == 4 and 0 <= result["rank1"] <= 100


def test_resumed_run_equals_uninterrupted_run(resumed_run: Path, tiny_root: Path,
                                              tmp_path: Path) -> None:
    run_dir = tmp_path / "uninterrupted"
    assert train_tiny(tiny_root, run_dir, vanilla=2, full=2) == 0
    assert ([r["loss"] for r in records(run_dir, "epoch")]
            == [r["loss"] for r in records(resumed_run, "epoch")])
    assert (json.loads((run_dir / "results.json").read_text())
            == json.loads((resumed_run / "results.json").read_text()))
    weights = [torch.load(d / "checkpoints" / "last.pt", weights_only=True)["trainer"]["model"]
               for d in (run_dir, resumed_run)]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[1])


def test_plot_writes_pngs(resumed_run: Path) -> None:
    assert main(["plot", str(resumed_run), "--histogram-epochs", "2"]) == 0
    names = sorted(p.name for p in (resumed_run / "plots").iterdir())
    assert names == ["accuracy.png", "losses.png", "trc_histograms.png"]
    from PIL import Image

    for name in names:
        path = resumed_run / "plots" / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()


# ----------------------------------------------------------------------------- plot command

def test_plot_draws_pla_trace_from_pla_round_records(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for round_ in range(3):
        w = {"lambda": 0.5 + round_, "margin": 0.1, "k": 2, "p": 3}
        log.write("pla_round", epoch=10 * round_, round=round_,
                  candidates=[{"index": 0, "w": w, "f": 0.3 / (round_ + 1)},
                              {"index": 1, "w": w, "f": None}],
                  proposal={"w": w, "log_ei": -1.0}, origin=10 * round_,
                  exploit_losses=[2.0], best_loss=2.0, best_epoch=10 * round_ + 1)
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pla_trace.png"]
    assert (tmp_path / "out" / "pla_trace.png").read_bytes()[:8] == PNG_SIGNATURE


def test_plot_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "no metrics log" in capsys.readouterr().err
    MetricsLog(tmp_path / "metrics.jsonl").write("start", epoch=0, method="standard",
                                                  train_images=8, train_ids=2)
    assert main(["plot", str(tmp_path)]) == 1
    assert "nothing to plot" in capsys.readouterr().err
    MetricsLog(tmp_path / "metrics.jsonl").write("epoch", epoch=1, loss=1.0, lr=0.1, seconds=1.0,
                                                  images_per_second=8.0)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert main(["plot", str(tmp_path)]) == 2
    assert "progreid[plot]" in capsys.readouterr().err
