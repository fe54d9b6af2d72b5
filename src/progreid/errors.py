"""The errors progreid reports to its user, in one hierarchy.

Each message names what is wrong (the file, key or folder) and the fix; ``progreid`` prints it
and exits with status 2 (:data:`progreid.cli.USER_ERRORS`). They keep the built-in base their
callers already catch (``ValueError``, ``RuntimeError``, ``ImportError``).
"""

from __future__ import annotations


class ProgreidError(Exception):
    """Base of every error the command line reports as a user error."""


class ConfigError(ProgreidError, ValueError):
    """A configuration key or value is wrong; the message names it and says what is expected."""


class DatasetError(ProgreidError, ValueError):
    """A dataset on disk is not what its reader expects; the message names the file or folder."""


class CheckpointError(ProgreidError, RuntimeError):
    """A checkpoint is missing, truncated, unsafe or of the wrong kind; the message names it."""


class NonFiniteLossError(ProgreidError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


class ExportError(ProgreidError, RuntimeError):
    """An export failed, a needed package is missing, or the exported model disagrees with
    PyTorch beyond the tolerance; the message says which."""


class MissingDependencyError(ProgreidError, ImportError):
    """An optional extra is not installed: matplotlib (``progreid[plot]``)."""


class MissingFaissError(MissingDependencyError):
    """faiss (the ``progreid[search]`` extra) is not installed."""
