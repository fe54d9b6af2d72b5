"""Rough edges a new user met (issue 25): each command as a user runs it, with the message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from reliability_support import config_file, make_market, noise_image, run_cli

from progreid.cli import main


def make_cuhk01(root: Path, identities: int = 4) -> Path:
    """A CUHK01 layout: ``root/campus/NNNNMMM.png``, four images per identity (two cameras)."""
    rng = np.random.default_rng(0)
    (root / "campus").mkdir(parents=True)
    for pid in range(1, identities + 1):
        for image in range(1, 5):
            noise_image(rng, 40, 20).save(root / "campus" / f"{pid:04d}{image:03d}.png")
    return root


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
