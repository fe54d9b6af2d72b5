"""Crash-safe, reproducible training: kill -9 and --resume reach the uninterrupted result exactly.

The runs use a persistent DataLoader worker, evaluation between epochs and the random-triplet
loss (which draws from the global torch RNG), so any RNG state the checkpoint missed or any
random draw that differs after a resume would change the final weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from reliability_support import config_file, make_market

import progreid
from progreid.config import ConfigError, load_config
from progreid.training.run import train, write_run_files
from progreid.utils.checkpoint import load_checkpoint

SRC = Path(progreid.__file__).resolve().parents[1]
#: Log fields that measure time rather than training.
TIMING = {"time", "seconds", "images_per_second"}


#: The sections of a two-kept-epoch run of each method (its metric loss draws from the RNGs or
#: searches (PLA) or switches phase (TRC) between the epochs).
METHODS = {
    "standard": {"loss": {"metric": "triplet", "metric_params": {"margin": 0.3}}},
    "pla": {"loss": {"metric": "generalized_batch_hard", "metric_params": {}},
            "pla": {"initial_candidates": 2, "explore_epochs": 2, "exploit_epochs": 1,
                    "max_epochs": 2, "ei_samples": 16}},
    "trc": {"loss": {"metric": "top_rank_counter", "metric_params": {}},
            "trc": {"vanilla_epochs": 1, "full_epochs": 1}},
}


def _recipe(tmp_path: Path, name: str, method: str = "standard") -> Path:
    root = tmp_path / "market"
    if not root.exists():
        make_market(root)
    recipe = config_file(tmp_path, root, tmp_path / name, data={"workers": 1},
                         train={"method": method, "eval_every": 1, "seed": 7},
                         **METHODS[method])
    if method != "standard":  # the method's own budget sets the length
        raw = yaml.safe_load(recipe.read_text())
        del raw["train"]["epochs"]
        recipe.write_text(yaml.safe_dump(raw))
    return recipe.rename(tmp_path / f"{name}.yaml")


def _start(recipe: Path, *args: str) -> subprocess.Popen:
    """`progreid train RECIPE ARGS` in a new process, with one compute thread (the runs share
    the cores; the weights of runs with equal thread counts are compared)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.Popen([sys.executable, "-m", "progreid", "train", str(recipe), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "model.pt")["state_dict"]


def _epochs(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records
            if r["event"] in ("epoch", "eval")]


@pytest.mark.parametrize("method", list(METHODS))
def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path, method):
    reference_recipe = _recipe(tmp_path, "reference", method)
    victim_recipe = _recipe(tmp_path, "victim", method)
    reference = _start(reference_recipe)
    victim = _start(victim_recipe)
    checkpoint = tmp_path / "victim" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists():
        assert victim.poll() is None, victim.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    # killed during epoch 2 (PLA: during round 0's explorations, after its start checkpoint)
    assert load_checkpoint(checkpoint)["trainer"]["epoch"] == (0 if method == "pla" else 1)
    assert not (tmp_path / "victim" / "model.pt").exists()

    _finish(_start(victim_recipe, "--resume"))
    _finish(reference)
    expected, got = _weights(tmp_path / "reference"), _weights(tmp_path / "victim")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    results = [json.loads((tmp_path / run / "results.json").read_text())
               for run in ("reference", "victim")]
    assert results[0] == results[1]
    assert _epochs(tmp_path / "victim") == _epochs(tmp_path / "reference")


def test_same_config_and_seed_give_identical_metrics(tmp_path, monkeypatch):
    """Two runs in one process (the first leaves its RNG states behind) agree bit for bit."""
    results = []
    for name in ("first", "second"):
        cfg = load_config(_recipe(tmp_path, name), ["train.epochs=1", "data.workers=0",
                                                    "train.eval_every=0",
                                                    "data.batches_per_epoch=1"])
        results.append(train(cfg))
    assert results[0] == results[1]
    first, second = _weights(tmp_path / "first"), _weights(tmp_path / "second")
    assert all(torch.equal(first[k], second[k]) for k in first)
    environment = json.loads((tmp_path / "first" / "environment.json").read_text())
    assert environment["torch"] == torch.__version__
    assert environment["progreid"] == progreid.__version__
    assert {"python", "numpy", "git_revision", "platform"} <= environment.keys()
    assert environment["torch_threads"] == torch.get_num_threads()
    # The resolved speed settings: channels_last by default, bf16 only when asked for.
    assert environment["channels_last"] is True and environment["bf16_autocast"] is False
    assert environment["compile"] is False and "cpu_native_bf16" in environment


def test_a_run_that_died_before_its_first_checkpoint_starts_clean(tmp_path):
    """--resume needs a checkpoint; a fresh start replaces the dead attempt's log."""
    cfg = load_config(_recipe(tmp_path, "run"))
    run_dir = Path(cfg.train.output_dir)
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"event": "start", "epoch": 0}\n{"event": "ep')
    with pytest.raises(ConfigError, match="--resume: no checkpoint at .*start without"):
        train(cfg, resume=True)
    write_run_files(cfg, run_dir, resume=False)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "environment.json"]
