"""Read-only and full disks, and files that are no checkpoint: one line, exit code 2, nothing left.

The file-system faults are injected in-process: every creation of a file or folder under a
"read-only" folder fails with ``EROFS``, and a "full" disk lets ``torch.save`` write a little
before ``ENOSPC`` (torch then raises its own ``RuntimeError``, as on a real full disk).
"""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest
import torch
from deploy_helpers import make_run, synthetic_data
from reliability_support import config_file, fail_writes_under, make_market, run_cli

from progreid.cli import error_line, main
from progreid.data.cache import CACHE_DIR_ENV, decoded_images
from progreid.data.sample import Sample
from progreid.deploy import export
from progreid.errors import OutputError, ProgreidError
from progreid.models.pretrained import PretrainedWeightsError
from progreid.training.objective import Objective
from progreid.utils.io import atomic_path


class FillingDisk:
    """A file handle with room for ``room`` more bytes, then ``ENOSPC``."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def one_line_error(capsys, *args) -> str:
    """Run ``progreid ARGS``; assert exit code 2 and one stderr line; return that line."""
    code, err = run_cli(capsys, *args)
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "ro"
    folder.mkdir()
    fail_writes_under(monkeypatch, folder)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synthetic_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, data) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "run", data)


@pytest.fixture
def recipe(tmp_path) -> Path:
    return config_file(tmp_path, make_market(tmp_path / "market"), tmp_path / "out" / "run",
                       data={"batches_per_epoch": 1}, train={"epochs": 1})


READ_ONLY = "Read-only file system; choose a folder on a writable file system"


# ----------------------------------------------------------------- read-only output
def test_train_into_a_read_only_folder(capsys, recipe, read_only):
    line = one_line_error(capsys, "train", recipe, "--set", f"train.output_dir={read_only}/run")
    assert f"{read_only}" in line and "Read-only file system" in line
    assert not any(read_only.iterdir())


def test_cache_in_a_read_only_folder(capsys, recipe, read_only, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(read_only / "cache"))
    line = one_line_error(capsys, "train", recipe, "--set", "data.cache=true")
    assert f"{read_only}" in line and CACHE_DIR_ENV in line
    assert not any(read_only.iterdir()) and not (tmp_path / "out").exists()
    samples = [Sample(path, 0, 0) for path in (tmp_path / "market" / "query").iterdir()]
    with pytest.raises(OutputError) as caught:
        decoded_images(samples, 32, 16, cache_dir=read_only / "cache")
    line = error_line(caught.value, caught.value)  # past the up-front check: still one line
    assert line.startswith(f"cannot write {read_only}/cache/")
    assert f"{READ_ONLY}; set ${CACHE_DIR_ENV} to a writable folder" in line


@pytest.mark.parametrize(("command", "out"), [("export", "m.onnx"), ("report", "r.html"),
                                              ("index", "idx")])
def test_run_outputs_into_a_read_only_folder(capsys, run, data, read_only, command, out):
    extra = {"index": [data / "bounding_box_test", "--device", "cpu"],
             "report": ["--device", "cpu"]}.get(command, [])
    line = one_line_error(capsys, command, run, *extra, "--out", read_only / out)
    if command == "index":
        assert line.startswith(f"progreid {command}: error: cannot write {read_only}/")
    else:  # refused by the probe write, before the model is loaded or run
        assert line.startswith(f"progreid {command}: error: --out {read_only / out}: cannot "
                               f"write in {read_only} (Read-only file system); choose a")
    assert "Read-only file system" in line and not any(read_only.iterdir())


def test_synth_into_a_read_only_folder(capsys, read_only):
    line = one_line_error(capsys, "synth", read_only / "s", "--identities", "4",
                          "--train-identities", "2")
    assert line.startswith(f"progreid synth: error: cannot write {read_only}/s: ")
    assert READ_ONLY in line and not any(read_only.iterdir())


def test_search_picture_into_a_read_only_folder(capsys, run, data, tmp_path, monkeypatch):
    assert main(["index", str(run), str(data / "bounding_box_test"), "--out",
                 str(tmp_path / "idx"), "--device", "cpu"]) == 0
    fail_writes_under(monkeypatch, tmp_path / "ro")
    query = sorted((data / "query").iterdir())[0]
    line = one_line_error(capsys, "search", tmp_path / "idx", query, "--picture",
                          tmp_path / "ro" / "p.png", "--device", "cpu")
    assert line == (f"progreid search: error: cannot write {tmp_path}/ro/p.png: {READ_ONLY}")
    assert not (tmp_path / "ro").exists()


# ----------------------------------------------------------------- full disk
def test_train_on_a_full_disk_leaves_no_run_folder(capsys, recipe, monkeypatch, tmp_path):
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: real_save(obj, FillingDisk(f, 1000)))
    run_dir = tmp_path / "out" / "run"
    line = one_line_error(capsys, "train", recipe)
    assert line == (f"progreid train: error: cannot write {run_dir}/checkpoints/last.pt: No space"
                    " left on device; free some space there or choose another folder; "
                    f"{run_dir} held no checkpoint yet and was removed")
    assert not run_dir.exists()


def test_export_on_a_full_disk_leaves_nothing(capsys, run, tmp_path, monkeypatch):
    def fills_up(module, example, path, metadata):
        path.write_bytes(b"half a model")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setitem(export.WRITERS, "onnx", fills_up)
    out = tmp_path / "out" / "m.onnx"
    line = one_line_error(capsys, "export", run, "--out", out)
    assert line == (f"progreid export: error: cannot write {out}: No space left on device; "
                    "free some space there or choose another folder")
    assert not (tmp_path / "out").exists()


def test_export_whose_description_cannot_be_written_leaves_no_model(capsys, run, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setitem(export.WRITERS, "onnx", lambda m, e, path, d: path.write_bytes(b"m"))
    monkeypatch.setattr(export, "difference", lambda *args: export.Difference(0.0, 1.0))
    monkeypatch.setattr(export, "atomic_write_json", _fails_on_full_disk)
    out = tmp_path / "m.onnx"
    line = one_line_error(capsys, "export", run, "--out", out)
    assert f"cannot write {out}.json: No space left on device" in line
    assert not out.exists() and not Path(f"{out}.json").exists()


def _fails_on_full_disk(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"{")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ----------------------------------------------------------------- not a checkpoint
def test_evaluate_a_text_file(capsys, tmp_path):
    path = tmp_path / "hello.pt"
    path.write_text("hello\n")
    line = one_line_error(capsys, "evaluate", path)
    assert line == (f"progreid evaluate: error: {path} is not a progreid checkpoint or model.pt "
                    "(not a file torch.save wrote); pass a run folder, its model.pt or "
                    "checkpoints/last.pt")


class CreatesFile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("protocol", [4, 5])
def test_pickled_code_of_any_protocol_is_refused_as_code(capsys, tmp_path, protocol):
    """Protocol 4 and 5 pickles, which torch cannot even parse, name the code they would run."""
    marker, path = tmp_path / "pwned", tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"x": CreatesFile(marker)}, protocol=protocol))
    line = one_line_error(capsys, "evaluate", path)
    assert line.startswith(f"progreid evaluate: error: refusing to load {path}: it would import "
                           "io.open, which is neither a tensor nor plain data")
    assert not marker.exists()


def test_nan_before_the_first_checkpoint_says_so_and_leaves_nothing(capsys, recipe, monkeypatch,
                                                                    tmp_path):
    real_call = Objective.__call__

    def poisoned(self, output, labels):
        loss, terms = real_call(self, output, labels)
        return loss * float("nan"), {**terms, "loss": loss.detach() * float("nan")}

    monkeypatch.setattr(Objective, "__call__", poisoned)
    line = one_line_error(capsys, "train", recipe)
    assert "loss became nan in epoch 1" in line
    assert line.endswith(f"training stopped and no checkpoint had been written yet. Lower "
                         f"optim.lr or check the data; {tmp_path}/out/run held no checkpoint "
                         "yet and was removed")
    assert not (tmp_path / "out").exists()


def test_missing_pretrained_weights_are_one_line(capsys, recipe, tmp_path):
    assert issubclass(PretrainedWeightsError, ProgreidError)
    line = one_line_error(capsys, "train", recipe, "--set",
                          f"model.pretrained={tmp_path}/nope.pth")
    assert f"{tmp_path}/nope.pth" in line
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- --debug and genuine bugs
@pytest.mark.parametrize("debug", [["--debug"], ["env"]])
def test_debug_shows_the_traceback_too(capsys, tmp_path, monkeypatch, debug):
    path = tmp_path / "hello.pt"
    path.write_text("hello\n")
    if debug == ["env"]:
        monkeypatch.setenv("PROGREID_DEBUG", "1")
        debug = []
    code, err = run_cli(capsys, *debug, "evaluate", path)
    assert code == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith(f"progreid evaluate: error: {path} is not")


def test_a_genuine_bug_keeps_its_traceback(monkeypatch, tmp_path):
    def bug(*args):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr("progreid.deploy.bundle.load_bundle", bug)
    with pytest.raises(ZeroDivisionError):
        main(["evaluate", str(tmp_path)])


def test_atomic_path_names_the_target_and_removes_the_folders_it_made(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b" / "out.bin"
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))))
    with pytest.raises(OutputError, match=f"cannot write {target}: Disk quota exceeded; free "
                                          "some of your quota") as caught, \
            atomic_path(target) as tmp:
        tmp.write_bytes(b"data")
    assert caught.value.errno == errno.EDQUOT and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "x"):  # not a write error:
        (tmp_path / "missing").read_bytes()                               # passed on unchanged
