"""Long phases show a progress bar on a terminal, mis-named images are explained by the name
they should have, `profile` prints one error prefix, and ``data.workers: auto`` follows the
cores this process may use."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from progreid.cli import main
from progreid.config import ConfigError, load_config
from progreid.data import DatasetError, build_dataset
from progreid.data.loading import build_eval_loader, loader_workers
from progreid.data.sample import ReIDDataset, Sample
from progreid.data.validation import scan_dataset
from progreid.training.run import write_run_files


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws its bars."""

    def isatty(self) -> bool:
        return True


def _image(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), (shade, 0, 0)).save(path)
    return path


# ----------------------------------------------------------------- mis-named images
@pytest.mark.parametrize(("dataset", "folders", "form"), [
    ("folder", ("train", "query", "gallery"), "<pid>_c<cam>... (e.g. 0001_c1_0001.jpg"),
    ("market1501", ("bounding_box_train", "query", "bounding_box_test"),
     "<pid>_c<cam>s<seq>_<frame>.jpg of the Market-1501 layout (e.g. 0002_c1s1_000451_03.jpg"),
])
def test_a_misnamed_image_is_shown_with_the_name_it_should_have(tmp_path, dataset, folders,
                                                                form):
    for folder, name in zip(folders, ("0001_c1s1_01.png", "0002_c1s1_01.png",
                                      "0002_c2s1_01.png"), strict=True):
        _image(tmp_path / folder / name, 0)
    stray = _image(tmp_path / folders[0] / "person_7.png", 0)
    with pytest.raises(DatasetError) as error:
        build_dataset(dataset, tmp_path)
    message = str(error.value)
    assert f"image {stray} does not match the file name pattern {form}" in message
    assert f"rename it or move it out of {stray.parent}" in message
    assert "(?P<" not in message and "\\d" not in message


# ----------------------------------------------------------------- profile
def test_profile_error_has_one_prefix(capsys):
    assert main(["profile"]) == 2
    assert capsys.readouterr().err == ("progreid profile: error: give a recipe or run folder, "
                                       "or --compare\n")


# ----------------------------------------------------------------- loader workers
@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 1), (4, 3), (64, 4)])
def test_auto_workers_follow_the_usable_cores(monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert load_config(None, []).data.workers == "auto"
    assert loader_workers("auto") == workers
    assert build_eval_loader([], 8, 4, batch_size=2, workers="auto").num_workers == workers
    explicit = load_config(None, ["data.workers=7"]).data.workers
    assert loader_workers(explicit) == 7


def test_a_wrong_workers_value_names_both_forms():
    with pytest.raises(ConfigError, match=r"data.workers = 'x' has the wrong type; expected "
                                          r"int or 'auto'"):
        load_config(None, ["data.workers=x"])


def test_environment_records_the_loader_workers(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    write_run_files(load_config(None, []), tmp_path, resume=False)
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["loader_workers"] == 2 and environment["torch_threads"] >= 1


# ----------------------------------------------------------------- progress bars
def test_image_check_shows_a_bar_on_a_terminal_only(monkeypatch, tmp_path):
    samples = [Sample(_image(tmp_path / f"{i}.png", i), i // 2, i % 2) for i in range(6)]
    dataset = ReIDDataset("tiny", samples[:2], samples[2:3], samples[3:])
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    scan_dataset(dataset, 8, 4)
    assert sys.stderr.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", Terminal())
    report = scan_dataset(dataset, 8, 4)
    assert report.images == 6 and not report.bad
    assert re.search(r"checking images: .*/6 ", sys.stderr.getvalue())
