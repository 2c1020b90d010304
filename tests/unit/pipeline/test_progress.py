"""Checkpoints of a long at-least-once run, and the progress lines and lease renewals (a fake clock)."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_sheets.model.loop import LoopResult, PageSpan
from airflow_provider_sheets.model.mapping import RowMapper, fingerprint
from airflow_provider_sheets.model.position import PositionOf, Watermark
from airflow_provider_sheets.pipeline import progress
from airflow_provider_sheets.pipeline.progress import CHECKPOINT_SETTLE, Checkpointer, Progress

from .fakes import FakeLease, FakePublisher, FakeStore, Journal, ListReader

LOG = logging.getLogger("test")
KEY = "sheets_to_kafka.s.gid7.t"


class Clock:
    """Stands in for the ``time`` module in :mod:`progress`: ``monotonic()`` is what the test says."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress, "time", fake)
    return fake


@pytest.fixture
def journal():
    return Journal()


@pytest.fixture
def position():
    info = ListReader([["a"]]).describe("s", None)
    return PositionOf("s", info, "t", RowMapper(["a"]), {"dag_id": "d", "run_id": "r"})


def parts(journal, settles=True, stored=None):
    publisher = FakePublisher("t", None, journal, settles=settles)
    data = {} if stored is None else {KEY: Watermark(last_row=stored).to_json()}
    store = FakeStore(KEY, data, journal)
    lease = FakeLease(KEY, "d/r/t", journal)
    return publisher, store, lease


def result(last_row: int | None, value: bytes = b'{"a":"x"}') -> LoopResult:
    return LoopResult(first_row=2 if last_row else None, last_row=last_row, last_value=value if last_row else b"")


def written(store: FakeStore) -> int | None:
    text = store.data.get(KEY)
    return None if text is None else Watermark.from_json(text).last_row


# -- Checkpointer ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("elapsed", "due"), [(0, False), (59.9, False), (60, True), (600, True)])
def test_a_checkpoint_is_due_after_the_interval(clock, journal, position, elapsed, due):
    publisher, store, lease = parts(journal)
    checkpointer = Checkpointer(publisher, store, position, 60, LOG)
    clock.now += elapsed
    checkpointer.maybe(result(5), lease)
    assert (publisher.settle_calls == [CHECKPOINT_SETTLE]) is due
    assert written(store) == (5 if due else None)
    assert checkpointer.done == (5 if due else None)


def test_a_checkpoint_writes_the_position_after_the_last_row_sent(clock, journal, position, caplog):
    publisher, store, lease = parts(journal)
    checkpointer = Checkpointer(publisher, store, position, 10, LOG)
    clock.now += 10
    with caplog.at_level(logging.INFO, logger="test"):
        checkpointer.maybe(result(9, b'{"a":"nine"}'), lease)
    assert Watermark.from_json(store.data[KEY]) == Watermark(
        last_row=9,
        spreadsheet_id="s",
        sheet_id=position.info.sheet_id,
        sheet_name=position.info.title,
        topic="t",
        header_hash=RowMapper(["a"]).header_hash,
        fields=["a"],
        last_row_hash=fingerprint([b'{"a":"nine"}']),
        updated_at="2026-11-02T09:00:00+00:00",
        dag_id="d",
        run_id="r",
    )
    assert "Checkpoint: every row up to 9 is acknowledged; watermark moved there." in caplog.text


def test_a_checkpoint_comes_only_after_the_settle_then_keeps_the_lease_then_writes(clock, journal, position):
    publisher, store, lease = parts(journal)
    checkpointer = Checkpointer(publisher, store, position, 10, LOG)
    clock.now += 10
    checkpointer.maybe(result(4), lease)
    assert journal.events() == ["publisher.settle", "lease.keep", "store.get", "store.set"]


def test_a_checkpoint_without_a_lease_still_writes(clock, journal, position):
    publisher, store, _ = parts(journal)
    checkpointer = Checkpointer(publisher, store, position, 10, LOG)
    clock.now += 10
    checkpointer.maybe(result(4), None)
    assert written(store) == 4


def test_a_checkpoint_is_skipped_when_the_settle_times_out(clock, journal, position, caplog):
    publisher, store, lease = parts(journal, settles=False)
    checkpointer = Checkpointer(publisher, store, position, 10, LOG)
    clock.now += 10
    with caplog.at_level(logging.INFO, logger="test"):
        checkpointer.maybe(result(4), lease)
    assert journal.events() == ["publisher.settle"], "no lease renewal, no watermark read or write"
    assert checkpointer.done is None
    assert "Checkpoint skipped: rows up to 4 are not all acknowledged yet." in caplog.text

    # the next one is due an interval later, and goes through once everything is acknowledged
    publisher.settles = True
    clock.now += 9
    checkpointer.maybe(result(6), lease)
    assert written(store) is None
    clock.now += 1
    checkpointer.maybe(result(6), lease)
    assert written(store) == 6


@pytest.mark.parametrize(("stored", "row", "moves"), [(10, 8, False), (10, 10, False), (10, 11, True), (None, 2, True)])
def test_a_checkpoint_never_moves_the_watermark_backwards(clock, journal, position, stored, row, moves):
    publisher, store, lease = parts(journal, stored=stored)
    checkpointer = Checkpointer(publisher, store, position, 10, LOG)
    clock.now += 10
    checkpointer.maybe(result(row), lease)
    assert written(store) == (row if moves else stored)
    assert ("store.set" in journal.events()) is moves
    assert checkpointer.done == (row if moves else None)


def test_no_checkpoint_before_any_row_was_sent(clock, journal, position):
    publisher, store, lease = parts(journal)
    checkpointer = Checkpointer(publisher, store, position, 10, LOG)
    clock.now += 100
    checkpointer.maybe(result(None), lease)
    assert journal == []
    clock.now += 0.001
    checkpointer.maybe(result(3), lease)  # still due: the call without rows did not use the checkpoint up
    assert written(store) == 3


def test_no_second_checkpoint_of_the_same_row(clock, journal, position):
    publisher, store, lease = parts(journal)
    checkpointer = Checkpointer(publisher, store, position, 10, LOG)
    clock.now += 10
    checkpointer.maybe(result(5), lease)
    journal.clear()
    clock.now += 10
    checkpointer.maybe(result(5), lease)
    assert journal == [], "no settle (a pause of the pipeline) when nothing new was sent"
    clock.now += 10
    checkpointer.maybe(result(7), lease)
    assert written(store) == 7


def test_the_next_checkpoint_is_an_interval_after_the_last_one(clock, journal, position):
    publisher, store, lease = parts(journal)
    checkpointer = Checkpointer(publisher, store, position, 60, LOG)
    clock.now += 75  # late: the first was due at +60
    checkpointer.maybe(result(3), lease)
    clock.now += 59
    checkpointer.maybe(result(4), lease)
    assert written(store) == 3
    clock.now += 1
    checkpointer.maybe(result(4), lease)
    assert written(store) == 4
    assert len(publisher.settle_calls) == 2


# -- Progress --------------------------------------------------------------------------------------


class RecordingCheckpointer:
    def __init__(self) -> None:
        self.calls: list[tuple[int | None, object]] = []

    def maybe(self, result: LoopResult, lease) -> None:
        self.calls.append((result.last_row, lease))


def test_every_page_is_offered_to_the_checkpointer_with_the_lease(clock, journal):
    publisher, _, lease = parts(journal)
    checkpointer = RecordingCheckpointer()
    tracker = Progress(LOG, publisher, lease, checkpointer, interval=10)  # type: ignore[arg-type]
    for row in (3, 5, 9):
        tracker.page_done(result(row))
    assert checkpointer.calls == [(3, lease), (5, lease), (9, lease)]


@pytest.mark.parametrize(
    ("times", "renewals"),
    [
        pytest.param([1, 5, 9.99], [], id="within-the-first-interval"),
        pytest.param([10], [10], id="at-the-interval"),
        pytest.param([5, 10, 15, 20], [10, 20], id="every-interval"),
        pytest.param([35, 44, 45], [35, 45], id="late-page-restarts-the-interval"),
        pytest.param([100, 100.5], [100], id="one-renewal-for-a-long-gap"),
    ],
)
def test_the_lease_is_renewed_every_interval(clock, journal, times, renewals, caplog):
    publisher, _, lease = parts(journal)
    started = clock.now
    tracker = Progress(LOG, publisher, lease, None, interval=10)
    renewed_at = []
    with caplog.at_level(logging.INFO, logger="test"):
        for at in times:
            clock.now = started + at
            before = journal.events().count("lease.renew")
            tracker.page_done(result(4))
            if journal.events().count("lease.renew") > before:
                renewed_at.append(at)
    assert renewed_at == renewals
    assert caplog.text.count("Progress: ") == len(renewals)


def test_a_progress_line_says_pages_rows_and_rate(clock, journal, caplog):
    publisher, _, lease = parts(journal)
    publisher.produced = 500
    tracker = Progress(LOG, publisher, None, None, interval=10)
    clock.now += 20
    with caplog.at_level(logging.INFO, logger="test"):
        tracker.page_done(LoopResult(last_row=40, pages=3, last_page=PageSpan(30, 41, 11)))
    assert "Progress: 3 pages read (through row 41), 500 rows produced, 25 rows/s." in caplog.text
    assert journal == [], "no lease to renew"


def test_a_dry_runs_progress_counts_no_rows(clock, caplog):
    tracker = Progress(LOG, None, None, None, interval=1)
    clock.now += 1
    with caplog.at_level(logging.INFO, logger="test"):
        tracker.page_done(LoopResult(pages=1))
    assert "Progress: 1 pages read (through row None), 0 rows produced, 0 rows/s." in caplog.text
