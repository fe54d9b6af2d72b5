"""Atomic writes: output lands under a temp name and is renamed, so a crash leaves no half file.

A write that fails for want of space or permission raises :class:`OutputError` naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from progreid.errors import WRITE_FIXES, ConfigError, OutputError


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a failed write (read-only, full, not permitted, over quota) inside the block into
    an :class:`OutputError` naming ``path``; other errors pass unchanged."""
    try:
        yield
    except Exception as exc:
        error = OutputError.of(exc, path)
        if error is None or error is exc:
            raise
        raise error from exc


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is fsynced and renamed onto ``path``.

    On any error the temp file is removed and ``path`` is left as it was; a failed write is
    an :class:`OutputError` naming ``path``.
    """
    target = Path(path)
    new_folders = missing_folders(target.parent)
    tmp_path = None
    with writing(target):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                       dir=target.parent)
            os.close(fd)
            tmp_path = Path(tmp)
            yield tmp_path
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual mode
            os.replace(tmp_path, target)
        except BaseException:
            if tmp_path:
                tmp_path.unlink(missing_ok=True)
            remove_empty(new_folders)
            raise


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    return [path for path in (folder, *folder.parents) if not path.exists()]


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty: undo what a failed write made."""
    for folder in folders:
        with suppress(OSError):
            folder.rmdir()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None],
                 binary: bool = False) -> None:
    """Call ``write(handle)`` on a temp file and rename it onto ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb" if binary else "w") as fh:
        write(fh)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line (the metrics log); a line is written whole or not at all."""
    line = json.dumps(record, sort_keys=True) + "\n"
    with writing(path), open(path, "a") as fh:
        fh.write(line)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines log, ignoring a trailing partial line left by a crash."""
    records = []
    with open(path) as fh:
        for line in filter(None, map(str.strip, fh)):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


#: The names :func:`atomic_path` and :func:`make_temp_dir` give their temp files and folders.
TEMP_GLOB = ".*.????????.tmp"


def make_temp_dir(target: str | os.PathLike) -> Path:
    """An empty temp folder beside ``target`` (named as :data:`TEMP_GLOB`) with the usual mode
    of a new folder (``mkdtemp`` makes 0700), to be renamed onto ``target`` when complete."""
    target = Path(target)
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


@contextmanager
def atomic_folder(target: str | os.PathLike,
                  written_elsewhere: Callable[[], bool] | None = None) -> Iterator[Path]:
    """Yield an empty temp folder beside ``target`` (:func:`make_temp_dir`); on success it is
    renamed onto ``target`` (absent or empty). On any error the temp folder is removed and
    ``target`` left as it was; a failed rename is not an error when ``written_elsewhere()`` says
    another process has just put the same folder there."""
    tmp = make_temp_dir(target)
    try:
        yield tmp
        try:
            os.replace(tmp, target)
        except OSError:
            if written_elsewhere is None or not written_elsewhere():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone once renamed


def remove_stale_temporaries(*folders: str | os.PathLike) -> list[Path]:
    """Delete the temp files (:data:`TEMP_GLOB`) that a killed write left in ``folders``
    (missing folders are skipped) and return them; only where nothing else writes meanwhile."""
    stale = [path for folder in folders for path in Path(folder).glob(TEMP_GLOB)
             if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def probe_writable(folder: Path, setting: str, fix: str | None = None) -> Path:
    """Create and remove a probe file in ``folder``, or in its nearest existing parent when it
    does not exist yet, before any work whose output goes there; return where the probe was
    written. ``fix`` defaults to the usual one for the error (:data:`WRITE_FIXES`)."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".progreid-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot write in {existing.absolute()} "
                          f"({exc.strerror or exc}); "
                          f"{fix or WRITE_FIXES.get(exc.errno, 'choose another folder')}") from exc
    return existing
