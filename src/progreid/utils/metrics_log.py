"""A run's JSON-lines metrics log (``metrics.jsonl``) and the schema of its records.

Every record is ``{"event", "epoch", "time", ...}``; the fields each event must carry are its
TypedDict below. The training writers (run, hooks, PLA and TRC plans) go through
:meth:`MetricsLog.write`, which refuses a record without them, and the readers (plots, HTML
report) through :func:`read_records` and :func:`events`, which refuse an unknown event name.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TypedDict

from progreid.utils.io import append_jsonl, atomic_write_text, read_jsonl

METRICS_NAME = "metrics.jsonl"


class Start(TypedDict):
    method: str
    train_images: int
    train_ids: int


class Resume(TypedDict):
    pass


class DataCheck(TypedDict):
    images: int
    converted_modes: dict[str, int]
    single_image_train_ids: list[int]
    repeated_files: list[list[str]]
    skipped: list[dict[str, str]]


class Epoch(TypedDict):
    """Plus each loss term's epoch mean (``ce``, ``metric``, ``acc``, ...) and the stage's fields
    (``round`` of PLA, ``phase`` of TRC)."""

    lr: float
    seconds: float
    images_per_second: float
    loss: float


class Eval(TypedDict):
    """Plus ``rank5`` ... ``mINP``, ``cmc``, the stage's fields, ``final`` on the last record."""

    rank1: float
    mAP: float


class TRCHistogram(TypedDict):
    """TRC Fig. 3: the epoch's S values (TRC Eq. 4) in ``counts`` over ``edges``."""

    phase: str
    edges: list[float]
    counts: list[int]
    pairs: int
    violations: int


class PLAStart(TypedDict):
    space: dict[str, Any]
    candidates: list[dict[str, float]]


class PLAExplore(TypedDict):
    """An exploration of Algorithm 1: w, its epoch losses, f(w) of PLA Eq. 9 (None: diverged)."""

    round: int
    candidate: int
    w: dict[str, float]
    losses: list[float] | None
    f: float | None


class PLAProposal(TypedDict):
    """w' chosen by expected improvement (PLA Eq. 6-8) against the round's best candidate."""

    round: int
    w: dict[str, float]
    log_ei: float | None
    incumbent: int
    incumbent_f: float


class PLARound(TypedDict):
    round: int
    origin: int
    candidates: list[dict[str, Any]]
    proposal: dict[str, Any]
    exploit_losses: list[float]
    best_loss: float | None
    best_epoch: int | None


#: The schema: each event's required fields.
EVENTS: dict[str, type] = {
    "start": Start, "resume": Resume, "data_check": DataCheck, "epoch": Epoch, "eval": Eval,
    "trc_histogram": TRCHistogram, "pla_start": PLAStart, "pla_explore": PLAExplore,
    "pla_proposal": PLAProposal, "pla_round": PLARound,
}


class MetricsLog:
    """Appends records ``{"event": ..., "epoch": ..., ...}``; silent on non-main ranks."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, event: str, epoch: int, **fields: Any) -> None:
        """Append one record; ValueError (a bug in the writer) if it breaks :data:`EVENTS`."""
        missing = _schema(event).__required_keys__ - fields.keys()
        if missing:
            raise ValueError(f"metrics.jsonl: a {event!r} record needs {sorted(missing)}")
        if self.enabled:
            append_jsonl(self.path, {"event": event, "epoch": epoch,
                                     "time": round(time.time(), 3), **fields})

    def truncate_after(self, epoch: int) -> None:
        """On resume, drop records of epochs after the checkpoint (they will be re-run)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in read_jsonl(self.path) if r.get("epoch", 0) <= epoch]
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


def read_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``RUN_DIR/metrics.jsonl``; FileNotFoundError naming it when absent."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no metrics log at {path}: is {run_dir} a progreid run folder?")
    return read_jsonl(path)


def events(records: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    """The records of one event, in epoch order (stable for equal epochs)."""
    _schema(event)
    return sorted((r for r in records if r.get("event") == event), key=lambda r: r.get("epoch", 0))


def _schema(event: str) -> type:
    if event not in EVENTS:
        raise ValueError(f"metrics.jsonl has no event {event!r}; events: {', '.join(EVENTS)}")
    return EVENTS[event]
