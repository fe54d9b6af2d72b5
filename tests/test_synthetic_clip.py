"""The synthetic camera clip for trackers: its boxes, its people and its writing (deterministic,
reused, refused, atomic)."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest
from deploy_helpers import clip_rows
from PIL import Image

from progreid.data import synthetic_clip
from progreid.data.synthetic import SyntheticSpec, SyntheticSpecError, split_identities
from progreid.errors import DatasetError

SMALL = SyntheticSpec(identities=40, train_identities=20, height=64, width=32)
SPEC = synthetic_clip.ClipSpec(SMALL, camera=1, people=3, frames=12, height=96, width=192)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return synthetic_clip.write_clip(tmp_path_factory.mktemp("clip") / "clip", SPEC)


def test_boxes_are_test_identities_inside_the_frame(clip):
    rows = clip_rows(clip)
    frames, pids = rows[:, 0].astype(int), rows[:, 1].astype(int)
    left, top, width, height = rows[:, 2:6].T
    assert set(frames) == set(range(1, SPEC.frames + 1))
    assert len(set(pids)) == SPEC.people
    assert not set(pids) & split_identities(SMALL)  # people the model did not train on
    assert (left >= 0).all() and (top >= 0).all()
    assert (left + width <= SPEC.width).all() and (top + height <= SPEC.height).all()
    assert np.allclose(width / height, 0.5, atol=0.01)
    for pid in set(pids):  # each person is seen in one run of consecutive frames
        seen = frames[pids == pid]
        assert (np.diff(seen) == 1).all()
    firsts = sorted(frames[pids == pid].min() for pid in set(pids))
    assert firsts[0] == 1 and firsts[-1] > 1  # people enter one after another
    assert min(frames[pids == pid].max() for pid in set(pids)) < SPEC.frames  # one leaves
    assert [Image.open(p).size for p in sorted((clip / "frames").glob("*.jpg"))] == \
        [(SPEC.width, SPEC.height)] * SPEC.frames


def test_people_pass_without_hiding_each_other():
    walks = synthetic_clip.plan_walks(SPEC)
    assert synthetic_clip.crowding(walks) <= 0.3
    for walk in walks:
        box = np.array([walk.box(frame) for frame in range(walk.first, walk.last + 1)])
        step = np.abs(np.diff(box[:, 0]))  # a few pixels a frame, as video moves
        assert (step <= 0.15 * box[0, 2] + 1e-9).all()


def test_the_same_spec_writes_the_same_bytes(clip, tmp_path):
    again = synthetic_clip.write_clip(tmp_path / "again", SPEC)
    names = sorted(p.relative_to(clip).as_posix() for p in clip.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(again).as_posix() for p in again.rglob("*")
                           if p.is_file())
    assert all(filecmp.cmp(clip / name, again / name, shallow=False) for name in names)


def test_a_clip_is_reused_and_another_folder_refused(clip, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in clip.rglob("*")}
    assert synthetic_clip.write_clip(clip, SPEC) == clip
    assert {p: p.stat().st_mtime_ns for p in clip.rglob("*")} == before
    other = synthetic_clip.ClipSpec(SMALL, camera=2, people=3, frames=12, height=96, width=192)
    with pytest.raises(DatasetError, match="does not hold this synthetic clip"):
        synthetic_clip.write_clip(clip, other)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(DatasetError, match="delete .*mine"):
        synthetic_clip.write_clip(mine, SPEC)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(root, spec):
        (root / "frames").mkdir()
        raise OSError("disk full")

    monkeypatch.setattr(synthetic_clip, "_render_frames", fail)
    with pytest.raises(OSError, match="disk full"):
        synthetic_clip.write_clip(tmp_path / "clip", SPEC)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("camera", 6, "clip camera must be between 0 and 5"),
    ("people", 21, "clip people must be between 1 and the 20 test identities"),
    ("frames", 1, "clip frames must be between 2"),
    ("width", 100, "clip width must be between 2 x height"),
])
def test_a_bad_spec_names_its_field(field, value, expected):
    with pytest.raises(SyntheticSpecError, match=expected):
        synthetic_clip.ClipSpec(SMALL, **{field: value})
