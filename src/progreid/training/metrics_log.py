"""The run's JSON-lines metrics log (``metrics.jsonl``): one record per epoch, round or eval."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from progreid.utils.io import append_jsonl, atomic_write_text, read_jsonl


class MetricsLog:
    """Appends records ``{"event": ..., "epoch": ..., ...}``; silent on non-main ranks."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, event: str, **fields: Any) -> None:
        if self.enabled:
            append_jsonl(self.path, {"event": event, "time": round(time.time(), 3), **fields})

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [r for r in read_jsonl(self.path) if event is None or r.get("event") == event]

    def truncate_after(self, epoch: int) -> None:
        """On resume, drop records of epochs after the checkpoint (they will be re-run)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in read_jsonl(self.path) if r.get("epoch", 0) <= epoch]
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
