"""Plain-text metric tables for the terminal."""

from __future__ import annotations

from collections.abc import Mapping

COLUMNS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def metrics_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """One row per named result, rank-1/5/10, mAP and mINP in percent."""
    label_width = max(len(name) for name in rows)
    header = " " * label_width + "".join(f"{c:>9}" for c in COLUMNS)
    lines = [header]
    for name, metrics in rows.items():
        lines.append(name.ljust(label_width)
                     + "".join(f"{metrics.get(c, float('nan')):9.1f}" for c in COLUMNS))
    return "\n".join(lines)
