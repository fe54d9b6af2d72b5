"""Rough edges a new user met (issue 25): each command as a user runs it, with the message."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import make_run, synthetic_data
from reliability_support import config_file, make_market, noise_image, run_cli

import progreid
from progreid.cli import main
from progreid.errors import ConfigError
from progreid.search.embed import parse_name
from progreid.utils.device import resolve_device


def make_cuhk01(root: Path, identities: int = 4) -> Path:
    """A CUHK01 layout: ``root/campus/NNNNMMM.png``, four images per identity (two cameras)."""
    rng = np.random.default_rng(0)
    (root / "campus").mkdir(parents=True)
    for pid in range(1, identities + 1):
        for image in range(1, 5):
            noise_image(rng, 40, 20).save(root / "campus" / f"{pid:04d}{image:03d}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = synthetic_data(tmp_path_factory.mktemp("data"))
    return make_run(tmp_path_factory.mktemp("run") / "run", data)


# ----------------------------------------------------------------- 1. index: progress, --name
def test_index_reads_cuhk01_names_with_name_and_says_how_long_it_took(tmp_path, capsys, run):
    campus = make_cuhk01(tmp_path / "cuhk01", identities=3) / "campus"
    code, err = run_cli(capsys, "index", run, campus, "--out", tmp_path / "idx", "--device",
                        "cpu", "--batch-size", "4", "--name", "cuhk01")
    assert code == 0
    assert re.fullmatch(r"progreid index: 12 images indexed in \d+\.\d s\n", err)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["naming"] == "cuhk01"
    assert [(item["pid"], item["camid"]) for item in manifest["items"][:4]] == [
        (1, 0), (1, 0), (1, 1), (1, 1)]
    capsys.readouterr()  # search colours the matches: the query's name is read the same way
    assert main(["search", str(tmp_path / "idx"), str(campus / "0002001.png"), "--json",
                 "--top", "12", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    statuses = {(m["pid"], m["camid"]): m["status"] for m in result["matches"]}
    assert (result["pid"], result["camid"]) == (2, 0)
    assert statuses == {(2, 0): "junk", (2, 1): "match", (1, 0): "mismatch",
                        (1, 1): "mismatch", (3, 0): "mismatch", (3, 1): "mismatch"}


@pytest.mark.parametrize(("naming", "name", "expected"), [
    ("market1501", "0042_c3s1_000123_01.jpg", (42, 2)),
    ("dukemtmc", "0007_c1_f0000123.jpg", (7, 0)),
    ("cuhk01", "0971004.png", (971, 1)),
    ("cuhk01", "0971005.png", (-1, -1)),
    ("cuhk01", "0042_c3s1_000123_01.jpg", (-1, -1)),
    ("cuhk03", "3_012_2_07.png", (3012, 1)),
    ("msmt17", "0003_004_04_0113noon_0031_2.jpg", (3, 3)),
    ("folder", "0005_c2_x.jpg", (5, 2)),
])
def test_each_dataset_layout_names_identity_and_camera(naming, name, expected):
    assert parse_name(Path(name), naming) == expected


def test_index_without_name_says_how_to_read_other_names(tmp_path, capsys, run):
    campus = make_cuhk01(tmp_path / "cuhk01", identities=1) / "campus"
    code, err = run_cli(capsys, "index", run, campus, "--out", tmp_path / "idx", "--device",
                        "cpu")
    assert code == 0
    assert re.fullmatch(r"progreid index: 4 images indexed in \d+\.\d s; no file name gave an "
                        r"identity as market1501 names it: pass --name DATASET to read another "
                        r"dataset's names\n", err)
    code, err = run_cli(capsys, "index", run, campus, "--out", tmp_path / "idx", "--append",
                        "--name", "cuhk01")
    assert code == 2 and err == (f"progreid index: error: --name cuhk01: the index "
                                 f"{tmp_path / 'idx'} reads identities from market1501 file "
                                 "names; leave --name out to append with them, or build a new "
                                 "index with --out\n")


def test_index_shows_progress_on_a_terminal(tmp_path, capsys, run, monkeypatch):
    """The bar is drawn where stderr is a terminal (tqdm decides; forced here)."""
    from progreid.utils import progress as progress_lib

    calls = []
    real = progress_lib.progress

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr("progreid.search.gallery.progress", recording)
    campus = make_cuhk01(tmp_path / "cuhk01", identities=1) / "campus"
    assert run_cli(capsys, "index", run, campus, "--out", tmp_path / "idx", "--device", "cpu",
                   "--batch-size", "2")[0] == 0
    assert calls == [{"desc": "indexing", "total": 4, "enabled": True}]


# ----------------------------------------------------------------- 2. datasets without --name
def test_datasets_without_name_reads_the_layout_that_fits_and_says_which(tmp_path, capsys):
    root = make_cuhk01(tmp_path / "cuhk01")
    code, err = run_cli(capsys, "datasets", root, "--option", "num_train_ids=2")
    assert code == 0
    assert err == (f"progreid datasets: read {root} as cuhk01, the first layout that fits "
                   "(choose another with --name)\n")
    market = make_market(tmp_path / "market")
    capsys.readouterr()
    assert main(["datasets", str(market)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["market1501", "identities", "images", "cameras"]
    assert f"read {market} as market1501" in err


def test_datasets_names_name_and_its_choices_when_no_layout_reads(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no images here")
    code, err = run_cli(capsys, "datasets", tmp_path)
    assert code == 2
    assert err == (f"progreid datasets: error: {tmp_path} is in none of the dataset layouts "
                   "(market1501, cuhk03, cuhk01, msmt17, folder); name its dataset with --name "
                   "(one of market1501, dukemtmc, cuhk03, cuhk01, msmt17, folder, synthetic)\n")


# ----------------------------------------------------------------- 4. dataset options and roots
def test_dataset_option_error_names_the_data_options_key(tmp_path, capsys):
    root = make_cuhk01(tmp_path / "cuhk01")
    code, err = run_cli(capsys, "datasets", root, "--name", "cuhk01",
                        "--option", "num_train_ids=485")
    assert code == 2
    assert err == ("progreid datasets: error: data.options.num_train_ids = 485: expected an "
                   f"integer in 1..3 ({root / 'campus'} has 4 identities; the others are the "
                   "test identities)\n")
    code, err = run_cli(capsys, "datasets", root, "--name", "cuhk01", "--option", "seeds=1")
    assert code == 2 and err.startswith("progreid datasets: error: data.options.seeds: dataset "
                                        "'cuhk01' has no option 'seeds'; its options are seed, "
                                        "num_train_ids, query_camera; remove it from "
                                        "data.options")


def test_a_root_one_level_off_is_recognised_and_the_fix_named(tmp_path, capsys):
    root = make_cuhk01(tmp_path / "cuhk01")
    out = tmp_path / "run"
    recipe = config_file(tmp_path, root, out, data={"dataset": "cuhk01"})
    campus = root / "campus"
    code, err = run_cli(capsys, "train", recipe, "--set", f"data.root={campus}")
    assert code == 2
    assert err == (f"progreid train: error: missing folder {campus / 'campus'} (CUHK01 images "
                   f"NNNNMMM.png); {campus} is the campus/ folder itself: pass its parent {root} "
                   f"as the dataset root (data.root, e.g. --set data.root={root})\n")
    code, err = run_cli(capsys, "train", recipe, "--set", f"data.root={tmp_path}")
    assert code == 2 and (f"missing folder {tmp_path / 'campus'} (CUHK01 images NNNNMMM.png); "
                          f"pass {root}, which holds campus/, as the dataset root (data.root, "
                          f"e.g. --set data.root={root})") in err
    code, err = run_cli(capsys, "datasets", campus)  # detection keeps the hint
    assert code == 2 and err.startswith(f"progreid datasets: error: cuhk01: missing folder "
                                        f"{campus / 'campus'}")
    assert not out.exists()


def test_a_missing_root_says_which_folder_to_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, "datasets", "../shared/data/cuhk01", "--name", "cuhk01")
    assert code == 2
    assert err == ("progreid datasets: error: missing folder ../shared/data/cuhk01/campus "
                   "(CUHK01 images NNNNMMM.png); ../shared/data/cuhk01 does not exist (relative "
                   f"to the working folder {tmp_path}); the dataset root must be the folder "
                   "that holds campus/ (data.root, e.g. --set data.root=DIR)\n")


# ----------------------------------------------------------------- 5. device= of the Python API
def test_cuda_without_a_gpu_names_the_python_argument(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as info:
        resolve_device("cuda", "device")
    assert str(info.value) == ("device='cuda': no CUDA device is available on this machine; "
                               "pass device='cpu', or 'auto' to use CUDA only where there is one")


def test_load_on_cuda_without_a_gpu_names_its_device_argument(monkeypatch, run):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as info:
        progreid.load(run, device="cuda")
    assert str(info.value).startswith("device='cuda': no CUDA device is available")


def test_search_names_its_device_option(monkeypatch, capsys, tmp_path, run):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = run_cli(capsys, "search", tmp_path / "idx", tmp_path / "q.png", "--model", run,
                        "--device", "cuda")
    assert code == 2 and err == ("progreid search: error: --device cuda: no CUDA device is "
                                 "available on this machine; pass --device cpu, or auto to use "
                                 "CUDA only where there is one\n")


# ----------------------------------------------------------------- 6. a folder of run folders
def test_evaluate_of_a_folder_of_runs_names_the_newest_run(tmp_path, capsys, run):
    demo = tmp_path / "demo"
    older, newer = (Path(shutil.copytree(run, demo / name))
                    for name in ("20260101-090000", "20260102-090000"))
    os.utime(older / "model.pt", (1_000_000_000, 1_000_000_000))
    code, err = run_cli(capsys, "evaluate", demo, "--device", "cpu")
    assert code == 2
    assert err == (f"progreid evaluate: error: checkpoint not found: {demo / 'model.pt'}; did "
                   f"you mean {newer} (the newest of its 2 run folders)?\n")
    code, err = run_cli(capsys, "report", demo, "--device", "cpu")
    assert code == 2 and err == (f"progreid report: error: {demo}/config.yaml not found: is "
                                 f"{demo} a progreid run folder? did you mean {newer} (the "
                                 "newest of its 2 run folders)?\n")
    shutil.rmtree(older)
    code, err = run_cli(capsys, "evaluate", demo, "--device", "cpu")
    assert code == 2 and err.endswith(f"; did you mean {newer} (its run folder)?\n")
    (tmp_path / "empty").mkdir()
    code, err = run_cli(capsys, "evaluate", tmp_path / "empty", "--device", "cpu")
    assert code == 2 and err == (f"progreid evaluate: error: checkpoint not found: "
                                 f"{tmp_path / 'empty' / 'model.pt'}\n")
