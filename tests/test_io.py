"""Atomic writes: whole files with the usual permissions, nothing left behind on error."""

from __future__ import annotations

import contextlib
import os
import stat

import pytest

from progreid.utils.io import (
    append_jsonl,
    atomic_folder,
    atomic_path,
    atomic_write_json,
    read_jsonl,
)


def test_written_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_error_leaves_target_unchanged_and_no_temp_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_jsonl_ignores_a_trailing_partial_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    append_jsonl(log, {"epoch": 1})
    with open(log, "a") as fh:
        fh.write('{"epoch": 2, "lo')
    assert read_jsonl(log) == [{"epoch": 1}]


def test_atomic_folder_renames_on_success_and_leaves_nothing_otherwise(tmp_path):
    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.txt"]
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "failed") as tmp:
        (tmp / "a.txt").write_text("a")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    for elsewhere in (False, True):  # the target was filled meanwhile: an error unless it is
        ok = contextlib.nullcontext() if elsewhere else pytest.raises(OSError)  # the same
        with ok, atomic_folder(tmp_path / "out", written_elsewhere=lambda e=elsewhere: e) as tmp:
            (tmp / "b.txt").write_text("b")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.txt"]
