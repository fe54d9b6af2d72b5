"""What `progreid train` shows on the terminal: one line per epoch (with TRC's phase) on stderr
and, at the end, a metrics table and the run folder on stdout (JSON only with ``--json``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from progreid.cli import main

CPU_SMALL = Path(__file__).resolve().parents[1] / "configs" / "trc" / "cpu-small.yaml"


def train_args(root: Path, run_dir: Path) -> list[str]:
    overrides = ["data.dataset=synthetic", f"data.root={root}", "data.height=32", "data.width=16",
                 "data.p=4", "data.k=4", "data.batches_per_epoch=1", "data.workers=0",
                 "model.width=0.125", "train.device=cpu", f"train.output_dir={run_dir}",
                 "trc.vanilla_epochs=1", "trc.full_epochs=1", "eval.batch_size=64"]
    return ["train", str(CPU_SMALL), *(a for o in overrides for a in ("--set", o))]


def test_epoch_lines_and_final_table(tiny_pedestrians, tmp_path: Path, capsys) -> None:
    root = tiny_pedestrians(seed=5)
    assert main(train_args(root, tmp_path / "run")) == 0
    captured = capsys.readouterr()
    # "epoch N/E": E is the last epoch of the stage (here of each TRC phase).
    lines = [line for line in captured.err.splitlines() if re.match(r"epoch \d/\d ", line)]
    assert [line.split()[1:4] for line in lines] == [["1/1", "phase", "vanilla"],
                                                     ["2/2", "phase", "full"]]
    records = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in records if r["event"] == "epoch")
    assert f"loss {first['loss']:.4g}" in lines[0] and "lr " in lines[0] and "img/s" in lines[0]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    header, row = captured.out.splitlines()[:2]
    assert header.split() == ["rank1", "rank5", "rank10", "mAP", "mINP"]
    assert row.split() == ["final", *(f"{results[c]:.1f}" for c in header.split())]
    assert f"run folder: {tmp_path / 'run'}" in captured.out


def test_json_flag_prints_only_json(tiny_pedestrians, tmp_path: Path, capsys) -> None:
    root = tiny_pedestrians(seed=5)
    assert main([*train_args(root, tmp_path / "run"), "--json", "--set",
                 "train.progress=false"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["run"] == str(tmp_path / "run") and "mAP" in printed
    assert "epoch 1/1" not in captured.err
