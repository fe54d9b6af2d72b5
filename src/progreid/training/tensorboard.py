"""The TensorBoard mirror of ``metrics.jsonl`` (``train.tensorboard: true``).

:class:`TensorBoardLog` is the run's :class:`MetricsLog` with one more step on every write:
the record it has just appended to ``metrics.jsonl`` goes to ``RUN/tensorboard/`` as scalars
(:func:`scalars`), so the log file stays the source of truth and the mirror sees every event,
the PLA and TRC ones and the final evaluation included, not only the epochs' hooks. A resumed
run purges the mirrored steps after its checkpoint, as the log drops those records.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from progreid.utils.metrics_log import MetricsLog

TENSORBOARD_DIR = "tensorboard"


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of one record by TensorBoard tag ``event/field`` (``event/field/key`` inside a
    mapping, such as PLA's ``w``); the final evaluation is ``eval_final/...``. Strings, flags,
    lists (CMC, histograms, loss lists) and None are not scalars and are left out."""
    prefix = record["event"] + ("_final" if record.get("final") else "")
    fields = {k: v for k, v in record.items() if k not in ("event", "epoch", "time")}
    return dict(_numbers(prefix, fields))


def _numbers(prefix: str, value: Any) -> list[tuple[str, float]]:
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _numbers(f"{prefix}/{key}", item)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [(prefix, float(value))]
    return []


class TensorBoardLog(MetricsLog):
    """``metrics.jsonl`` mirrored record by record to ``RUN/tensorboard/`` (step: the record's
    epoch); needs the ``tensorboard`` package (``progreid[tensorboard]``), checked before
    training starts. Every record is flushed at once, so a killed run loses nothing it logged."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        super().__init__(path, enabled)
        self.purge_step = 0  # a new writer hides mirrored steps from here on (earlier attempts)
        self._writer: Any = None

    def write(self, event: str, epoch: int, **fields: Any) -> None:
        super().write(event, epoch, **fields)
        if self.enabled:
            self.mirror({"event": event, "epoch": epoch, **fields})

    def truncate_after(self, epoch: int) -> None:
        super().truncate_after(epoch)
        self.purge_step = epoch + 1

    def mirror(self, record: dict[str, Any]) -> None:
        """Write the record's :func:`scalars` at step ``record["epoch"]`` and flush; the
        ``SummaryWriter`` of ``RUN/tensorboard/`` opens on the first record."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path.parent / TENSORBOARD_DIR),
                                         purge_step=self.purge_step)
        wall_time = record.get("time", time.time())
        for tag, value in scalars(record).items():
            self._writer.add_scalar(tag, value, record["epoch"], walltime=wall_time)
        self._writer.flush()
