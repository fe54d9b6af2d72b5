"""Checkpoints: never run code, refuse truncated or foreign files, survive a full disk and NaN.

Each refusal is checked for its message and for leaving the run folder exactly as it was.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from reliability_support import config_file, make_market, run_cli, tree

from progreid.config import load_config
from progreid.data import build_dataset
from progreid.deploy.bundle import load_bundle, save_bundle
from progreid.models import build_model
from progreid.training.objective import Objective
from progreid.training.run import train, write_run_files
from progreid.training.trainer import NonFiniteLossError, Trainer
from progreid.utils.checkpoint import CheckpointError, load_checkpoint


class CreatesFile:
    """Unpickling this calls ``open(marker, "w")``: loading it unsafely creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def market(tmp_path: Path) -> Path:
    return make_market(tmp_path / "market")


@pytest.fixture
def recipe(tmp_path: Path, market: Path) -> Path:
    return config_file(tmp_path, market, tmp_path / "run",
                       data={"batches_per_epoch": 1}, train={"epochs": 2})


def _started_run(recipe: Path) -> Path:
    """A run folder as `progreid train` leaves it after writing its first checkpoint."""
    cfg = load_config(recipe)
    run_dir = Path(cfg.train.output_dir)
    trainer = Trainer(cfg, build_dataset(cfg.data.dataset, cfg.data.root), run_dir)
    write_run_files(cfg, run_dir, resume=False)
    trainer.save_checkpoint()
    return run_dir


def _bundle(run_dir: Path, recipe: Path, num_classes: int = 4, **model: object) -> Path:
    """``model.pt`` of the recipe's config holding the weights of a model built with ``model``."""
    cfg = load_config(recipe)
    net = build_model(num_classes=num_classes, **{**vars(cfg.model), **model})
    path = run_dir / "model.pt"
    save_bundle(path, cfg, net, num_classes=4)
    return path


# ----------------------------------------------------------------- malicious pickles
def _malicious(path: Path, marker: Path, payload_of) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload_of(CreatesFile(marker)), path)


def test_the_malicious_file_does_run_code_when_loaded_unsafely(tmp_path):
    """The attack is real: plain unpickling creates the marker file."""
    marker = tmp_path / "pwned"
    _malicious(tmp_path / "evil.pt", marker, lambda evil: {"trainer": evil})
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_malicious_checkpoint_is_refused_on_resume(tmp_path, capsys, recipe):
    marker = tmp_path / "pwned"
    run_dir = _started_run(recipe)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    _malicious(checkpoint, marker, lambda evil: {"trainer": {"model": evil}, "extra": {},
                                                 "architecture": {}})
    before = tree(run_dir)
    code, err = run_cli(capsys, "train", recipe, "--resume")
    assert code == 2
    assert f"refusing to load {checkpoint}: it would import io.open" in err
    assert "never runs code from a file" in err
    assert not marker.exists()
    assert tree(run_dir) == before


def test_malicious_model_is_refused_by_evaluate(tmp_path, capsys):
    marker = tmp_path / "pwned"
    model = tmp_path / "run" / "model.pt"
    _malicious(model, marker, lambda evil: {"format": "progreid-bundle-1", "state_dict": evil})
    code, err = run_cli(capsys, "evaluate", model.parent)
    assert code == 2 and f"refusing to load {model}: it would import io.open" in err
    assert not marker.exists()


def test_pickled_code_without_a_global_is_refused_too(tmp_path):
    """A raw pickle (not torch.save's zip) with a reduce call: refused, nothing created."""
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"x": CreatesFile(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match=f"refusing to load {path}"):
        load_checkpoint(path)
    assert not marker.exists()


# ----------------------------------------------------------------- truncated and foreign files
def test_truncated_checkpoint_is_refused_on_resume(capsys, recipe):
    run_dir = _started_run(recipe)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    before = tree(run_dir)
    code, err = run_cli(capsys, "train", recipe, "--resume")
    assert code == 2
    assert f"checkpoint {checkpoint} is truncated or corrupt" in err
    assert "use an earlier checkpoint or retrain" in err
    assert tree(run_dir) == before


@pytest.mark.parametrize("keep", [0, 1, 100, 1000, -22, -1])
def test_checkpoint_cut_anywhere_is_a_clear_error(tmp_path, keep):
    path = tmp_path / "ckpt.pt"
    torch.save({"trainer": {"w": torch.arange(300.0)}, "extra": {"round": 2}}, path)
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is truncated or corrupt"):
        load_checkpoint(path)


def test_truncated_model_is_refused_by_evaluate(capsys, recipe, tmp_path):
    model = _bundle(tmp_path / "run", recipe)
    model.write_bytes(model.read_bytes()[:-100])
    code, err = run_cli(capsys, "evaluate", model)
    assert code == 2 and f"checkpoint {model} is truncated or corrupt" in err


@pytest.mark.parametrize(("override", "difference"), [
    ("model.backbone=resnet34", "backbone: 'resnet18' in the checkpoint, 'resnet34' now"),
    ("model.width=0.25", "width: 0.125 in the checkpoint, 0.25 now"),
    ("model.name=pla", "name: 'baseline' in the checkpoint, 'pla' now"),
])
def test_resume_with_another_architecture(capsys, recipe, override, difference):
    run_dir = _started_run(recipe)
    before = tree(run_dir)
    code, err = run_cli(capsys, "train", recipe, "--resume", "--set", override)
    assert code == 2
    assert f"{run_dir / 'checkpoints' / 'last.pt'} was written for another model" in err
    assert difference in err and "config.yaml in its run folder" in err
    assert tree(run_dir) == before


def test_resume_with_another_number_of_classes(capsys, recipe, market):
    run_dir = _started_run(recipe)
    train = market / "bounding_box_train"
    for i, path in enumerate(sorted(train.glob("0001_*.jpg"))[:2]):  # a fifth identity
        path.rename(train / f"0042_c{1 + i}s1_{i:06d}_00.jpg")
    before = tree(run_dir)
    code, err = run_cli(capsys, "train", recipe, "--resume")
    assert code == 2 and "num_classes: 4 in the checkpoint, 5 now" in err
    assert tree(run_dir) == before


@pytest.mark.parametrize(("model", "expected"), [
    ({"width": 0.25}, r"different shapes: backbone.conv1.weight \(16, 3, 7, 7\) in the file vs "
                      r"\(8, 3, 7, 7\) in the model"),
    ({"backbone": "resnet34"}, "unexpected keys: backbone.layer1.2"),
    ({"num_classes": 6}, r"head.classifier.weight \(6, 64\) in the file vs \(4, 64\) in the "
                         "model"),
])
def test_model_with_weights_of_another_network(tmp_path, capsys, recipe, model, expected):
    num_classes = model.pop("num_classes", 4)
    path = _bundle(tmp_path / "run", recipe, num_classes, **model)
    with pytest.raises(CheckpointError, match=expected):
        load_bundle(path)
    code, err = run_cli(capsys, "evaluate", path)
    assert code == 2 and f"{path}: the weights do not fit the model" in err


def test_a_model_bundle_is_not_a_training_checkpoint(recipe, tmp_path):
    cfg = load_config(recipe)
    trainer = Trainer(cfg, build_dataset(cfg.data.dataset, cfg.data.root), tmp_path / "run")
    path = _bundle(tmp_path / "other", recipe)
    with pytest.raises(CheckpointError, match=f"{path} is not a progreid training checkpoint: "
                                              "it lacks trainer, architecture"):
        trainer.load_checkpoint(path)


# ----------------------------------------------------------------- full disk, NaN loss
def _record_checkpoints(monkeypatch) -> list[bytes]:
    """Bytes of ``last.pt`` after each successful checkpoint."""
    saved: list[bytes] = []
    real = Trainer.save_checkpoint

    def recording(self, *args, **kwargs):
        real(self, *args, **kwargs)
        saved.append(self.checkpoint_path.read_bytes())

    monkeypatch.setattr(Trainer, "save_checkpoint", recording)
    return saved


def test_full_disk_keeps_the_previous_checkpoint(capsys, recipe, monkeypatch):
    saved = _record_checkpoints(monkeypatch)
    real_save = torch.save

    def disk_fills_up(obj, f, *args, **kwargs):
        if saved:  # as torch reports it: a RuntimeError while handling the write's OSError
            f.write(b"half a checkpoint")
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected "  # noqa: B904
                                   "pos 576 vs 534")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    code, err = run_cli(capsys, "train", recipe)
    run_dir = Path(load_config(recipe).train.output_dir)
    checkpoints = run_dir / "checkpoints"
    assert code == 2
    assert err.strip().splitlines() == [
        f"progreid train: error: cannot write {checkpoints / 'last.pt'}: No space left on device; "
        f"free some space there or choose another folder; {run_dir} keeps its last checkpoint: "
        "fix the cause, then continue with --resume"]
    assert len(saved) == 1 and (checkpoints / "last.pt").read_bytes() == saved[0]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt"]
    assert not (run_dir / "model.pt").exists() and not (run_dir / "results.json").exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(recipe, monkeypatch, bad):
    saved = _record_checkpoints(monkeypatch)
    real_call = Objective.__call__
    calls = []

    def poisoned(self, output, labels):
        loss, terms = real_call(self, output, labels)
        calls.append(1)
        if len(calls) == 2:  # the only batch of epoch 2
            loss = loss * bad
            terms = {**terms, "loss": loss.detach()}
        return loss, terms

    monkeypatch.setattr(Objective, "__call__", poisoned)
    cfg = load_config(recipe, ["train.epochs=3"])
    with pytest.raises(NonFiniteLossError, match=rf"loss became {bad} in epoch 2 .*training "
                                                 r"stopped and its last checkpoint is kept"):
        train(cfg)
    run_dir = Path(cfg.train.output_dir)
    assert len(saved) == 1
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == saved[0]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["epoch"] == 1
    assert not (run_dir / "model.pt").exists() and not (run_dir / "results.json").exists()
