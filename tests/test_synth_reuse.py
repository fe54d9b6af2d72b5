"""`synth` and `demo --data` reuse a folder only when it holds the very dataset asked for: any
other folder (another spec, an incomplete set, files of its own) is refused in one line naming
what differs and the fix, and left byte for byte as it was."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from progreid.cli import main
from progreid.data.synthetic import SyntheticSpecError, generate_pedestrians

TINY = dict(identities=3, train_identities=1, cameras=2, images_per_camera=1, query_cameras=1,
            multi_query_images=1, distractors=0, height=32, width=16, seed=0)


def options(**spec: int) -> list[str]:
    return [f"--{key.replace('_', '-')}={value}" for key, value in spec.items()]


def fingerprint(root: Path) -> dict[str, tuple[int, str]]:
    """Mode and content hash of ``root`` and of everything under it."""
    return {str(p.relative_to(root)): (p.stat().st_mode, hashlib.sha256(
        p.read_bytes() if p.is_file() else b"").hexdigest()) for p in [root, *root.rglob("*")]}


@pytest.fixture
def made(tmp_path: Path) -> Path:
    return generate_pedestrians(tmp_path / "set", **TINY)


def refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of a command that must exit with status 2."""
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err


def test_another_spec_is_refused_naming_the_options(made, tmp_path, capsys):
    before = fingerprint(made)
    err = refused(["synth", str(made), *options(**{**TINY, "identities": 4})], capsys)
    assert f"{made} holds a synthetic dataset made with --identities=3 (asked for 4)" in err
    assert f"choose another folder or delete {made}" in err
    err = refused(["demo", "--data", str(made), "--out", str(tmp_path / "runs")], capsys)
    assert err.startswith("progreid demo: error: ") and "--identities=3 (asked for 300)" in err
    assert fingerprint(made) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no run folder, no temp
    with pytest.raises(SyntheticSpecError, match=r"made with SyntheticSpec\.seed=0 \(asked"):
        generate_pedestrians(made, **{**TINY, "seed": 1})


def test_a_folder_that_is_not_a_dataset_is_refused(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    before = fingerprint(mine)
    for args in (["synth", str(mine)], ["demo", "--data", str(mine)]):
        err = refused(args, capsys)
        assert f"{mine} exists and is not a progreid synthetic dataset" in err
    assert fingerprint(mine) == before


def test_an_incomplete_dataset_is_refused(made, capsys):
    next((made / "query").iterdir()).unlink()
    before = fingerprint(made)
    err = refused(["synth", str(made), *options(**TINY)], capsys)
    assert "incomplete synthetic dataset (query holds 1 images, not 2)" in err
    assert fingerprint(made) == before


def test_the_same_spec_is_reused_and_a_new_folder_gets_the_usual_mode(made, tmp_path, capsys):
    before = fingerprint(made)
    assert main(["synth", str(made), *options(**TINY)]) == 0
    assert fingerprint(made) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    old = os.umask(0o027)
    try:
        assert main(["synth", str(empty), *options(**TINY)]) == 0
    finally:
        os.umask(old)
    assert empty.stat().st_mode & 0o777 == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "set"]


def test_spec_errors_name_the_options(tmp_path, capsys):
    err = refused(["synth", str(tmp_path / "bad"), "--train-identities=5", "--identities=5"],
                  capsys)
    assert "--train-identities must be between 1 and --identities - 1 = 4, got 5" in err
    assert "SyntheticSpec" not in err and not (tmp_path / "bad").exists()
