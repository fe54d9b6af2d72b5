"""Progress bars of the long phases (image check, feature extraction, preparation, report)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def progress(iterable: Iterable[Any] | None = None, desc: str = "", total: int | None = None,
             unit: str = "image", enabled: bool = True) -> tqdm:
    """A tqdm bar on stderr that vanishes when done, drawn only on a terminal (CI logs and
    redirected output stay clean) and when ``enabled``."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False,
                disable=None if enabled else True)
