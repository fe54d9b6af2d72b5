"""Synthetic pedestrians: a procedurally drawn ReID dataset written in the Market-1501 layout.

Each identity is a figure (head, torso, arms, legs) with clothing colours from a small shared
palette, a clothing pattern, body proportions and an optional bag or hat. Each camera has its own
colour cast, illumination gradient, gamma, saturation, blur, noise, person scale, perspective,
background scene and preferred viewpoints; every image adds a pose, offset, scale, background
clutter and, sometimes, an occluder or a passer-by. Colours are shared by many identities and the
cameras shift them strongly, so a colour histogram or an untrained network ranks poorly while a
trained network can learn the identities.

The output is deterministic for a spec (same bytes), written into a temporary folder renamed into
place, and carries a manifest (``synthetic.json``) so that a folder is reused when its spec
matches; a folder holding anything else is never replaced.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from progreid.errors import ConfigError, DatasetError
from progreid.utils.io import atomic_folder, atomic_write_json

GENERATOR_VERSION = 1
MANIFEST_NAME = "synthetic.json"
MANIFEST_FORMAT = "progreid-synthetic"
JPEG_QUALITY = 90
FOLDERS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query",
           "multi_query": "gt_bbox"}

Colour = tuple[int, int, int]

PALETTE: dict[str, Colour] = {
    "black": (28, 28, 30), "white": (230, 230, 225), "gray": (125, 125, 128),
    "charcoal": (65, 65, 70), "navy": (32, 40, 88), "blue": (45, 90, 170),
    "sky": (120, 165, 215), "red": (175, 35, 40), "maroon": (105, 30, 42),
    "green": (45, 115, 55), "olive": (105, 105, 45), "beige": (195, 175, 135),
    "brown": (105, 70, 42), "yellow": (215, 185, 45), "pink": (215, 130, 160),
    "purple": (95, 55, 125), "orange": (215, 115, 35),
}
_NAMES = list(PALETTE)
# Clothes favour dark and neutral colours, as in real street scenes; this makes many identities
# share colours so that they differ by combination, pattern and accessory.
_TOP_WEIGHTS = {"black": 4, "white": 3, "gray": 3, "charcoal": 2, "navy": 2, "blue": 2,
                "red": 2, "beige": 1.5}
_BOTTOM_WEIGHTS = {"black": 5, "navy": 3, "blue": 3, "charcoal": 2, "gray": 2, "beige": 1.5,
                   "brown": 1, "white": 0.7}
SKIN: list[Colour] = [(235, 200, 170), (210, 165, 125), (165, 115, 80), (110, 75, 50)]
HAIR: list[Colour] = [(20, 18, 18), (60, 40, 25), (120, 85, 50), (190, 160, 100), (150, 150, 150)]
TOP_PATTERNS = ("plain", "hstripes", "vstripes", "checks", "logo", "jacket", "twotone")
BOTTOM_KINDS = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder", "handbag")
HATS = ("none", "cap", "beanie")
VIEWS = ("front", "back", "left", "right")


class SyntheticSpecError(ConfigError):
    """A spec out of range, or unlike the dataset already in the output folder. The message
    names spec fields as ``{field}`` so that each caller spells them: Python callers see
    ``SyntheticSpec.field``, ``progreid synth`` its options (:meth:`spelled`)."""

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.spelled(lambda name: f"SyntheticSpec.{name}"))

    def spelled(self, spell: Callable[[str], str]) -> str:
        """The message with every ``{field}`` replaced by ``spell(field)``."""
        names = {f.name for f in fields(SyntheticSpec)}
        return re.sub(r"\{(\w+)\}", lambda m: spell(m[1]) if m[1] in names else m[0],
                      self.template)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. ``query_cameras`` cameras of each test identity give one query image
    each; ``multi_query_images`` images per query (identity, camera) go to ``gt_bbox`` (the query
    itself included); ``distractors`` identity-0 images join the gallery."""

    identities: int = 300
    train_identities: int = 200
    cameras: int = 6
    images_per_camera: int = 2
    query_cameras: int = 3
    multi_query_images: int = 3
    distractors: int = 100
    height: int = 128
    width: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise SyntheticSpecError(f"{{{f.name}}} must be an integer, got a "
                                         f"{type(value).__name__}")
        checks = [
            ("identities", 2 <= self.identities <= 9999, "between 2 and 9999"),
            ("train_identities", 1 <= self.train_identities < self.identities,
             f"between 1 and {{identities}} - 1 = {self.identities - 1}"),
            ("cameras", 2 <= self.cameras <= 9, "between 2 and 9 (one digit in file names)"),
            ("images_per_camera", self.images_per_camera >= 1, "at least 1"),
            ("query_cameras", 1 <= self.query_cameras < self.cameras,
             f"between 1 and {{cameras}} - 1 = {self.cameras - 1}"),
            ("multi_query_images", self.multi_query_images >= 1, "at least 1"),
            ("distractors", self.distractors >= 0, "at least 0"),
            ("height", 32 <= self.height <= 1024, "between 32 and 1024"),
            ("width", 16 <= self.width <= 512, "between 16 and 512"),
            ("seed", self.seed >= 0, "at least 0"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise SyntheticSpecError(f"{{{name}}} must be {expected}, "
                                         f"got {getattr(self, name)}")
        if self.identities * self.images_per_camera * (1 + self.multi_query_images) > 999_999:
            raise SyntheticSpecError("{identities} x {images_per_camera} x (1 + "
                                     "{multi_query_images}) must be at most 999999, the "
                                     "6-digit frame number of Market-1501 file names")

    @property
    def test_identities(self) -> int:
        return self.identities - self.train_identities

    def counts(self) -> dict[str, int]:
        """Number of images in each folder (keys as in :data:`FOLDERS`)."""
        per_identity = self.cameras * self.images_per_camera
        queries = self.test_identities * self.query_cameras
        return {"train": self.train_identities * per_identity, "query": queries,
                "gallery": self.test_identities * per_identity - queries + self.distractors,
                "multi_query": queries * self.multi_query_images}


@dataclass(frozen=True)
class Person:
    """The appearance of one identity; colours are RGB, lengths are fractions of body height."""

    skin: Colour
    hair: Colour
    long_hair: bool
    height: float
    shoulders: float
    hips: float
    head: float
    top: Colour
    top2: Colour
    pattern: str
    period: float
    short_sleeves: bool
    bottom: Colour
    bottom_kind: str
    shoes: Colour
    bag: str
    bag_colour: Colour
    hat: str
    hat_colour: Colour


@dataclass(frozen=True)
class Camera:
    """One camera's imaging: colour cast and illumination map, tone curve, optics, scene and
    viewpoint (person scale, perspective, preferred views)."""

    shade: np.ndarray  # H x W x 3 multiplicative gain: colour cast times illumination gradient
    gamma: float
    saturation: float
    blur: float
    noise: float
    scale: float
    views: np.ndarray  # probabilities of VIEWS
    floor: Colour
    horizon: float
    perspective: tuple[float, ...]


def rng_stream(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per (seed, key): images do not depend on generation order."""
    return np.random.default_rng([seed, *key])


_STREAM_IDENTITY, _STREAM_CAMERA, _STREAM_SPLIT, _STREAM_IMAGE, _STREAM_DISTRACTOR = range(5)


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """A palette colour name drawn with ``weights`` (names absent from it weigh 0.5)."""
    w = np.array([weights.get(n, 0.5) for n in _NAMES])
    return _NAMES[int(rng.choice(len(_NAMES), p=w / w.sum()))]


def _jitter(rng: np.random.Generator, colour: Colour, amount: float = 12.0) -> Colour:
    c = np.clip(np.asarray(colour) + rng.normal(0.0, amount, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _random_person(rng: np.random.Generator) -> tuple[Person, tuple[object, ...]]:
    """A random identity and its coarse signature (the attributes a viewer would name)."""
    top_name = _choice(rng, _TOP_WEIGHTS)
    pattern = TOP_PATTERNS[int(rng.choice(len(TOP_PATTERNS),
                                          p=[0.3, 0.12, 0.1, 0.1, 0.13, 0.12, 0.13]))]
    top2_name = _choice(rng, {n: 1.0 for n in _NAMES if n != top_name} | {top_name: 0.0})
    bottom_name = _choice(rng, _BOTTOM_WEIGHTS)
    bottom_kind = BOTTOM_KINDS[int(rng.choice(3, p=[0.7, 0.15, 0.15]))]
    bag = BAGS[int(rng.choice(4, p=[0.4, 0.25, 0.2, 0.15]))]
    bag_name = _choice(rng, {"black": 3, "brown": 2, "charcoal": 1})
    hat = HATS[int(rng.choice(3, p=[0.7, 0.15, 0.15]))]
    hat_name = _choice(rng, {})
    person = Person(
        skin=_jitter(rng, SKIN[int(rng.integers(len(SKIN)))], 8),
        hair=_jitter(rng, HAIR[int(rng.integers(len(HAIR)))], 8),
        long_hair=bool(rng.random() < 0.3),
        height=float(rng.uniform(0.88, 1.0)), shoulders=float(rng.uniform(0.85, 1.15)),
        hips=float(rng.uniform(0.85, 1.15)), head=float(rng.uniform(0.9, 1.1)),
        top=_jitter(rng, PALETTE[top_name]), top2=_jitter(rng, PALETTE[top2_name]),
        pattern=pattern, period=float(rng.uniform(0.05, 0.08)),
        short_sleeves=bool(rng.random() < 0.35),
        bottom=_jitter(rng, PALETTE[bottom_name]), bottom_kind=bottom_kind,
        shoes=_jitter(rng, PALETTE[_choice(rng, {"black": 4, "white": 2, "brown": 1})]),
        bag=bag, bag_colour=_jitter(rng, PALETTE[bag_name]),
        hat=hat, hat_colour=_jitter(rng, PALETTE[hat_name]),
    )
    signature = (top_name, pattern, top2_name if pattern != "plain" else "", bottom_name,
                 bottom_kind, bag, bag_name if bag != "none" else "", hat)
    return person, signature


def make_identities(count: int, seed: int) -> list[Person]:
    """``count`` identities whose signatures differ pairwise in at least two attributes, so that
    every identity is learnable; many still share colours."""
    rng = rng_stream(seed, _STREAM_IDENTITY)
    people: list[Person] = []
    signatures: list[tuple[object, ...]] = []
    while len(people) < count:
        person, sig = _random_person(rng)
        if all(sum(a != b for a, b in zip(sig, other, strict=True)) >= 2 for other in signatures):
            people.append(person)
            signatures.append(sig)
    return people


def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients mapping output corners ``dst`` to input points ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    return tuple(float(c) for c in np.linalg.solve(np.array(rows), np.array(rhs)))


def make_camera(index: int, seed: int, height: int, width: int) -> Camera:
    """Camera ``index`` (0-based): its colour cast, illumination, optics, scene and viewpoint."""
    rng = rng_stream(seed, _STREAM_CAMERA, index)
    log_gains = rng.uniform(-0.12, 0.12, 3)
    gains = np.exp(log_gains - log_gains.mean())  # a cast that keeps the overall brightness
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    light = 1.0 + gx * (xx / width - 0.5) + gy * (yy / height - 0.5)
    shade = (light[..., None] * gains[None, None, :] * np.exp(rng.uniform(-0.15, 0.12)))
    keystone, shear = rng.uniform(-0.12, 0.12), rng.uniform(-0.12, 0.12)
    w, h = float(width), float(height)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]])
    src = np.array([[-keystone * w + shear * w, 0], [w + keystone * w + shear * w, 0],
                    [w - keystone * w, h], [keystone * w, h]])
    return Camera(
        shade=shade.astype(np.float32), gamma=float(rng.uniform(0.85, 1.2)),
        saturation=float(rng.uniform(0.7, 1.15)), blur=float(rng.uniform(0.0, 0.8)),
        noise=float(rng.uniform(2.0, 5.0)), scale=float(rng.uniform(0.82, 0.95)),
        views=rng.dirichlet(np.full(4, 0.8)), floor=_muted(rng, 0.4),
        horizon=float(rng.uniform(0.5, 0.8)), perspective=_perspective_coeffs(src, dst),
    )


def _limb(draw: ImageDraw.ImageDraw, p0: tuple[float, float], p1: tuple[float, float],
          half_width: float, colour: Colour) -> None:
    """A quad of constant width from ``p0`` to ``p1``."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    norm = math.hypot(dx, dy) or 1.0
    ox, oy = -dy / norm * half_width, dx / norm * half_width
    draw.polygon([(p0[0] + ox, p0[1] + oy), (p1[0] + ox, p1[1] + oy),
                  (p1[0] - ox, p1[1] - oy), (p0[0] - ox, p0[1] - oy)], fill=colour)


def _torso_texture(person: Person, view: str, w: int, h: int, period: float) -> Image.Image:
    """The top's pattern over the torso's bounding box (logo and open jacket face front)."""
    yy, xx = np.mgrid[0:h, 0:w]
    p = max(2.0, period)
    kind = person.pattern
    if kind == "hstripes":
        mask = (yy // p) % 2 == 1
    elif kind == "vstripes":
        mask = (xx // p) % 2 == 1
    elif kind == "checks":
        mask = ((yy // p) + (xx // p)) % 2 == 1
    elif kind == "twotone":
        mask = yy >= 0.5 * h
    elif kind == "logo" and view == "front":
        mask = (np.abs(xx - w / 2) <= 0.22 * w) & (yy >= 0.2 * h) & (yy <= 0.45 * h)
    elif kind == "jacket" and view == "front":
        mask = np.abs(xx - w / 2) <= 0.17 * w
    else:
        mask = np.zeros((h, w), dtype=bool)
    rgb = np.where(mask[..., None], np.array(person.top2, np.uint8), np.array(person.top, np.uint8))
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def render_person(canvas: Image.Image, person: Person, view: str, cx: float, top: float,
                  ph: float, phase: float) -> None:
    """Draw ``person`` seen from ``view`` onto ``canvas``: body height ``ph`` pixels, head top at
    ``top``, centred on ``cx``, walking at ``phase`` (radians)."""
    draw = ImageDraw.Draw(canvas)
    side = view in ("left", "right")
    facing = -1.0 if view == "left" else 1.0
    y_shoulder, y_waist, y_crotch = top + 0.17 * ph, top + 0.48 * ph, top + 0.55 * ph
    y_knee, y_ankle, y_hand = top + 0.76 * ph, top + 0.96 * ph, top + 0.50 * ph
    sw = (0.075 if side else 0.135 * person.shoulders) * ph
    hw = (0.075 if side else 0.11 * person.hips) * ph
    leg, arm = 0.046 * ph, 0.035 * ph
    swing = math.sin(phase)
    stride = (0.11 if side else 0.025) * ph * swing
    rx, ry = 0.05 * ph * person.head, 0.065 * ph * person.head
    hy = top + ry
    back_x = cx - facing * (sw + 0.05 * ph)

    if person.long_hair and view != "back":
        draw.rectangle([cx - rx * 1.1, hy, cx + rx * 1.1, y_shoulder + 0.1 * ph], fill=person.hair)
    if person.bag == "backpack" and side:
        draw.rectangle([min(back_x, cx), y_shoulder + 0.01 * ph,
                        max(back_x, cx), y_shoulder + 0.27 * ph], fill=person.bag_colour)

    # Legs (and the hips of trousers), feet, then skirt or shorts.
    feet = [(cx - (0.0 if side else 0.45 * hw) - stride, y_ankle),
            (cx + (0.0 if side else 0.45 * hw) + stride, y_ankle)]
    hips = [(cx - 0.45 * hw, y_crotch), (cx + 0.45 * hw, y_crotch)]
    long_legs = person.bottom_kind == "trousers"
    for hip, foot in zip(hips, feet, strict=True):
        knee = (hip[0] + (foot[0] - hip[0]) * 0.5, y_knee)
        _limb(draw, hip, knee, leg, person.bottom if person.bottom_kind != "skirt" else person.skin)
        _limb(draw, knee, foot, leg * 0.85, person.bottom if long_legs else person.skin)
        draw.ellipse([foot[0] - leg * 1.3 + facing * leg * 0.4 * side, foot[1] - 0.02 * ph,
                      foot[0] + leg * 1.3 + facing * leg * 0.4 * side, foot[1] + 0.035 * ph],
                     fill=person.shoes)
    skirt = person.bottom_kind == "skirt"  # flares to the knees; else covers the hips
    hem_x, hem_y = (hw * 1.45, y_knee) if skirt else (hw, y_crotch + 0.03 * ph)
    draw.polygon([(cx - hw, y_waist), (cx + hw, y_waist), (cx + hem_x, hem_y),
                  (cx - hem_x, hem_y)], fill=person.bottom)

    # Torso with its pattern, pasted through the torso polygon.
    x0, x1 = int(cx - sw - 1), int(math.ceil(cx + sw + 1))
    y0, y1 = int(y_shoulder - 1), int(math.ceil(y_waist + 0.03 * ph))
    if x1 > x0 and y1 > y0:
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask).polygon(
            [(cx - sw - x0, y_shoulder - y0), (cx + sw - x0, y_shoulder - y0),
             (cx + hw - x0, y1 - y0), (cx - hw - x0, y1 - y0)], fill=255)
        canvas.paste(_torso_texture(person, view, x1 - x0, y1 - y0, person.period * ph),
                     (x0, y0), mask)

    # Bags over the torso, arms, hands.
    if person.bag == "backpack" and view == "back":
        draw.rectangle([cx - 0.8 * sw, y_shoulder + 0.02 * ph, cx + 0.8 * sw,
                        y_shoulder + 0.27 * ph], fill=person.bag_colour)
    elif person.bag == "backpack" and view == "front":
        for s in (-1, 1):
            _limb(draw, (cx + s * 0.6 * sw, y_shoulder), (cx + s * 0.55 * sw, y_waist - 0.05 * ph),
                  0.012 * ph, person.bag_colour)
    arms = [(-1.0, swing), (1.0, -swing)] if not side else [(facing, swing)]
    for s, sgn in arms:
        shoulder = (cx + s * (sw - arm * 0.5) if not side else cx, y_shoulder + 0.01 * ph)
        hand = (shoulder[0] + s * 0.02 * ph + sgn * (0.12 if side else 0.03) * ph, y_hand)
        elbow = ((shoulder[0] + hand[0]) / 2, (shoulder[1] + hand[1]) / 2)
        _limb(draw, shoulder, elbow, arm, person.top)
        _limb(draw, elbow, hand, arm * 0.9, person.skin if person.short_sleeves else person.top)
        draw.ellipse([hand[0] - arm, hand[1] - arm, hand[0] + arm, hand[1] + arm],
                     fill=person.skin)
        if person.bag == "handbag" and s == (facing if side else 1.0):
            draw.rectangle([hand[0] - 0.05 * ph, hand[1], hand[0] + 0.05 * ph, hand[1] + 0.08 * ph],
                           fill=person.bag_colour)
    if person.bag == "shoulder":
        s = -facing if side else 1.0
        bx = cx + s * (hw + 0.02 * ph)
        if not side:
            _limb(draw, (cx - s * sw * 0.8, y_shoulder), (bx, y_waist - 0.02 * ph), 0.012 * ph,
                  person.bag_colour)
        draw.rectangle([bx - 0.05 * ph, y_waist - 0.04 * ph, bx + 0.05 * ph, y_waist + 0.06 * ph],
                       fill=person.bag_colour)

    # Head: hair behind, face toward the viewer, hat on top.
    draw.ellipse([cx - rx * 1.08, hy - ry * 1.08, cx + rx * 1.08, hy + ry * 0.9], fill=person.hair)
    if view == "front":
        draw.ellipse([cx - rx * 0.85, hy - ry * 0.6, cx + rx * 0.85, hy + ry], fill=person.skin)
    elif side:
        draw.ellipse([cx - rx * 0.7 + facing * rx * 0.35, hy - ry * 0.55,
                      cx + rx * 0.7 + facing * rx * 0.35, hy + ry], fill=person.skin)
    if person.long_hair and view == "back":
        draw.rectangle([cx - rx * 1.1, hy, cx + rx * 1.1, y_shoulder + 0.1 * ph], fill=person.hair)
    if person.hat != "none":
        depth = 0.45 if person.hat == "cap" else 0.6
        draw.chord([cx - rx * 1.12, hy - ry * 1.15, cx + rx * 1.12, hy + ry * (2 * depth - 1.0)],
                   180, 360, fill=person.hat_colour)
        if person.hat == "cap":
            brim = (cx + facing * rx * 1.8, cx) if side else (cx - rx * 1.2, cx + rx * 1.2)
            draw.rectangle([min(brim), hy - ry * 0.2, max(brim), hy - ry * 0.05],
                           fill=person.hat_colour)


def _muted(rng: np.random.Generator, strength: float) -> Colour:
    """A random palette colour pulled toward mid grey (``strength`` 1 keeps it as it is)."""
    base = np.asarray(PALETTE[_NAMES[int(rng.integers(len(_NAMES)))]], dtype=float)
    c = strength * base + (1.0 - strength) * 115.0
    return _jitter(rng, (int(c[0]), int(c[1]), int(c[2])), 10)


def scene_background(rng: np.random.Generator, camera: Camera, height: int,
                width: int) -> tuple[Image.Image, Colour]:
    """A wall over the camera's floor with clutter, in muted palette colours; also returns the
    wall colour."""
    wall = _muted(rng, 0.25)
    canvas = Image.new("RGB", (width, height), wall)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, int(camera.horizon * height), width, height],
                   fill=_jitter(rng, camera.floor, 15))
    for _ in range(int(rng.integers(1, 5))):
        colour = _muted(rng, 0.5)
        x, y = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.1, 0.9) * height
        w, h = rng.uniform(0.1, 0.5) * width, rng.uniform(0.05, 0.3) * height
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape([x, y, x + w, y + h], fill=colour)
    return canvas, wall


def _occlude(rng: np.random.Generator, canvas: Image.Image, height: int, width: int) -> None:
    """Partial occlusion: a passer-by at the side, a pole, or an object along the bottom."""
    kind = rng.choice(4, p=[0.6, 0.15, 0.15, 0.1])
    colour = _jitter(rng, PALETTE[_NAMES[int(rng.integers(len(_NAMES)))]], 15)
    draw = ImageDraw.Draw(canvas)
    if kind == 1:
        other, _ = _random_person(rng)
        ph = height * rng.uniform(0.75, 0.95)
        cx = width * (0.5 + rng.choice([-1, 1]) * rng.uniform(0.5, 0.75))
        render_person(canvas, other, VIEWS[int(rng.integers(4))], cx,
                      rng.uniform(0.0, height - ph), ph, rng.uniform(0, 2 * np.pi))
    elif kind == 2:
        x, w = rng.uniform(0.0, 0.9) * width, rng.uniform(0.07, 0.15) * width
        draw.rectangle([x, 0, x + w, height], fill=colour)
    elif kind == 3:
        draw.rectangle([0, rng.uniform(0.7, 0.85) * height, width, height], fill=colour)


def camera_pipeline(rng: np.random.Generator, image: Image.Image, camera: Camera,
                     fill: Colour) -> bytes:
    """Perspective (``fill`` outside the scene), blur, colour cast, illumination, tone curve,
    noise, then JPEG bytes."""
    width, height = image.size
    image = image.transform((width, height), Image.Transform.PERSPECTIVE, camera.perspective,
                            Image.Resampling.BILINEAR, fillcolor=fill)
    if camera.blur > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(camera.blur))
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = arr ** (camera.gamma * math.exp(rng.normal(0.0, 0.08)))
    arr = arr * camera.shade * np.exp(rng.normal(0.0, 0.12) + rng.normal(0.0, 0.04, 3))
    grey = arr.mean(axis=2, keepdims=True)
    arr = grey + camera.saturation * (arr - grey)
    arr = arr * 255.0 + rng.normal(0.0, camera.noise, arr.shape)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def render_image(rng: np.random.Generator, person: Person | None, camera: Camera, height: int,
                 width: int, zoom: float = 1.0) -> bytes:
    """One JPEG of ``person`` (or of background only, when None) seen by ``camera``; ``zoom`` > 1
    enlarges the figure beyond the box, as in a bad detection."""
    canvas, wall = scene_background(rng, camera, height, width)
    if person is not None:
        fit = min(0.98, camera.scale * person.height * math.exp(rng.normal(0.0, 0.05)))
        ph = fit * height * zoom
        top = (rng.uniform(0.15, 0.85) * (height - ph) if zoom == 1.0
               else rng.uniform(-0.6, 0.1) * ph)  # a zoomed figure overflows the box
        cx = width * (0.5 + rng.normal(0.0, 0.04 * zoom))
        view = VIEWS[int(rng.choice(4, p=camera.views))]
        render_person(canvas, person, view, cx, top, ph, rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.25:
        _occlude(rng, canvas, height, width)
    return camera_pipeline(rng, canvas, camera, wall)


def split_identities(spec: SyntheticSpec) -> set[int]:
    """The training identities of ``spec`` (1-based); the others are its test identities."""
    order = rng_stream(spec.seed, _STREAM_SPLIT).permutation(spec.identities) + 1
    return set(order[: spec.train_identities].tolist())


def _write_images(root: Path, spec: SyntheticSpec) -> dict[str, int]:
    """Render every image of ``spec`` under ``root``; returns the number written per folder."""
    for folder in FOLDERS.values():
        (root / folder).mkdir(parents=True)
    people = make_identities(spec.identities, spec.seed)
    cams = [make_camera(c, spec.seed, spec.height, spec.width) for c in range(spec.cameras)]
    train = split_identities(spec)
    frames = [0] * spec.cameras
    written = dict.fromkeys(FOLDERS, 0)

    def emit(folders: list[str], pid: int, cam: int, data: bytes) -> None:
        frames[cam] += 1
        name = f"{pid:04d}_c{cam + 1}s1_{frames[cam]:06d}_01.jpg"  # Market-1501, camera from 1
        for key in folders:
            (root / FOLDERS[key] / name).write_bytes(data)
            written[key] += 1

    def shot(pid: int, cam: int, index: int) -> bytes:
        rng = rng_stream(spec.seed, _STREAM_IMAGE, pid, cam, index)
        return render_image(rng, people[pid - 1], cams[cam], spec.height, spec.width)

    for pid in range(1, spec.identities + 1):
        query_cams: set[int] = set()
        query_index = 0
        if pid not in train:
            pick = rng_stream(spec.seed, _STREAM_SPLIT, pid)
            query_cams = set(pick.choice(spec.cameras, spec.query_cameras, replace=False).tolist())
            query_index = int(pick.integers(spec.images_per_camera))
        for cam in range(spec.cameras):
            for index in range(spec.images_per_camera):
                if pid in train:
                    emit(["train"], pid, cam, shot(pid, cam, index))
                elif cam in query_cams and index == query_index:
                    emit(["query", "multi_query"], pid, cam, shot(pid, cam, index))
                    for extra in range(1, spec.multi_query_images):
                        emit(["multi_query"], pid, cam,
                             shot(pid, cam, spec.images_per_camera + extra - 1))
                else:
                    emit(["gallery"], pid, cam, shot(pid, cam, index))
    for j in range(spec.distractors):
        rng = rng_stream(spec.seed, _STREAM_DISTRACTOR, j)
        cam = int(rng.integers(spec.cameras))
        kind = rng.choice(3, p=[0.5, 0.3, 0.2])
        person = None if kind == 2 else _random_person(rng)[0]
        zoom = float(rng.uniform(1.6, 2.4)) if kind == 1 else 1.0
        emit(["gallery"], 0, cam, render_image(rng, person, cams[cam], spec.height, spec.width,
                                               zoom))
    return written


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a generated dataset, or None when ``out_dir`` holds none (or a bad one)."""
    path = Path(out_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    valid = isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT
    return manifest if valid else None


def is_current(out_dir: str | os.PathLike, spec: SyntheticSpec) -> bool:
    """True when ``out_dir`` holds a complete dataset generated from ``spec`` by this version."""
    try:
        return _check_output(Path(out_dir), spec)
    except (ConfigError, DatasetError):  # another spec or version, incomplete, or foreign
        return False


def _missing_images(out: Path, spec: SyntheticSpec) -> list[str]:
    """``FOLDER holds N images, not M`` for each folder of ``out`` with a wrong image count."""
    counts = {folder: sum(1 for _ in (out / folder).glob("*.jpg")) for folder in FOLDERS.values()}
    return [f"{folder} holds {counts[folder]} images, not {spec.counts()[key]}"
            for key, folder in FOLDERS.items() if counts[folder] != spec.counts()[key]]


def _check_output(out: Path, spec: SyntheticSpec) -> bool:
    """True when ``out`` holds ``spec``'s dataset (to reuse), False when it is absent or an
    empty folder (to write); a folder holding anything else is refused, naming what differs."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    fix = f"choose another folder or delete {out}"
    manifest = read_manifest(out)
    if manifest is None:
        raise DatasetError(f"{out} exists and is not a progreid synthetic dataset (no valid "
                           f"{MANIFEST_NAME}): {fix}")
    made = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    differences = [f"{{{name}}}={made.get(name)} (asked for {value})"
                   for name, value in asdict(spec).items() if made.get(name) != value]
    if manifest.get("version") != GENERATOR_VERSION:
        differences.append(f"generator version {manifest.get('version')} (this progreid "
                           f"writes {GENERATOR_VERSION})")
    if differences:
        raise SyntheticSpecError(f"{out} holds a synthetic dataset made with "
                                 f"{', '.join(differences)}: {fix}")
    missing = _missing_images(out, spec)
    if missing:
        raise DatasetError(f"{out} is an incomplete synthetic dataset ({'; '.join(missing)}): "
                           f"delete it to generate it again")
    return True


def write_dataset(out_dir: str | os.PathLike, spec: SyntheticSpec) -> Path:
    """Generate ``spec`` into ``out_dir`` unless it already holds it; returns ``out_dir``.

    The dataset is written into a temporary sibling folder renamed into place, so an
    interrupted run leaves nothing. Only an absent or empty ``out_dir`` is written: a folder
    holding anything else (another spec, files of its own) is refused and left as it was.
    """
    out = Path(out_dir)
    if _check_output(out, spec):
        return out
    with atomic_folder(out, written_elsewhere=lambda: is_current(out, spec)) as tmp:
        manifest = {"format": MANIFEST_FORMAT, "version": GENERATOR_VERSION, "spec": asdict(spec),
                    "counts": _write_images(tmp, spec)}
        atomic_write_json(tmp / MANIFEST_NAME, manifest)
    return out


def generate_pedestrians(out_dir: str | os.PathLike, **spec: int) -> Path:
    """Write (or reuse) a synthetic-pedestrian dataset in the Market-1501 layout at ``out_dir``.

    ``spec`` holds keyword arguments of :class:`SyntheticSpec` (``identities=``, ``seed=`` ...);
    with none it makes the default demo set.
    """
    return write_dataset(out_dir, SyntheticSpec(**spec))
