"""Synthetic pedestrians: layout, names, counts, splits, determinism and atomic (re)generation."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from progreid.data import synthetic
from progreid.data.synthetic import (
    MANIFEST_NAME,
    SyntheticSpec,
    generate_pedestrians,
    is_current,
    make_identities,
)

NAME = re.compile(r"^(\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
SMALL = dict(identities=7, train_identities=3, cameras=3, images_per_camera=2, query_cameras=2,
             multi_query_images=2, distractors=5, height=32, width=16, seed=3)
FOLDERS = ("bounding_box_train", "bounding_box_test", "query", "gt_bbox")


def parse(folder: Path) -> list[tuple[int, int, str]]:
    """(pid, 1-based camera, file name) of every file in ``folder``; fails on a bad name."""
    rows = []
    for path in sorted(folder.iterdir()):
        match = NAME.match(path.name)
        assert match, f"bad Market-1501 file name {path.name} in {folder.name}"
        rows.append((int(match[1]), int(match[2]), path.name))
    return rows


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_pedestrians(tmp_path_factory.mktemp("synth") / "set", **SMALL)


def test_layout_names_and_images(small: Path) -> None:
    assert sorted(p.name for p in small.iterdir()) == sorted([*FOLDERS, MANIFEST_NAME])
    for folder in FOLDERS:
        for pid, cam, name in parse(small / folder):
            assert 1 <= cam <= SMALL["cameras"]
            assert pid >= 1 or (pid == 0 and folder == "bounding_box_test")
            with Image.open(small / folder / name) as image:
                assert image.format == "JPEG" and image.mode == "RGB"
                assert image.size == (SMALL["width"], SMALL["height"])
    names = [n for folder in FOLDERS[:3] for _, _, n in parse(small / folder)]
    assert len(names) == len(set(names)), "a file name is used twice across the splits"


def test_counts_and_splits(small: Path) -> None:
    train, gallery, query, multi = (parse(small / f) for f in FOLDERS)
    cams, per_cam = SMALL["cameras"], SMALL["images_per_camera"]
    train_ids = {pid for pid, _, _ in train}
    test_ids = {pid for pid, _, _ in query}
    assert len(train_ids) == SMALL["train_identities"]
    assert len(test_ids) == SMALL["identities"] - SMALL["train_identities"]
    assert not train_ids & test_ids
    assert train_ids | test_ids == set(range(1, SMALL["identities"] + 1))
    assert Counter((p, c) for p, c, _ in train) == {(p, c): per_cam for p in train_ids
                                                   for c in range(1, cams + 1)}
    # Query: one image per (identity, camera) for query_cameras distinct cameras; the rest of the
    # identity's images are in the gallery.
    query_pairs = Counter((p, c) for p, c, _ in query)
    assert set(query_pairs.values()) == {1}
    assert Counter(p for p, _ in query_pairs) == dict.fromkeys(test_ids, SMALL["query_cameras"])
    both = Counter((p, c) for p, c, _ in query + gallery if p != 0)
    assert both == {(p, c): per_cam for p in test_ids for c in range(1, cams + 1)}
    assert Counter((p, c) for p, c, _ in multi) == dict.fromkeys(query_pairs,
                                                                 SMALL["multi_query_images"])
    assert SyntheticSpec(**SMALL).counts() == {"train": len(train), "query": len(query),
                                               "gallery": len(gallery), "multi_query": len(multi)}


def test_every_query_identity_is_in_the_gallery_under_another_camera(small: Path) -> None:
    gallery = parse(small / "bounding_box_test")
    for pid, cam, name in parse(small / "query"):
        assert any(p == pid and c != cam for p, c, _ in gallery), name


def test_multi_query_holds_each_query_image(small: Path) -> None:
    multi = {n for _, _, n in parse(small / "gt_bbox")}
    for _, _, name in parse(small / "query"):
        assert name in multi
        assert (small / "query" / name).read_bytes() == (small / "gt_bbox" / name).read_bytes()


def test_distractors_only_in_gallery(small: Path) -> None:
    gallery = parse(small / "bounding_box_test")
    assert sum(pid == 0 for pid, _, _ in gallery) == SMALL["distractors"]
    none = generate_pedestrians(small.parent / "nodis", **{**SMALL, "distractors": 0})
    assert all(pid != 0 for pid, _, _ in parse(none / "bounding_box_test"))


def test_manifest_records_spec_and_version(small: Path) -> None:
    manifest = json.loads((small / MANIFEST_NAME).read_text())
    assert manifest["version"] == synthetic.GENERATOR_VERSION
    assert manifest["spec"] == SMALL
    assert is_current(small, SyntheticSpec(**SMALL))
    assert not is_current(small, SyntheticSpec(**{**SMALL, "seed": 4}))


def test_deterministic_for_a_seed(small: Path, tmp_path: Path) -> None:
    again = generate_pedestrians(tmp_path / "again", **SMALL)
    assert snapshot(again) == snapshot(small)
    other = generate_pedestrians(tmp_path / "other", **{**SMALL, "seed": 4})
    first, second = snapshot(small), snapshot(other)
    assert first.keys() != second.keys() or any(first[k] != second[k] for k in first)


def test_images_vary_within_an_identity(small: Path) -> None:
    train = parse(small / "bounding_box_train")
    pid = train[0][0]
    arrays = [np.asarray(Image.open(small / "bounding_box_train" / n), dtype=np.int16)
              for p, _, n in train if p == pid]
    assert len(arrays) == SMALL["cameras"] * SMALL["images_per_camera"]
    assert all(np.abs(a - arrays[0]).mean() > 1.0 for a in arrays[1:])


def test_identities_are_distinct_and_prefix_stable() -> None:
    people = make_identities(40, seed=1)
    assert len(set(people)) == 40
    assert make_identities(10, seed=1) == people[:10]


def test_existing_output_is_reused(tmp_path: Path) -> None:
    out = generate_pedestrians(tmp_path / "set", **SMALL)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert generate_pedestrians(out, **SMALL) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_interrupted_generation_leaves_nothing(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = synthetic.render_image

    def failing(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_image", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_pedestrians(tmp_path / "fresh", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_defaults_make_the_demo_set() -> None:
    spec = SyntheticSpec()
    assert (spec.height, spec.width) == (128, 64)
    assert 2000 <= sum(spec.counts()[k] for k in ("train", "query", "gallery")) <= 4000


@pytest.mark.parametrize(("field", "value"), [
    ("identities", 1), ("train_identities", 0), ("train_identities", 7), ("cameras", 1),
    ("cameras", 10), ("images_per_camera", 0), ("query_cameras", 3), ("query_cameras", 0),
    ("multi_query_images", 0), ("distractors", -1), ("height", 8), ("width", 4), ("seed", -1),
    ("identities", 2.5), ("cameras", True),
])
def test_bad_spec_is_rejected_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"SyntheticSpec.{field} "):
        SyntheticSpec(**{**SMALL, field: value})


def test_synth_command_passes_every_spec_option(tmp_path: Path, capsys) -> None:
    from progreid.cli import main

    out = tmp_path / "cli"
    args = [f"--{key.replace('_', '-')}={value}" for key, value in SMALL.items()]
    assert main(["synth", str(out), *args]) == 0
    assert json.loads((out / MANIFEST_NAME).read_text())["spec"] == SMALL
    assert main(["synth", str(tmp_path / "bad"), "--query-cameras=99"]) == 2
    assert "--query-cameras must be between" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
