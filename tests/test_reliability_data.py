"""Bad datasets and configs stop `progreid train` before any work, with one clear message.

Every case runs the real command in-process and asserts its exit status, its message (the file
or key and the fix) and that no run folder was written.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reliability_support import (
    HEIGHT,
    WIDTH,
    config_file,
    make_market,
    png_16bit_grey,
    png_header_only,
    run_cli,
)

from progreid.config import ConfigError, load_config
from progreid.data import build_dataset
from progreid.data.loading import MAX_IMAGE_PIXELS, decode_image
from progreid.data.sample import DatasetError
from progreid.data.validation import check_against_dataset, validate_dataset
from progreid.training.objective import Objective
from progreid.training.trainer import Trainer


@pytest.fixture
def market(tmp_path: Path) -> Path:
    return make_market(tmp_path / "market")


def _train(tmp_path: Path, capsys, root: Path, *overrides: str) -> tuple[int, str, Path]:
    out = tmp_path / "run"
    recipe = config_file(tmp_path, root, out)
    sets = [arg for item in overrides for arg in ("--set", item)]
    code, err = run_cli(capsys, "train", recipe, *sets)
    return code, err, out


def _first(folder: Path) -> Path:
    return sorted(folder.glob("*.jpg"))[0]


# ----------------------------------------------------------------- bad image files
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _text(path: Path) -> None:
    path.write_text("this is not an image\n")


def _huge(path: Path) -> None:
    png_header_only(path, 5000, 5000)


def _bomb(path: Path) -> None:
    png_header_only(path, 20000, 20000)


@pytest.mark.parametrize(("spoil", "folder", "expected"), [
    (_truncate, "bounding_box_train", "image file is truncated"),
    (_empty, "bounding_box_train", "empty file (0 bytes)"),
    (_text, "bounding_box_test", "not an image file of a known format"),
    (_huge, "bounding_box_train", "5000 x 5000 pixels, above the limit"),
    (_bomb, "query", "too large"),
])
def test_bad_image_stops_training_naming_file_and_fix(tmp_path, capsys, market, spoil, folder,
                                                      expected):
    path = _first(market / folder)
    spoil(path)
    code, err, out = _train(tmp_path, capsys, market)
    assert code == 2
    assert str(path) in err and expected in err
    assert "data.on_bad_image: skip" in err and "1 of the" in err
    assert not out.exists()


def test_enormous_image_is_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    png_header_only(path, 4097, 4096)
    assert MAX_IMAGE_PIXELS < 4097 * 4096
    with pytest.raises(DatasetError, match=r"big.png is too large: 4097 x 4096 pixels"):
        decode_image(path, HEIGHT, WIDTH)


def test_every_bad_file_is_listed_in_one_message(tmp_path, capsys, market):
    files = sorted((market / "bounding_box_train").glob("*.jpg"))[:3]
    for path in files:
        _empty(path)
    code, err, out = _train(tmp_path, capsys, market)
    assert code == 2 and "3 of the" in err
    assert all(str(path) in err for path in files)
    assert not out.exists()


def test_duplicates_across_splits_or_labels_are_bad(tmp_path, capsys, market):
    train = sorted((market / "bounding_box_train").glob("*.jpg"))
    relabelled = market / "bounding_box_train" / "0002_c2s1_000099_00.jpg"
    shutil.copy(train[0], relabelled)
    leaked = market / "bounding_box_test" / "0101_c2s1_000099_00.jpg"
    shutil.copy(train[1], leaked)
    query = _first(market / "query")
    recamera = market / "bounding_box_test" / f"{query.name[:4]}_c2s1_000098_00.jpg"
    shutil.copy(query, recamera)
    code, err, out = _train(tmp_path, capsys, market)
    assert code == 2 and "3 of the" in err
    assert (f"[train] {relabelled} has the same bytes as {train[0]} (train) but another "
            "identity or camera") in err
    assert (f"[train] {train[1]} has the same bytes as {leaked} (gallery) but training and "
            "test images must be disjoint") in err
    assert f"[gallery] {recamera} has the same bytes as {query} (query) but another" in err
    assert not out.exists()


def test_a_repeat_with_the_same_identity_and_camera_is_kept(market, caplog):
    original = _first(market / "bounding_box_train")
    repeat = market / "bounding_box_train" / f"{original.name[:7]}s1_000099_00.jpg"
    shutil.copy(original, repeat)
    with caplog.at_level(logging.WARNING, logger="progreid.data.validation"):
        dataset, report = _validate(market)
    assert report.bad == [] and report.repeats == [(repeat, original)]
    assert repeat in {s.path for s in dataset.train}
    assert "1 images of market1501 repeat an earlier file of the same identity" in caplog.text


def test_real_cuhk01_passes_with_its_repeated_files(cuhk01_root):
    """CUHK01 holds 13 byte-identical pairs of one identity and camera: not an error."""
    dataset, report = _validate(cuhk01_root, "data.dataset=cuhk01")
    assert report.bad == [] and len(report.repeats) == 13
    assert all(a.name[:4] == b.name[:4] for a, b in report.repeats)


# ----------------------------------------------------------------- on_bad_image: skip
def _validate(root: Path, *overrides: str):
    cfg = load_config(None, ["data.dataset=market1501", f"data.root={root}",
                             f"data.height={HEIGHT}", f"data.width={WIDTH}", "data.workers=2",
                             *overrides])
    return validate_dataset(build_dataset(cfg.data.dataset, root), cfg.data)


def test_skip_drops_bad_and_duplicate_files_and_relabels(market):
    train = sorted((market / "bounding_box_train").glob("*.jpg"))
    for path in train[:4]:  # every image of training identity 1
        _truncate(path)
    copy = market / "bounding_box_train" / "0003_c2s1_000099_00.jpg"
    shutil.copy(train[5], copy)
    dataset, report = _validate(market, "data.on_bad_image=skip")
    skipped = {b.path for b in report.bad}
    assert skipped == {*train[:4], copy}
    assert all(s.path not in skipped for s in dataset.train)
    assert len(dataset.train) == 12 and train[5] in {s.path for s in dataset.train}
    assert sorted({s.pid for s in dataset.train}) == [0, 1, 2]
    assert dataset.num_train_pids == 3


def test_skip_drops_a_query_left_without_gallery(market):
    for path in (market / "bounding_box_test").glob("0100_*.jpg"):
        _empty(path)
    dataset, report = _validate(market, "data.on_bad_image=skip")
    assert {s.pid for s in dataset.query} == {101, 102}
    reasons = [b.reason for b in report.bad if b.split == "query"]
    assert reasons == [f"{market / 'query' / '0100_c1s1_000000_00.jpg'}: identity 100 has no "
                       "usable gallery image left"]


def test_skip_cannot_leave_a_split_empty(market):
    for path in (market / "query").glob("*.jpg"):
        _text(path)
    with pytest.raises(DatasetError, match="query split is empty.*after skipping bad images"):
        _validate(market, "data.on_bad_image=skip")


def test_single_image_identity_is_a_warning_not_an_error(market, caplog):
    lone = market / "bounding_box_train" / "0009_c1s1_000000_00.jpg"
    Image.fromarray(np.full((40, 20, 3), 7, np.uint8)).save(lone)
    with caplog.at_level(logging.WARNING, logger="progreid.data.validation"):
        dataset, report = _validate(market)
    assert report.bad == [] and report.single_image_ids == [4]
    assert "1 training identities of market1501 have a single image" in caplog.text
    assert dataset.num_train_pids == 5


# ----------------------------------------------------------------- colour modes are converted
def _modes(folder: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """One image per colour mode, each with its expected RGB decoding (independent reference)."""
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    rgba = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    deep = rng.integers(0, 65536, (HEIGHT, WIDTH), dtype=np.uint16)
    index = rng.integers(0, 4, (HEIGHT, WIDTH), dtype=np.uint8)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 99, 199]], np.uint8)
    images = {}
    path = folder / "0001_c1s1_000100_00.png"
    Image.fromarray(grey, mode="L").save(path)
    images["L"] = (path, np.repeat(grey[..., None], 3, axis=2))
    path = folder / "0002_c1s1_000100_00.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    images["RGBA"] = (path, rgba[..., :3])
    path = folder / "0003_c1s1_000100_00.png"
    png_16bit_grey(path, deep)
    scaled = np.floor(deep.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    images["I;16"] = (path, np.repeat(scaled[..., None], 3, axis=2))
    path = folder / "0004_c1s1_000100_00.png"
    paletted = Image.fromarray(index, mode="P")
    paletted.putpalette(palette.flatten().tolist())
    paletted.save(path)
    images["P"] = (path, palette[index])
    return images


def test_grey_rgba_16bit_and_palette_images_are_converted_and_train(market, tmp_path):
    images = _modes(market / "bounding_box_train")
    for path, expected in images.values():
        np.testing.assert_array_equal(decode_image(path, HEIGHT, WIDTH), expected)
    dataset, report = _validate(market)
    assert report.bad == []
    assert report.converted == {"L": 1, "RGBA": 1, "I;16": 1, "P": 1}
    cfg = load_config(None, [f"data.height={HEIGHT}", f"data.width={WIDTH}", "data.p=2",
                             "data.k=5", "data.workers=0", "model.backbone=resnet18",
                             "model.width=0.125", "train.device=cpu", "train.progress=false",
                             "data.batches_per_epoch=1"])
    trainer = Trainer(cfg, dataset, tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    stats = trainer.train_epoch(Objective.from_config(cfg.loss))
    assert np.isfinite(stats.loss)
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


# ----------------------------------------------------------------- reader errors
def test_name_not_matching_the_pattern(tmp_path, capsys, market):
    stray = market / "bounding_box_train" / "person_7.jpg"
    shutil.copy(_first(market / "bounding_box_train"), stray)
    code, err, out = _train(tmp_path, capsys, market)
    assert code == 2 and f"image {stray} does not match the file name pattern" in err
    assert not out.exists()


def test_empty_folder(tmp_path, capsys, market):
    for path in (market / "query").iterdir():
        path.unlink()
    code, err, out = _train(tmp_path, capsys, market)
    assert code == 2 and f"query split is empty: no images found in {market / 'query'}" in err
    assert not out.exists()


def test_missing_folder(tmp_path, capsys, market):
    shutil.rmtree(market / "bounding_box_test")
    code, err, out = _train(tmp_path, capsys, market)
    assert code == 2 and (f"missing folder {market / 'bounding_box_test'} (gallery images of "
                          "market1501); the dataset root must be the folder that holds "
                          "bounding_box_test/ (data.root, e.g. --set data.root=DIR)") in err
    assert not out.exists()


def test_unreadable_folder(tmp_path, capsys, market, monkeypatch):
    """Permissions do not stop root (tests may run as root): refuse the listing instead."""
    unreadable = market / "query"
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == unreadable:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    code, err, out = _train(tmp_path, capsys, market)
    assert code == 2 and "Permission denied" in err and str(unreadable) in err
    assert "cannot read dataset market1501" in err
    assert not out.exists()


def test_unreadable_image(tmp_path, capsys, market, monkeypatch):
    path = _first(market / "bounding_box_train")
    real_open = Image.open

    def refuse(fp, *args, **kwargs):
        if isinstance(fp, str | Path) and Path(fp) == path:
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", refuse)
    code, err, out = _train(tmp_path, capsys, market)
    assert code == 2 and str(path) in err and "Permission denied" in err
    assert not out.exists()


def test_query_identity_absent_from_gallery(tmp_path, capsys, market):
    for path in (market / "bounding_box_test").glob("0101_*.jpg"):
        path.unlink()
    code, err, out = _train(tmp_path, capsys, market)
    assert code == 2 and "1 query identities have no gallery image" in err and "101" in err
    assert not out.exists()


# ----------------------------------------------------------------- config errors
@pytest.mark.parametrize(("override", "expected"), [
    ("data.pp=3", "error: --set data.pp=3: unknown key 'data.pp'"),
    ("optim.lr=fast", "error: --set optim.lr=fast: optim.lr = 'fast' has the wrong type; "
                      "expected float"),
    ("optim.lr=-0.001", "error: --set optim.lr=-0.001: optim.lr = -0.001 is out of range; must "
                        "be greater than 0.0"),
    ("data.k=1", "error: --set data.k=1: data.k = 1: the metric loss 'batch_hard' needs at least "
                 "2 images per identity"),
    ("data.p=5", "training split has only 4; lower data.p"),
    ("data.k=9", "data.p x data.k = 2 x 9 = 18 images per batch, but the training split of "
                 "market1501 has only 16 images; lower data.p or data.k"),
])
def test_bad_config_value(tmp_path, capsys, market, override, expected):
    code, err, out = _train(tmp_path, capsys, market, override)
    assert code == 2 and expected in err
    assert not out.exists()


def test_k_above_every_identity_without_replacement(tmp_path, capsys, market):
    code, err, out = _train(tmp_path, capsys, market, "data.k=5", "data.replacement=false")
    assert code == 2 and "data.k = 5 but no training identity has more than 4 images" in err
    assert "set data.replacement: true" in err
    assert not out.exists()


def test_unknown_key_in_the_recipe_file(tmp_path, capsys, market):
    recipe = config_file(tmp_path, market, tmp_path / "run", optim={"learning_rate": 0.1})
    code, err = run_cli(capsys, "train", recipe, "--set", "optim.lr=0.1")
    assert code == 2 and err.startswith(f"progreid train: error: {recipe}: unknown key "
                                        "'optim.learning_rate'; valid keys here: optim.name,")
    assert "--set" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_set_typo_is_blamed_on_the_set_item_not_the_recipe(tmp_path, capsys, market):
    code, err, out = _train(tmp_path, capsys, market, "optim.lrr=0.1")
    assert code == 2 and err.startswith("progreid train: error: --set optim.lrr=0.1: unknown key "
                                        "'optim.lrr'; valid keys here: optim.name, optim.lr,")
    assert "recipe.yaml" not in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_quadruplet_needs_three_identities_per_batch():
    with pytest.raises(ConfigError, match=r"data.p = 2: the metric loss 'quadruplet' needs at "
                                        r"least 3 identities"):
        load_config(None, ["loss.metric=quadruplet", "loss.metric_params={}", "data.p=2"])


def test_batch_check_counts_every_process(market):
    cfg = load_config(None, ["data.p=2", "data.k=4"])
    dataset = build_dataset("market1501", market)
    check_against_dataset(cfg.data, dataset, world_size=2)
    with pytest.raises(ConfigError, match=r"2 x 4 x 3 processes = 24 images per batch"):
        check_against_dataset(cfg.data, dataset, world_size=3)


def test_skipped_files_are_listed_in_the_run_log(tmp_path, capsys, market):
    path = _first(market / "bounding_box_train")
    _truncate(path)
    code, err, out = _train(tmp_path, capsys, market, "data.on_bad_image=skip",
                            "train.epochs=1")
    assert code == 0, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    check = [r for r in records if r["event"] == "data_check"]
    assert len(check) == 1 and [s["path"] for s in check[0]["skipped"]] == [str(path)]
    assert "image file is truncated" in check[0]["skipped"][0]["reason"]
    assert (out / "model.pt").is_file()
