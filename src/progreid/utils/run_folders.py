"""Run folders inside a folder: ``progreid demo`` writes each run into ``OUT/<timestamp>/``, so a
user who passes ``OUT`` itself is pointed at the newest run in it."""

from __future__ import annotations

from pathlib import Path


def run_folders(folder: Path, file_name: str = "model.pt") -> list[Path]:
    """The sub-folders of ``folder`` that hold ``file_name``, oldest first (by the time it was
    written, then by name); empty when there are none or ``folder`` is no folder."""
    if not folder.is_dir():
        return []
    runs = [child for child in folder.iterdir() if (child / file_name).is_file()]
    return sorted(runs, key=lambda run: ((run / file_name).stat().st_mtime, run.name))


def run_hint(missing: Path) -> str:
    """For a missing ``FOLDER/model.pt`` where ``FOLDER`` holds run folders: ``; did you mean``
    the newest of them; else an empty string."""
    runs = run_folders(missing.parent, missing.name)
    if not runs:
        return ""
    which = f"the newest of its {len(runs)} run folders" if len(runs) > 1 else "its run folder"
    return f"; did you mean {runs[-1]} ({which})?"
