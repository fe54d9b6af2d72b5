"""progreid: person re-identification with PLA and TRC, exact and fast evaluation.

The Python API (docs/deployment.md, Python API): ``progreid.load(RUN)`` -> :class:`ReIDModel`
(``embed``, ``embed_crops``) and :class:`Gallery`. They are imported on first use, so
``import progreid`` stays light and this foundation module imports no layer above it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from progreid.deploy.api import ReIDModel, load
    from progreid.search.gallery import Gallery

__version__ = "0.1.0"
__all__ = ["Gallery", "ReIDModel", "load", "__version__"]
#: Where each public name lives.
_EXPORTS = {"load": "progreid.deploy.api", "ReIDModel": "progreid.deploy.api",
            "Gallery": "progreid.search.gallery"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'progreid' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
