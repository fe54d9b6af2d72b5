"""Check before work: what ``progreid train`` can know before reading the data (device, extras,
pretrained weights, ``eval.pca_dim``, a writable run folder and cache with room) is refused in
one line with exit code 2 before any image is decoded and before the run folder exists; the
data root of these runs does not even exist, so a check that came after the data would fail
differently."""

from __future__ import annotations

import errno
import shutil
import sys
import tempfile
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import progreid.training.run as run_module
from progreid.cli import main
from progreid.cli.demo import demo_config_path
from progreid.data.cache import CACHE_DIR_ENV

DEMO_RECIPE = demo_config_path()
PLA_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "pla" / "cpu-small.yaml"


def refused(capsys, tmp_path: Path, *overrides: str, config: Path = DEMO_RECIPE,
            data: Path | None = None) -> str:
    """Run ``progreid train`` into ``tmp_path/run``; assert it is refused in one line with exit
    code 2 and no run folder; return the line."""
    settings = [f"data.root={data or tmp_path / 'no-data'}",
                f"train.output_dir={tmp_path / 'run'}", *overrides]
    assert main(["train", str(config), *(a for s in settings for a in ("--set", s))]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert not (tmp_path / "run").exists()
    return error


def test_cuda_without_a_gpu_names_train_device(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    error = refused(capsys, tmp_path, "train.device=cuda")
    assert "train.device = 'cuda': no CUDA device" in error and "train.device=cpu" in error


@pytest.mark.parametrize("command", ["evaluate", "report", "index"])
def test_cuda_without_a_gpu_names_the_device_option(monkeypatch, capsys, tmp_path,
                                                    command: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")  # index lists images before the model
    extra = {"index": [str(tmp_path / "images"), "--out", str(tmp_path / "idx")],
             "report": ["--out", str(tmp_path / "r.html")]}.get(command, [])
    assert main([command, str(tmp_path / "run"), *extra, "--device", "cuda"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"progreid {command}: error: --device cuda: no CUDA device is available on "
                     "this machine; pass --device cpu, or auto to use CUDA only where there is one")
    assert not (tmp_path / "idx").exists() and not (tmp_path / "r.html").exists()


def test_pla_without_optuna_names_the_extra(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    error = refused(capsys, tmp_path, config=PLA_RECIPE)
    assert "train.method = 'pla' needs optuna: pip install 'progreid[pla]'" in error


def test_resnet_imagenet_weights_offline_say_where_to_put_them(monkeypatch, capsys,
                                                               tmp_path) -> None:
    def offline(url, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    error = refused(capsys, tmp_path, "model.pretrained=imagenet", "model.width=1.0")
    assert "model.pretrained = 'imagenet': cannot download the resnet18 ImageNet weights" in error
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in error
    assert "model.pretrained=null" in error


def test_imagenet_weights_on_a_narrow_network_are_refused(capsys, tmp_path) -> None:
    error = refused(capsys, tmp_path, "model.pretrained=imagenet")  # the demo's width 0.25
    assert "model.width = 0.25: pretrained 'imagenet' needs width 1.0" in error


def test_missing_weights_file_is_refused(capsys, tmp_path) -> None:
    error = refused(capsys, tmp_path, f"model.pretrained={tmp_path / 'w.pth'}")
    assert "not found" in error and str(tmp_path / "w.pth") in error


def test_pca_dim_above_the_embedding_width(capsys, tmp_path) -> None:
    error = refused(capsys, tmp_path, "eval.pca_dim=100000")
    assert "eval.pca_dim = 100000 exceeds the embedding width 128" in error
    assert "at most 128" in error


def test_pca_dim_above_the_training_images_before_any_image_is_decoded(
        tiny_pedestrians, monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(run_module, "validate_dataset", pytest.fail)
    error = refused(capsys, tmp_path, "data.dataset=synthetic", "eval.pca_dim=100",
                    data=tiny_pedestrians(seed=3))
    assert "eval.pca_dim = 100 exceeds the 48 training images" in error


def refuse_writes_in(monkeypatch, folder: Path) -> None:
    """The probe file cannot be created in ``folder``, as on a read-only file system."""
    real = tempfile.NamedTemporaryFile

    def probe(*args, dir=None, **kwargs):
        if Path(dir) == folder:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", probe)


def test_read_only_output_folder(monkeypatch, capsys, tmp_path) -> None:
    refuse_writes_in(monkeypatch, tmp_path)
    error = refused(capsys, tmp_path)
    assert f"cannot write in {tmp_path} (Read-only file system)" in error
    assert "--set train.output_dir=" in error


def test_read_only_cache_folder(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "ro" / "cache"))
    (tmp_path / "ro").mkdir()
    refuse_writes_in(monkeypatch, tmp_path / "ro")
    error = refused(capsys, tmp_path, "data.cache=true")
    assert f"cache {tmp_path / 'ro' / 'cache'}: cannot write in {tmp_path / 'ro'}" in error
    assert CACHE_DIR_ENV in error and "data.cache=false" in error


def test_no_room_for_a_checkpoint(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=2**19))
    error = refused(capsys, tmp_path)
    assert f"{tmp_path} has 0.5 MiB free, but a checkpoint of this model needs about" in error
