"""Dataset readers, the registry and image decoding/loading (progreid.data)."""

from __future__ import annotations

import io
import itertools
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from progreid.data import DATASET_NAMES, DatasetError, build_dataset, datasets_table
from progreid.data.cuhk01 import read_cuhk01
from progreid.data.cuhk03 import prepare_cuhk03, read_cuhk03
from progreid.data.loading import (
    MAX_IMAGE_PIXELS,
    ImageDataset,
    build_eval_loader,
    build_train_loader,
    decode_image,
)
from progreid.data.market import read_market
from progreid.data.msmt17 import read_msmt17
from progreid.data.pattern import read_folder
from progreid.data.sampler import PKSampler


def _png_bytes(height: int = 8, width: int = 4, value: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


TINY_PNG = _png_bytes()


def _touch(folder: Path, *names: str, data: bytes = TINY_PNG) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


# ----------------------------------------------------------------- Market-1501 / Duke layout
def _market(root: Path) -> Path:
    _touch(root / "bounding_box_train", "0002_c1s1_000451_03.jpg", "0002_c3s1_000551_01.jpg",
           "0007_c2s1_000301_02.jpg", "Thumbs.db")
    _touch(root / "bounding_box_test", "0010_c2s1_000100_01.jpg", "0011_c1s2_000200_01.jpg",
           "0000_c4s1_000300_01.jpg", "-1_c3s1_000400_01.jpg")
    _touch(root / "query", "0010_c1s1_000100_00.jpg", "0011_c6s1_000200_00.jpg")
    _touch(root / "gt_bbox", "0010_c1s1_000101_00.jpg", "0002_c1s1_000451_00.jpg")
    return root


def test_market_reader_relabels_drops_junk_and_keeps_distractors(tmp_path):
    data = read_market(_market(tmp_path))
    assert data.name == "market1501"
    assert sorted((s.path.name, s.pid, s.camid) for s in data.train) == [
        ("0002_c1s1_000451_03.jpg", 0, 0), ("0002_c3s1_000551_01.jpg", 0, 2),
        ("0007_c2s1_000301_02.jpg", 1, 1)]
    assert sorted((s.pid, s.camid) for s in data.gallery) == [(0, 3), (10, 1), (11, 0)]
    assert sorted((s.pid, s.camid) for s in data.query) == [(10, 0), (11, 5)]
    assert [(s.pid, s.camid) for s in data.multi_query] == [(10, 0)]


def test_dukemtmc_names_and_synthetic_use_the_market_reader(tmp_path):
    _touch(tmp_path / "bounding_box_train", "0005_c2_f0046985.jpg")
    _touch(tmp_path / "bounding_box_test", "0009_c1_f0000001.jpg")
    _touch(tmp_path / "query", "0009_c8_f0000002.jpg")
    duke = build_dataset("dukemtmc", tmp_path)
    assert duke.name == "dukemtmc"
    assert [(s.pid, s.camid) for s in duke.train] == [(0, 1)]
    assert [(s.pid, s.camid) for s in duke.query] == [(9, 7)]
    assert duke.multi_query == []
    synthetic = build_dataset("synthetic", tmp_path)
    assert synthetic.name == "synthetic" and synthetic.gallery == duke.gallery


@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: shutil.rmtree(r / "query"), "missing folder .*query"),
    (lambda r: _touch(r / "query", "person10.jpg"), "person10.jpg does not match"),
    (lambda r: _touch(r / "query", "0010_c0s1_000100_00.jpg"), "camera c0"),
    (lambda r: [p.unlink() for p in (r / "bounding_box_train").glob("*.jpg")],
     "train split is empty"),
    (lambda r: _touch(r / "query", "0099_c1s1_000100_00.jpg"), "no gallery image.*99"),
])
def test_market_reader_rejects_bad_layouts(tmp_path, damage, message):
    root = _market(tmp_path)
    damage(root)
    with pytest.raises(DatasetError, match=message):
        read_market(root)


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="missing folder .*nowhere"):
        build_dataset("market1501", tmp_path / "nowhere")


# ----------------------------------------------------------------- folder + pattern
def test_folder_reader_with_custom_pattern(tmp_path):
    pattern = r"id(?P<pid>-?\d+)/cam(?P<camid>\d+)_"
    _touch(tmp_path / "train", "id5/cam10_a.png", "id5/cam30_b.png", "id8/cam20_a.png",
           "notes.txt")
    _touch(tmp_path / "gallery", "id1/cam20_a.png", "id-1/cam10_x.png")
    _touch(tmp_path / "query", "id1/cam30_a.png")
    data = build_dataset("folder", tmp_path, pattern=pattern)
    assert sorted((s.path.name, s.pid, s.camid) for s in data.train) == [
        ("cam10_a.png", 0, 0), ("cam20_a.png", 1, 1), ("cam30_b.png", 0, 2)]
    assert [(s.pid, s.camid) for s in data.gallery] == [(1, 1)]
    assert [(s.pid, s.camid) for s in data.query] == [(1, 2)]


def test_folder_reader_default_pattern_reads_market_names(tmp_path):
    root = _market(tmp_path)
    for split, folder in (("train", "bounding_box_train"), ("gallery", "bounding_box_test"),
                          ("query", "query")):
        (root / folder).rename(root / split)
    data = read_folder(root)
    market_cams = {"0002_c1s1_000451_03.jpg": 0, "0002_c3s1_000551_01.jpg": 2,
                   "0007_c2s1_000301_02.jpg": 1}
    assert {s.path.name: s.camid for s in data.train} == market_cams


@pytest.mark.parametrize(("pattern", "message"), [
    (r"(?P<camid>\d+)", r"data.options.pattern = '\(\?P<camid>\\\\d\+\)': expected a regular "
                        "expression with the named group pid.*; it lacks the named group pid"),
    (r"(?P<pid>\d+", r"data.options.pattern = .*: expected a valid regular expression \(missing"),
    (r"(?P<pid>\d+)_(?P<camid>c\d+)", "captured pid='0001', camid='c1'; expected integers"),
    (r"^(?P<pid>\d+)_k(?P<camid>\d+)", "0001_c1.png does not match the file name pattern"),
])
def test_folder_reader_rejects_bad_patterns(tmp_path, pattern, message):
    _touch(tmp_path / "train", "0001_c1.png")
    _touch(tmp_path / "query", "0002_c1.png")
    _touch(tmp_path / "gallery", "0002_c2.png")
    with pytest.raises(DatasetError, match=message):
        read_folder(tmp_path, pattern)


# ----------------------------------------------------------------- CUHK03
def _split_mat(path: Path, names, labels, cams, train, query, gallery) -> None:
    filelist = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        filelist[i, 0] = name

    def column(values):
        return np.array(values, dtype=np.uint16).reshape(-1, 1)

    scipy.io.savemat(path, {"filelist": filelist, "labels": column(labels),
                            "camId": column(cams), "train_idx": column(train),
                            "query_idx": column(query), "gallery_idx": column(gallery)})


@pytest.mark.parametrize(("variant", "train_images", "gallery_images"),
                         [("detected", 7365, 5332), ("labeled", 7368, 5328)])
def test_cuhk03_reader_on_real_split_files(cuhk03_protocol_dir, tmp_path, variant,
                                           train_images, gallery_images):
    mat = scipy.io.loadmat(cuhk03_protocol_dir / f"cuhk03_new_protocol_config_{variant}.mat")
    placeholder = tmp_path / "placeholder.png"
    placeholder.write_bytes(TINY_PNG)
    images = tmp_path / f"images_{variant}"
    images.mkdir()
    for cell in mat["filelist"].ravel():
        (images / str(cell[0])).hardlink_to(placeholder)
    data = build_dataset("cuhk03", tmp_path, variant=variant,
                         split_dir=str(cuhk03_protocol_dir))
    assert data.name == f"cuhk03-{variant}"
    assert len(data.train) == train_images and data.num_train_pids == 767
    assert {s.pid for s in data.train} == set(range(767))
    assert len(data.query) == 1400 and len({s.pid for s in data.query}) == 700
    assert len(data.gallery) == gallery_images
    assert {s.camid for s in data.query + data.gallery + data.train} == {0, 1}
    sample = data.query[0]
    pair, person, camera, image = sample.path.stem.split("_")
    assert sample.camid == int(camera) - 1 and (int(image) <= 5) == (camera == "1")


def test_cuhk03_reader_reports_missing_images(cuhk03_protocol_dir, tmp_path):
    _touch(tmp_path / "images_detected", "1_001_1_01.png")
    with pytest.raises(DatasetError, match=r"14096 images listed by .*detected.mat do not exist"):
        read_cuhk03(tmp_path, "detected", cuhk03_protocol_dir)


@pytest.mark.parametrize(("train", "query", "gallery", "message"), [
    ([], [4], [3, 4], "train split is empty"),
    ([1, 2], [3], [4], "1 query identities have no gallery image.*e.g. 2"),
    ([1, 2], [4], [3, 9], "gallery_idx has indices outside 1..4"),
])
def test_cuhk03_reader_rejects_bad_split_files(tmp_path, train, query, gallery, message):
    names = ["1_001_1_01.png", "1_001_2_06.png", "1_002_1_01.png", "1_003_2_07.png"]
    _touch(tmp_path / "images_labeled", *names)
    _split_mat(tmp_path / "cuhk03_new_protocol_config_labeled.mat", names, [1, 1, 2, 3],
               [1, 2, 1, 2], train, query, gallery)
    with pytest.raises(DatasetError, match=message):
        read_cuhk03(tmp_path, "labeled")


def test_cuhk03_reader_rejects_bad_variant_and_missing_split(tmp_path):
    with pytest.raises(DatasetError, match="data.options.variant = 'both': expected one of "
                                         "detected, labeled"):
        build_dataset("cuhk03", tmp_path, variant="both")
    with pytest.raises(DatasetError, match="missing CUHK03 split file"):
        build_dataset("cuhk03", tmp_path)


def _fake_raw_cuhk03(path: Path, groups: dict[str, list[list[list[np.ndarray | None]]]]) -> None:
    """The official cuhk-03.mat structure (MATLAB v7.3): per variant a cell of camera pairs,
    each a persons x 10 cell of H x W x 3 uint8 images; HDF5 holds every array transposed and
    cells as object references; an empty cell is a 2-element uint64 array."""
    counter = itertools.count()
    with h5py.File(path, "w") as mat:
        refs = mat.create_group("#refs#")

        def store(data, dtype=None):
            return refs.create_dataset(f"r{next(counter)}", data=data, dtype=dtype).ref

        for variant, pairs in groups.items():
            pair_refs = []
            for persons in pairs:
                cell = np.empty((len(persons), 10), dtype=h5py.ref_dtype)
                for j, images in enumerate(persons):
                    for i, image in enumerate(images):
                        cell[j, i] = store(np.zeros(2, np.uint64) if image is None else image.T)
                pair_refs.append(store(cell.T, h5py.ref_dtype))
            mat.create_dataset(variant, data=np.array([pair_refs], dtype=h5py.ref_dtype))


def test_prepare_cuhk03_extracts_images_from_the_official_structure(tmp_path):
    rng = np.random.default_rng(0)

    def person():
        return [rng.integers(0, 256, (int(rng.integers(6, 12)), 5, 3), dtype=np.uint8)
                if i not in (4, 9) else None for i in range(10)]

    groups = {variant: [[person(), person()], [person()]] for variant in ("detected", "labeled")}
    _fake_raw_cuhk03(tmp_path / "cuhk-03.mat", groups)
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    names = ["1_001_1_01.png", "1_001_2_06.png", "1_002_1_02.png", "1_002_2_07.png",
             "2_001_1_04.png", "2_001_2_09.png"]
    for variant in ("detected", "labeled"):
        _split_mat(split_dir / f"cuhk03_new_protocol_config_{variant}.mat", names,
                   [1, 1, 2, 2, 3, 3], [1, 2, 1, 2, 1, 2], [1, 2], [3, 5], [4, 6])
    out = prepare_cuhk03(tmp_path / "cuhk-03.mat", split_dir, tmp_path / "cuhk03")
    for variant in ("detected", "labeled"):
        folder = out / f"images_{variant}"
        assert len(list(folder.glob("*.png"))) == 3 * 8
        assert not (folder / "1_001_1_05.png").exists()
        for pair, persons in enumerate(groups[variant], start=1):
            for number, images in enumerate(persons, start=1):
                for i, image in enumerate(images):
                    if image is not None:
                        name = f"{pair}_{number:03d}_{1 if i < 5 else 2}_{i + 1:02d}.png"
                        assert np.array_equal(np.asarray(Image.open(folder / name)), image)
        data = read_cuhk03(out, variant)
        assert [s.path.name for s in data.query] == ["1_002_1_02.png", "2_001_1_04.png"]
    assert not list(out.rglob("*.tmp"))
    assert prepare_cuhk03(tmp_path / "cuhk-03.mat", out, out) == out


def test_prepare_cuhk03_rejects_bad_input(tmp_path):
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    for variant in ("detected", "labeled"):
        _split_mat(split_dir / f"cuhk03_new_protocol_config_{variant}.mat",
                   ["1_001_1_01.png", "1_001_2_06.png", "1_009_2_06.png"], [1, 1, 2],
                   [1, 2, 2], [3], [1], [2])
    with pytest.raises(DatasetError, match="missing CUHK03 raw file"):
        prepare_cuhk03(tmp_path / "absent.mat", split_dir, tmp_path / "out")
    (tmp_path / "text.mat").write_text("not hdf5")
    with pytest.raises(DatasetError, match="not a MATLAB v7.3"):
        prepare_cuhk03(tmp_path / "text.mat", split_dir, tmp_path / "out")
    image = np.zeros((4, 2, 3), np.uint8)
    _fake_raw_cuhk03(tmp_path / "raw.mat", {v: [[[image] * 10]] for v in ("detected", "labeled")})
    with pytest.raises(DatasetError, match="1 images listed by .* do not exist.*1_009_2_06"):
        prepare_cuhk03(tmp_path / "raw.mat", split_dir, tmp_path / "out")
    _fake_raw_cuhk03(tmp_path / "only.mat", {"detected": [[[image] * 10]]})
    with pytest.raises(DatasetError, match="no 'labeled' group"):
        prepare_cuhk03(tmp_path / "only.mat", split_dir, tmp_path / "out2")


# ----------------------------------------------------------------- CUHK01
def test_cuhk01_real_protocol(cuhk01_root):
    data = build_dataset("cuhk01", cuhk01_root)
    assert (len(data.train), data.num_train_pids) == (1940, 485)
    assert {s.pid for s in data.train} == set(range(485))
    assert len(data.query) == len(data.gallery) == 972
    assert len({s.pid for s in data.query}) == 486
    assert {s.camid for s in data.query} == {0} and {s.camid for s in data.gallery} == {1}
    for s in data.query + data.gallery:
        assert s.camid == (int(s.path.stem[4:]) > 2)
    train_files = {s.path for s in data.train}
    assert train_files.isdisjoint({s.path for s in data.query + data.gallery})
    again = read_cuhk01(cuhk01_root)
    assert again.query == data.query
    other = read_cuhk01(cuhk01_root, seed=1)
    assert {s.pid for s in other.query} != {s.pid for s in data.query}
    swapped = read_cuhk01(cuhk01_root, query_camera="B")
    assert swapped.query == data.gallery and swapped.gallery == data.query


@pytest.mark.parametrize(("files", "options", "message"), [
    (["0001001.png", "0001x.png"], {}, "0001x.png does not match the CUHK01 name"),
    (["0001001.png", "0001005.png"], {}, "image number 005 is outside 001-004"),
    (["0001001.png", "0002003.png"], {"num_train_ids": 2},
     r"data.options.num_train_ids = 2: expected an integer in 1..1 \(.*campus has 2 identities; "
     "the others are the test identities\\)"),
    (["0001001.png", "0002003.png"], {"query_camera": "C"},
     r"data.options.query_camera = 'C': expected 'A' or 'B' \(the queries' camera\)"),
    (["0001001.png", "0002001.png"], {"num_train_ids": 1}, "gallery split is empty"),
])
def test_cuhk01_rejects_bad_input(tmp_path, files, options, message):
    _touch(tmp_path / "campus", *files)
    with pytest.raises(DatasetError, match=message):
        read_cuhk01(tmp_path, **options)


# ----------------------------------------------------------------- MSMT17
def _msmt17(root: Path) -> Path:
    lists = {
        "train": ["0000/0000_000_01_0303morning_0015_0.jpg 0",
                  "0001/0001_003_07_0303noon_0100_1.jpg 1"],
        "val": ["0000/0000_001_02_0303morning_0016_0.jpg 0"],
        "query": ["0003/0003_000_15_0113morning_0001_0.jpg 3"],
        "gallery": ["0003/0003_004_04_0113noon_0031_2.jpg 3",
                    "0004/0004_000_05_0113noon_0032_2.jpg 4"],
    }
    for split, lines in lists.items():
        (root / f"list_{split}.txt").write_text("\n".join(lines) + "\n")
        folder = root / ("train" if split in ("train", "val") else "test")
        _touch(folder, *(line.split()[0] for line in lines))
    return root


def test_msmt17_reader(tmp_path):
    data = build_dataset("msmt17", _msmt17(tmp_path))
    assert sorted((s.path.name[:11], s.pid, s.camid) for s in data.train) == [
        ("0000_000_01", 0, 0), ("0000_001_02", 0, 1), ("0001_003_07", 1, 6)]
    assert [(s.pid, s.camid) for s in data.query] == [(3, 14)]
    assert [(s.pid, s.camid) for s in data.gallery] == [(3, 3), (4, 4)]
    assert data.query[0].path.parent.parent == tmp_path / "test"


@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: (r / "list_val.txt").unlink(), "missing MSMT17 list file .*list_val"),
    (lambda r: (r / "list_query.txt").write_text("0003/x.jpg\n"), "line 1: expected"),
    (lambda r: (r / "list_query.txt").write_text("0003/x.jpg 3\n"), "does not carry a camera"),
    (lambda r: next((r / "test").rglob("0004_*.jpg")).unlink(), "1 images listed by .*gallery"),
    (lambda r: (r / "list_gallery.txt").write_text(""), "gallery split is empty"),
    (lambda r: (r / "train").rename(r / "elsewhere"), "missing folder .*train"),
])
def test_msmt17_rejects_bad_input(tmp_path, damage, message):
    root = _msmt17(tmp_path)
    damage(root)
    with pytest.raises(DatasetError, match=message):
        read_msmt17(root)


# ----------------------------------------------------------------- registry and table
def test_registry_names_and_errors(tmp_path):
    assert set(DATASET_NAMES) == {"market1501", "dukemtmc", "cuhk03", "cuhk01", "msmt17",
                                  "folder", "synthetic"}
    with pytest.raises(DatasetError, match="unknown dataset 'market'; expected one of"):
        build_dataset("market", tmp_path)
    with pytest.raises(DatasetError, match="data.options.variant: dataset 'msmt17' has no option "
                       "'variant'; it takes no options; remove it from data.options"):
        build_dataset("msmt17", tmp_path, variant="labeled")
    with pytest.raises(DatasetError, match="data.options.variant: dataset 'market1501' has no "
                       "option 'variant'; its options are train_ids, test_ids; remove it"):
        build_dataset("market1501", tmp_path, variant="labeled")
    with pytest.raises(DatasetError, match="data.options.seeds: dataset 'cuhk01' has no option "
                       "'seeds'; its options are seed, "):
        build_dataset("cuhk01", tmp_path, seeds=3)


def test_datasets_table(tmp_path):
    table = datasets_table(read_market(_market(tmp_path)))
    rows = [line.split() for line in table.splitlines()]
    assert rows == [["market1501", "identities", "images", "cameras"],
                    ["train", "2", "3", "3"], ["query", "2", "2", "2"],
                    ["gallery", "3", "3", "3"], ["multi-query", "1", "1", "1"]]


# ----------------------------------------------------------------- decoding and loaders
def _save(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_decode_image_converts_modes_to_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (6, 4), dtype=np.uint8)
    rgba = rng.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    deep = rng.integers(0, 65536, (6, 4), dtype=np.uint16)
    palette_rgb = np.array([[255, 0, 0], [0, 128, 255], [9, 9, 9]], np.uint8)
    indices = rng.integers(0, 3, (6, 4), dtype=np.uint8)
    palette = Image.frombytes("P", (4, 6), indices.tobytes())
    palette.putpalette(palette_rgb.ravel().tolist())
    cases = {
        "grey.png": (Image.fromarray(grey), np.repeat(grey[..., None], 3, axis=2)),
        "rgba.png": (Image.fromarray(rgba), rgba[..., :3]),
        "deep.png": (Image.fromarray(deep), np.repeat(
            np.rint(deep / 257.0).astype(np.uint8)[..., None], 3, axis=2)),
        "palette.png": (palette, palette_rgb[indices]),
    }
    for name, (image, expected) in cases.items():
        (tmp_path / name).write_bytes(_save(image))
        decoded = decode_image(tmp_path / name, 6, 4)
        assert decoded.dtype == np.uint8 and decoded.shape == (6, 4, 3)
        assert np.array_equal(decoded, expected), name
    palette.info["transparency"] = 0
    (tmp_path / "transparent.png").write_bytes(_save(palette))
    assert np.array_equal(decode_image(tmp_path / "transparent.png", 6, 4),
                          palette_rgb[indices])
    cmyk = Image.new("CMYK", (4, 6), (0, 255, 255, 0))
    (tmp_path / "cmyk.jpg").write_bytes(_save(cmyk, "JPEG", quality=100))
    red = decode_image(tmp_path / "cmyk.jpg", 6, 4).astype(int)
    assert (red[..., 0] > 200).all() and (red[..., 1:] < 60).all()


def test_decode_image_resizes_bilinearly(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (20, 10, 3), dtype=np.uint8)
    (tmp_path / "a.png").write_bytes(_save(Image.fromarray(pixels)))
    expected = np.asarray(Image.fromarray(pixels).resize((5, 8), Image.Resampling.BILINEAR))
    assert np.array_equal(decode_image(tmp_path / "a.png", 8, 5), expected)


def test_decode_image_rejects_broken_files(tmp_path):
    jpeg = _save(Image.fromarray(np.random.default_rng(2).integers(
        0, 256, (64, 32, 3), dtype=np.uint8)), "JPEG")
    (tmp_path / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    Image.new("1", (4097, 4096)).save(tmp_path / "huge.png")
    for name, reason in (("truncated.jpg", "image file is truncated"),
                         ("empty.png", "empty file"), ("absent.png", "no such file"),
                         ("text.jpg", "not an image file of a known format")):
        with pytest.raises(DatasetError, match=f"cannot decode image .*{name}: {reason}"):
            decode_image(tmp_path / name, 8, 4)
    with pytest.raises(DatasetError, match=f"huge.png is too large: 4097 x 4096 pixels, above "
                                           f"the limit of {MAX_IMAGE_PIXELS:,}"):
        decode_image(tmp_path / "huge.png", 8, 4)


def _tiny_samples(tmp_path: Path) -> list:
    from progreid.data.sample import Sample

    samples = []
    for i, pid in enumerate([0, 0, 0, 1, 1, 2, 2, 2, 3]):
        path = tmp_path / f"{i}.png"
        path.write_bytes(_png_bytes(10, 6, value=10 * i))
        samples.append(Sample(path, pid, i % 2))
    return samples


def test_image_dataset_and_eval_loader(tmp_path):
    samples = _tiny_samples(tmp_path)
    image, pid, camid, index = ImageDataset(samples, 4, 2)[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 4, 2)
    assert (image == 30).all() and (pid, camid, index) == (1, 1, 3)
    batches = list(build_eval_loader(samples, 4, 2, batch_size=4, workers=0))
    assert [b[0].shape[0] for b in batches] == [4, 4, 1]
    images = torch.cat([b[0] for b in batches])
    assert images[:, 0, 0, 0].tolist() == [10 * i for i in range(9)]
    assert torch.cat([b[3] for b in batches]).tolist() == list(range(9))


@pytest.mark.parametrize("workers", [0, 1])
def test_train_loader_follows_the_pk_sampler(tmp_path, workers):
    samples = _tiny_samples(tmp_path)
    sampler = PKSampler([s.pid for s in samples], p=2, k=3, seed=5)
    loader = build_train_loader(samples, 4, 2, sampler, workers)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        expected = list(sampler)
        got = list(loader)
        assert len(got) == len(expected) == 2
        for (images, pids, camids, indices), batch in zip(got, expected, strict=True):
            assert images.shape == (6, 3, 4, 2) and images.dtype == torch.uint8
            assert indices.tolist() == batch
            assert pids.tolist() == [samples[i].pid for i in batch]
            assert camids.tolist() == [samples[i].camid for i in batch]
            assert images[:, 0, 0, 0].tolist() == [10 * i for i in batch]
