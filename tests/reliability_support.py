"""Helpers of the reliability tests: a tiny Market-layout dataset, a config, the CLI, file trees."""

from __future__ import annotations

import builtins
import errno
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from progreid.cli import main

HEIGHT, WIDTH = 32, 16


def noise_image(rng: np.random.Generator, height: int = 40, width: int = 20) -> Image.Image:
    """A random RGB image: no two are equal, so no accidental duplicates."""
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def make_market(root: Path, train_ids: int = 4, per_id: int = 4, test_ids: int = 3,
                seed: int = 0) -> Path:
    """A Market-1501 layout: ``train_ids`` x ``per_id`` training JPEGs on cameras 1/2; each test
    identity has one query on camera 1 and two gallery images on camera 2."""
    rng = np.random.default_rng(seed)
    folders = {name: root / name for name in ("bounding_box_train", "bounding_box_test",
                                                 "query")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for pid in range(1, train_ids + 1):
        for i in range(per_id):
            name = f"{pid:04d}_c{1 + i % 2}s1_{i:06d}_00.jpg"
            noise_image(rng).save(folders["bounding_box_train"] / name, quality=90)
    for pid in range(100, 100 + test_ids):
        noise_image(rng).save(folders["query"] / f"{pid:04d}_c1s1_000000_00.jpg", quality=90)
        for i in range(2):
            name = f"{pid:04d}_c2s1_{i:06d}_00.jpg"
            noise_image(rng).save(folders["bounding_box_test"] / name, quality=90)
    return root


def config_file(tmp_path: Path, root: Path, out: Path, **sections: dict) -> Path:
    """A YAML recipe for a tiny CPU run on ``root`` writing to ``out``; ``sections`` override."""
    cfg = {
        "data": {"dataset": "market1501", "root": str(root), "height": HEIGHT, "width": WIDTH,
                 "p": 2, "k": 2, "workers": 0},
        "model": {"name": "baseline", "backbone": "resnet18", "width": 0.125},
        "optim": {"lr": 0.001},
        "schedule": {"name": "constant"},
        "train": {"epochs": 2, "device": "cpu", "progress": False, "output_dir": str(out)},
        "eval": {"batch_size": 16, "flip": False},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """Run ``progreid ARGS`` in-process; return its exit code and stderr."""
    capsys.readouterr()
    code = main(list(map(str, args)))
    return code, capsys.readouterr().err


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (empty when the folder does not exist)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _write_png(path: Path, width: int, height: int, bit_depth: int, colour_type: int,
               raw: bytes) -> None:
    """A PNG file from its header fields and raw (filter byte + row) scanlines."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares ``width x height`` RGB pixels but holds almost no data: a
    decompression bomb's header, written without allocating the image."""
    _write_png(path, width, height, 8, 2, b"\0" * 16)


def png_16bit_grey(path: Path, values: np.ndarray) -> None:
    """A 16-bit greyscale PNG (colour type 0) of ``values`` (uint16, H x W)."""
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in values)
    _write_png(path, values.shape[1], values.shape[0], 16, 0, raw)


CREATE = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def fail_writes_under(monkeypatch: pytest.MonkeyPatch, folder: Path,
                      code: int = errno.EROFS) -> None:
    """Every new folder or file opened for writing under ``folder`` fails with ``code``."""
    real_mkdir, real_os_open, real_open = os.mkdir, os.open, builtins.open

    def guard(path) -> None:
        if isinstance(path, (str, bytes, os.PathLike)) and \
                os.path.abspath(os.fsdecode(path)).startswith(f"{folder}{os.sep}"):
            raise OSError(code, os.strerror(code), os.fsdecode(path))

    def mkdir(path, *args, **kwargs):
        guard(path)
        return real_mkdir(path, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & CREATE:
            guard(path)
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if set(mode) & set("wax+"):
            guard(file)
        return real_open(file, mode, *args, **kwargs)

    for module, name, fake in ((os, "mkdir", mkdir), (os, "open", os_open),
                               (builtins, "open", open_), (io, "open", open_)):
        monkeypatch.setattr(module, name, fake)
