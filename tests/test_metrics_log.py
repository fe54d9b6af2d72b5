"""The metrics.jsonl schema: writers cannot omit an event's fields, readers cannot ask for an
event that does not exist, and a resumed run's log loses the epochs it will re-run."""

from __future__ import annotations

import pytest

from progreid.utils.metrics_log import EVENTS, MetricsLog, events, read_records


def test_a_record_is_written_with_event_epoch_and_time(tmp_path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write("epoch", epoch=2, lr=0.1, seconds=1.0, images_per_second=5.0, loss=3.0, ce=2.0)
    log.write("epoch", epoch=1, lr=0.1, seconds=1.0, images_per_second=5.0, loss=4.0, ce=2.5)
    log.write("eval", epoch=2, rank1=50.0, mAP=40.0)
    records = events(read_records(tmp_path), "epoch")
    assert [(r["epoch"], r["loss"], r["ce"]) for r in records] == [(1, 4.0, 2.5), (2, 3.0, 2.0)]
    assert all(set(r) >= {"event", "epoch", "time"} for r in records)
    assert [r["mAP"] for r in events(read_records(tmp_path), "eval")] == [40.0]


def test_a_record_without_its_required_fields_is_refused(tmp_path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    with pytest.raises(ValueError, match=r"'pla_explore' record needs \['candidate', 'f'\]"):
        log.write("pla_explore", epoch=0, round=0, w={}, losses=[1.0])
    with pytest.raises(ValueError, match="no event 'epochs'"):
        log.write("epochs", epoch=0)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_a_disabled_log_checks_but_writes_nothing(tmp_path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl", enabled=False)
    log.write("resume", epoch=3)
    with pytest.raises(ValueError):
        log.write("start", epoch=0)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_readers_refuse_an_unknown_event_and_a_missing_log(tmp_path) -> None:
    with pytest.raises(ValueError, match="events: start, resume"):
        events([], "pla_rounds")
    with pytest.raises(FileNotFoundError, match="no metrics log"):
        read_records(tmp_path)
    assert set(EVENTS) >= {"epoch", "eval", "trc_histogram", "pla_round"}


def test_truncate_after_keeps_the_epochs_up_to_the_checkpoint(tmp_path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write("start", epoch=0, method="standard", train_images=8, train_ids=2)
    for epoch in (1, 2, 3):
        log.write("epoch", epoch=epoch, lr=0.1, seconds=1.0, images_per_second=5.0, loss=1.0)
    log.truncate_after(2)
    assert [r["epoch"] for r in read_records(tmp_path)] == [0, 1, 2]
