"""``train.tensorboard: true``: every number of ``metrics.jsonl`` is in ``RUN/tensorboard/``, read
back with TensorBoard's own reader, also across a crash and ``--resume``; without the package,
the config is refused before anything is written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from progreid.cli import main
from progreid.training.trainer import Trainer
from progreid.utils.metrics_log import read_records

pytest.importorskip("tensorboard", reason="the 'tensorboard' extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

CPU_SMALL = Path(__file__).resolve().parents[1] / "configs" / "trc" / "cpu-small.yaml"
CRASH_EPOCH = 3


def train_args(root: Path, run_dir: Path) -> list[str]:
    """TRC (one vanilla epoch, two full ones) on the tiny set, evaluated every epoch."""
    overrides = ["data.dataset=synthetic", f"data.root={root}", "data.height=32", "data.width=16",
                 "data.p=4", "data.k=4", "data.batches_per_epoch=1", "data.workers=0",
                 "data.cache=false", "model.width=0.125", "train.progress=false",
                 "train.device=cpu", f"train.output_dir={run_dir}", "train.checkpoint_every=2",
                 "train.eval_every=1", "train.tensorboard=true", "trc.vanilla_epochs=1",
                 "trc.full_epochs=2", "trc.histogram_bins=10", "eval.batch_size=64"]
    return ["train", str(CPU_SMALL), *(a for o in overrides for a in ("--set", o))]


@pytest.fixture(scope="module")
def crashed_and_resumed(tiny_pedestrians, tmp_path_factory) -> Path:
    """Killed while checkpointing epoch 3 (its records already logged and mirrored; the last
    checkpoint is epoch 2's), then resumed: epoch 3 is trained and logged again."""
    root = tiny_pedestrians(seed=5)
    run_dir = tmp_path_factory.mktemp("runs") / "tb"
    save = Trainer.save_checkpoint

    def crash_at_epoch_3(self, extra=None, path=None):
        if self.epoch == CRASH_EPOCH:
            raise KeyboardInterrupt
        save(self, extra, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", crash_at_epoch_3)
        assert main(train_args(root, run_dir)) == 130
    assert main([*train_args(root, run_dir), "--resume"]) == 0
    return run_dir


def test_every_logged_number_is_mirrored_once(crashed_and_resumed: Path) -> None:
    records = read_records(crashed_and_resumed)
    accumulator = EventAccumulator(str(crashed_and_resumed / "tensorboard"),
                                   size_guidance={"scalars": 0})
    accumulator.Reload()
    mirrored = {tag: [(s.step, s.value) for s in accumulator.Scalars(tag)]
                for tag in accumulator.Tags()["scalars"]}
    # The reference, by hand: each record's numbers, and those of its one mapping (the final
    # evaluation's match_threshold record) one level down.
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        prefix = "eval_final" if record.get("final") else record["event"]
        for key, value in record.items():
            inner = value.items() if isinstance(value, dict) else [("", value)]
            for name, number in inner:
                tag = f"{prefix}/{key}" + (f"/{name}" if name else "")
                if key not in ("event", "epoch", "time") and type(number) in (int, float):
                    expected.setdefault(tag, []).append((record["epoch"], number))
    assert mirrored.keys() == expected.keys()
    for tag, points in expected.items():
        assert [step for step, _ in mirrored[tag]] == [step for step, _ in points], tag
        assert [v for _, v in mirrored[tag]] == pytest.approx([v for _, v in points], rel=1e-6)
    # What a user looks for: losses, learning rate, metrics per epoch, TRC's counts.
    assert [step for step, _ in mirrored["epoch/loss"]] == [1, 2, 3]
    assert {"epoch/lr", "eval/rank1", "eval/mAP", "eval_final/mAP",
            "trc_histogram/violations", "trc_histogram/pairs"} <= mirrored.keys()
    assert [step for step, _ in mirrored["eval/rank1"]] == [1, 2, 3]  # crashed epoch 3: once


def test_missing_package_is_refused_before_anything_is_written(tiny_pedestrians, tmp_path,
                                                              monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    assert main(train_args(tiny_pedestrians(seed=5), tmp_path / "run")) == 2
    error = capsys.readouterr().err.strip()
    assert "train.tensorboard" in error and "pip install 'progreid[tensorboard]'" in error
    assert len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()
