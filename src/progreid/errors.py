"""The errors progreid reports to its user, in one hierarchy.

Each message names what is wrong (the file, key or folder) and the fix; ``progreid`` prints it
and exits with status 2 (:data:`progreid.cli.USER_ERRORS`). They keep the built-in base their
callers already catch (``ValueError``, ``RuntimeError``, ``ImportError``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

#: The file-system errors of a write, each with its fix.
WRITE_FIXES = {
    errno.EROFS: "choose a folder on a writable file system",
    errno.ENOSPC: "free some space there or choose another folder",
    errno.EDQUOT: "free some of your quota or choose another folder",
    errno.EACCES: "allow writing there or choose another folder",
    errno.EPERM: "allow writing there or choose another folder",
}


class ProgreidError(Exception):
    """Base of every error the command line reports as a user error."""


class ConfigError(ProgreidError, ValueError):
    """A configuration key or value is wrong; the message names it and says what is expected.

    ``keys``: the configuration keys the error is about (``optim.lr``), so that a caller can
    name the ``--set`` item that set one of them rather than the recipe file."""

    def __init__(self, message: str, keys: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.keys = tuple(keys)


class DatasetError(ProgreidError, ValueError):
    """A dataset on disk is not what its reader expects; the message names the file or folder."""


class CheckpointError(ProgreidError, RuntimeError):
    """A checkpoint is missing, truncated, unsafe or of the wrong kind; the message names it."""


class NonFiniteLossError(ProgreidError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


class OutputError(ProgreidError, OSError):
    """A file or folder could not be written: read-only, full, not permitted or over quota."""

    __str__ = ProgreidError.__str__  # the message, not OSError's "[Errno N] strerror: file"

    @classmethod
    def of(cls, exc: BaseException, path: str | os.PathLike | None = None) -> OutputError | None:
        """The error naming ``path`` (default: the failed call's file) for the write error
        behind ``exc``: itself or one it was raised from or while handling (``torch.save``
        reports a full disk as a ``RuntimeError``); ``None`` when there is none or the file is
        unknown."""
        cause: BaseException | None = exc
        while cause is not None and not (isinstance(cause, OSError) and
                                         cause.errno in WRITE_FIXES):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, OutputError) or cause is None:
            return cause
        if not (path or cause.filename):
            return None
        where = os.fspath(path or cause.filename)
        error = cls(f"cannot write {where}: {cause.strerror}; {WRITE_FIXES[cause.errno]}")
        error.errno, error.filename = cause.errno, where
        return error


class ExportError(ProgreidError, RuntimeError):
    """An export failed, a needed package is missing, or the exported model disagrees with
    PyTorch beyond the tolerance; the message says which."""


class PretrainedWeightsError(ProgreidError, ValueError):
    """Pretrained weights cannot be found, read or loaded; the message names the file and fix."""


class MissingDependencyError(ProgreidError, ImportError):
    """An optional extra is not installed: matplotlib (``progreid[plot]``)."""


class MissingFaissError(MissingDependencyError):
    """faiss (the ``progreid[search]`` extra) is not installed."""
