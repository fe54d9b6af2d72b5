"""A synthetic camera clip for trackers: frames of one camera of a synthetic-pedestrian dataset
in which some of its test identities walk, with their boxes in the MOTChallenge text format.

Consecutive frames differ as video does: each person moves a few pixels and swings their limbs;
the scene, the camera's colour cast and its lighting stay. People enter one after another and
the first leaves before the end, so a tracker has to start tracks and keep them apart when they
cross. ``gt.txt`` has one line per person and frame, ``frame,id,left,top,width,height,1,-1,-1,-1``
(frames from 1, boxes in pixels, the id being the dataset identity), the format of MOTChallenge
ground truth and detection files, so the boxes stand in for a detector's. The clip is written
into a temporary folder renamed into place and reused when its manifest matches.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from progreid.data.synthetic import (
    SyntheticSpec,
    SyntheticSpecError,
    camera_pipeline,
    make_camera,
    make_identities,
    render_person,
    rng_stream,
    scene_background,
    split_identities,
)
from progreid.errors import DatasetError
from progreid.utils.io import atomic_folder, atomic_write_json

CLIP_VERSION = 1
CLIP_MANIFEST = "clip.json"
FRAMES_FOLDER = "frames"
BOXES_FILE = "gt.txt"
_STREAM_CLIP = 100  # beyond synthetic.py's streams, so a clip never repeats a dataset image
_BOX_ASPECT = 0.5  # box width / height, as the dataset's 64 x 128 crops
_FIGURE_SHARE = 0.9  # the figure's height / its box's height
_MAX_STEP = 0.15  # the farthest a box moves in a frame, in box widths


@dataclass(frozen=True)
class ClipSpec:
    """What to render: ``frames`` frames of ``height`` x ``width`` pixels from camera
    ``camera`` (0-based) of the dataset ``dataset``, in which ``people`` test identities walk."""

    dataset: SyntheticSpec = SyntheticSpec()
    camera: int = 0
    people: int = 4
    frames: int = 24
    height: int = 192
    width: int = 384

    def __post_init__(self) -> None:
        checks = [("camera", 0 <= self.camera < self.dataset.cameras,
                   f"between 0 and {self.dataset.cameras - 1}"),
                  ("people", 1 <= self.people <= self.dataset.test_identities,
                   f"between 1 and the {self.dataset.test_identities} test identities"),
                  ("frames", 2 <= self.frames <= 999_999, "between 2 and 999999"),
                  ("height", 64 <= self.height <= 2048, "between 64 and 2048"),
                  ("width", 2 * self.height <= self.width <= 8192,
                   "between 2 x height and 8192 (people walk across)")]
        for name, ok, expected in checks:
            if not ok:
                raise SyntheticSpecError(f"clip {name} must be {expected}, "
                                         f"got {getattr(self, name)}")


@dataclass(frozen=True)
class Walk:
    """One person's path: visible in frames ``first``..``last`` (0-based), the figure ``size``
    pixels high with its head top at ``top``, centred on ``x0`` at ``first`` and moving ``speed``
    pixels a frame, seen from ``view``, limbs at ``phase`` radians in ``first``."""

    pid: int
    first: int
    last: int
    size: float
    top: float
    x0: float
    speed: float
    view: str
    phase: float

    def centre(self, frame: int) -> float:
        return self.x0 + self.speed * (frame - self.first)

    def box(self, frame: int) -> tuple[float, float, float, float]:
        """``left, top, width, height`` of the figure's box in ``frame``."""
        height = self.size / _FIGURE_SHARE
        width = height * _BOX_ASPECT
        return (self.centre(frame) - width / 2, self.top - 0.05 * height, width, height)


def _overlap(a: Walk, b: Walk, frame: int) -> float:
    """The intersection of two boxes in ``frame`` over the smaller one's area."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = a.box(frame), b.box(frame)
    dx = min(ax + aw, bx + bw) - max(ax, bx)
    dy = min(ay + ah, by + bh) - max(ay, by)
    return max(dx, 0.0) * max(dy, 0.0) / min(aw * ah, bw * bh)


def crowding(walks: list[Walk]) -> float:
    """The largest overlap of two people's boxes in any frame they share."""
    return max((_overlap(a, b, frame) for i, a in enumerate(walks) for b in walks[i + 1:]
                for frame in range(max(a.first, b.first), min(a.last, b.last) + 1)),
               default=0.0)


def _random_walk(rng: np.random.Generator, spec: ClipSpec, pid: int, first: int,
                 last: int) -> Walk:
    """A straight walk of ``pid`` from ``first`` to ``last`` whose box stays in the frame and
    moves at most :data:`_MAX_STEP` of its width a frame."""
    size = spec.height * rng.uniform(0.55, 0.8)
    box_width = size / _FIGURE_SHARE * _BOX_ASPECT
    start, end = rng.uniform(box_width / 2 + 1, spec.width - box_width / 2 - 1, 2)
    fastest = _MAX_STEP * box_width  # pixels a frame
    speed = float(np.clip((end - start) / max(last - first, 1), -fastest, fastest))
    view = (("right" if speed > 0 else "left") if abs(speed) > 2
            else str(rng.choice(["front", "back"])))
    top = max(0.0, spec.height - size / _FIGURE_SHARE * 0.97 - rng.uniform(0, 0.05) * spec.height)
    return Walk(pid, first, last, size, top, start, speed, view, float(rng.uniform(0, 2 * np.pi)))


def plan_walks(spec: ClipSpec, overlap: float = 0.3, tries: int = 20_000) -> list[Walk]:
    """The people of the clip and their paths: person ``j`` enters at frame ``j * gap``, the
    first leaves two thirds into the clip, every box stays inside the frame, and no two boxes
    overlap by more than ``overlap`` of the smaller (people pass, they do not hide each other;
    the least crowded of ``tries`` draws when none qualifies)."""
    rng = rng_stream(spec.dataset.seed, _STREAM_CLIP, spec.camera)
    test_ids = sorted(set(range(1, spec.dataset.identities + 1)) - split_identities(spec.dataset))
    pids = [int(pid) for pid in rng.choice(test_ids, spec.people, replace=False)]
    gap = max(1, spec.frames // (2 * spec.people))
    spans = [(min(j * gap, spec.frames - 2),
              (2 * spec.frames) // 3 if j == 0 and spec.people > 1 else spec.frames - 1)
             for j in range(spec.people)]
    best, least = [], math.inf
    for _ in range(tries):
        walks = [_random_walk(rng, spec, pid, *span)
                 for pid, span in zip(pids, spans, strict=True)]
        overlap_here = crowding(walks)
        if overlap_here <= overlap:
            return walks
        if overlap_here < least:
            best, least = walks, overlap_here
    return best


def _render_frames(root: Path, spec: ClipSpec) -> None:
    """Write the frames and ``gt.txt`` of ``spec`` under ``root``."""
    people = make_identities(spec.dataset.identities, spec.dataset.seed)
    camera = make_camera(spec.camera, spec.dataset.seed, spec.height, spec.width)
    scene_rng = rng_stream(spec.dataset.seed, _STREAM_CLIP, spec.camera, 1)
    scene, wall = scene_background(scene_rng, camera, spec.height, spec.width)
    walks = plan_walks(spec)
    (root / FRAMES_FOLDER).mkdir(parents=True)
    lines = []
    for frame in range(spec.frames):
        canvas = scene.copy()
        here = sorted((w for w in walks if w.first <= frame <= w.last),
                      key=lambda w: w.top + w.size)  # the farther (higher feet) drawn first
        for walk in here:
            render_person(canvas, people[walk.pid - 1], walk.view, walk.centre(frame), walk.top,
                          walk.size, walk.phase + 0.7 * (frame - walk.first))
            left, top, width, height = walk.box(frame)
            lines.append(f"{frame + 1},{walk.pid},{left:.1f},{top:.1f},{width:.1f},"
                         f"{height:.1f},1,-1,-1,-1")
        light = rng_stream(spec.dataset.seed, _STREAM_CLIP, spec.camera, 2)  # the same each frame
        data = camera_pipeline(light, canvas, camera, wall)
        (root / FRAMES_FOLDER / f"{frame + 1:06d}.jpg").write_bytes(data)
    (root / BOXES_FILE).write_text("\n".join(lines) + "\n")


def _manifest(spec: ClipSpec) -> dict:
    return {"format": "progreid-synthetic-clip", "version": CLIP_VERSION, "spec": asdict(spec)}


def write_clip(out_dir: str | os.PathLike, spec: ClipSpec = ClipSpec()) -> Path:
    """Render ``spec`` into ``out_dir`` unless it already holds it; returns ``out_dir``. Only an
    absent or empty folder is written; one holding anything else is refused and left as it was."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        try:
            made = json.loads((out / CLIP_MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            made = None
        if made == json.loads(json.dumps(_manifest(spec))):
            return out
        raise DatasetError(f"{out} exists and does not hold this synthetic clip "
                           f"({CLIP_MANIFEST} differs or is missing): choose another folder or "
                           f"delete {out}")
    with atomic_folder(out) as tmp:
        _render_frames(tmp, spec)
        atomic_write_json(tmp / CLIP_MANIFEST, _manifest(spec))
    return out

