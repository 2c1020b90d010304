"""
BatchRun end to end through in-memory fakes (:mod:`.fakes`): what is produced (keys, values,
headers byte for byte), where the watermark goes, what the summary says, and in what order the
run touches the lease, the sheet, the producer and the watermark. The important cases run both
in the task process (``mapping_process=False``) and with the rows read and mapped in a forked
child (``True``, where the platform can fork): both give the same records.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime, timezone

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.accel import forked
from airflow_provider_sheets.errors import DriftError, HeaderError, SheetsConfigError, WatermarkError
from airflow_provider_sheets.model.mapping import field_names, fingerprint
from airflow_provider_sheets.model.position import Watermark, default_watermark_key
from airflow_provider_sheets.pipeline.batch import RunContext
from airflow_provider_sheets.settings import EXACTLY_ONCE

from .fakes import SHEET_ID, SPREADSHEET_ID, TITLE, TOPIC, Harness, Sent

HEADER = ["Timestamp", "Name", "Email"]
FIELDS = field_names(HEADER)
HEADER_HASH = fingerprint(FIELDS)
KEY = default_watermark_key(SPREADSHEET_ID, SHEET_ID, TOPIC)
STATE_TOPIC = f"{TOPIC}.state"
DLQ = f"{TOPIC}.dlq"

#: sheet rows 1..6: the header, four responses and an empty row 4; row 6 is ragged (no Email)
ROWS = [
    HEADER,
    ["11/2/2026 9:01:00", "Ann", "ann@x"],
    ["11/2/2026 9:05:00", "Bob", "bob@x"],
    [],
    ["11/2/2026 9:20:00", "Cy", "cy@x"],
    ["11/2/2026 9:31:00", "Dee"],
]

RUN = RunContext("forms", "manual__1", "publish", run_type="manual", try_number=1)


@pytest.fixture
def fork_spy(monkeypatch):
    """What each forked publish returned (``True``: the child mapped every page), or ``"raised"``."""
    outcomes: list[object] = []
    real = forked.publish_from_child

    def spy(*args, **kwargs):
        try:
            ok = real(*args, **kwargs)
        except BaseException:
            outcomes.append("raised")
            raise
        outcomes.append(ok)
        return ok

    monkeypatch.setattr(forked, "publish_from_child", spy)
    return outcomes


def rows() -> list[list]:
    return [list(row) for row in ROWS]


def value(row: int, sheet: list[list] = ROWS, header: list[str] = FIELDS) -> bytes:
    """The record value of sheet row ``row``: compact UTF-8 JSON, padded with null."""
    cells = sheet[row - 1]
    record = {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(header)}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def provenance(header_hash: str = HEADER_HASH) -> list[tuple[str, bytes]]:
    return [
        ("sheets.spreadsheet_id", SPREADSHEET_ID.encode()),
        ("sheets.sheet_name", TITLE.encode()),
        ("sheets.sheet_id", str(SHEET_ID).encode()),
        ("sheets.header_hash", header_hash.encode()),
    ]


def run_headers(run: RunContext = RUN, run_type: str = "manual") -> list[tuple[str, bytes]]:
    return [
        ("airflow.dag_id", run.dag_id.encode()),
        ("airflow.run_id", run.run_id.encode()),
        ("airflow.run_type", run_type.encode()),
        ("airflow.task_id", run.task_id.encode()),
        ("airflow.try_number", str(run.try_number or "").encode()),
    ]


def change(row: int, through: int = 1) -> tuple[str, bytes]:
    """The ``sheets.change`` header of row ``row`` when rows up to ``through`` were published before."""
    return ("sheets.change", b"update" if row <= through else b"insert")


def record(
    row: int, key: bytes | None = None, sheet=ROWS, run_type="manual", header_hash=HEADER_HASH, through: int = 1
) -> Sent:
    """The record BatchRun produces for sheet row ``row`` (keyed by row unless ``key``)."""
    headers = [
        *provenance(header_hash),
        *run_headers(run_type=run_type),
        ("sheets.row", str(row).encode()),
        change(row, through),
    ]
    return Sent(TOPIC, key or str(row).encode(), value(row, sheet), headers)


def stored(h: Harness, key: str = KEY) -> Watermark | None:
    return h.stores.watermark(key)


def sets(h: Harness) -> list[int]:
    return [entry[2] for entry in h.journal if entry[0] == "store.set"]


# -- incremental -----------------------------------------------------------------------------------


def test_an_incremental_run_publishes_the_rows_after_the_watermark_and_moves_it(mapping_process, fork_spy):
    h = Harness(rows())
    h.stores.put(KEY, 2)
    summary = h.run(RUN, page_size=2, mapping_process=mapping_process)

    assert h.publisher.sent == [record(3), record(5), record(6)]
    assert h.publisher.finished
    assert h.publisher.closed
    assert stored(h) == Watermark(
        last_row=6,
        spreadsheet_id=SPREADSHEET_ID,
        sheet_id=SHEET_ID,
        sheet_name=TITLE,
        topic=TOPIC,
        header_hash=HEADER_HASH,
        fields=FIELDS,
        last_row_hash=fingerprint([value(6)]),
        updated_at="2026-11-02T09:00:00+00:00",
        dag_id="forms",
        run_id="manual__1",
        recent_rows=[[row, fingerprint([value(row)])] for row in (3, 5, 6)],
    )
    assert h.reader.reads == [{"after_row": 2, "page_size": 2, "header_row": 1, "max_rows": None, "check_row": 2}]
    assert (summary.watermark_before, summary.watermark_after) == (2, 6)
    assert (summary.rows_published, summary.rows_selected, summary.empty_rows_skipped) == (3, 3, 1)
    assert (summary.first_row, summary.last_row, summary.pages) == (3, 6, 2)
    assert summary.sheets_requests == 3, "describe, header + first page, the second page (counted in the child too)"
    assert summary.mode == "incremental"
    assert fork_spy == ([True] if mapping_process else [])


def test_a_first_run_starts_below_the_header(mapping_process):
    h = Harness(rows())
    summary = h.run(RUN, mapping_process=mapping_process)
    assert h.publisher.sent == [record(2), record(3), record(5), record(6)]
    assert h.reader.reads[0]["after_row"] == 1
    assert h.reader.reads[0]["check_row"] is None, "no previous row to check for drift"
    assert (summary.watermark_before, summary.watermark_after, summary.pages) == (1, 6, 1)
    assert stored(h).last_row == 6


def test_a_run_with_nothing_new_produces_nothing_and_leaves_the_watermark(mapping_process):
    h = Harness(rows())
    h.run(RUN, mapping_process=mapping_process)
    text = h.stores.data[KEY]
    h.journal.clear()

    summary = h.run(RUN, mapping_process=mapping_process)
    assert len(h.publishers.built) == 2
    assert h.publisher.sent == []
    assert h.stores.data[KEY] == text
    assert "store.set" not in h.journal.events()
    assert h.reader.reads[-1]["check_row"] == 6, "the last published row is checked for drift: none"
    assert summary.as_xcom() | {"duration_s": 0, "rows_per_s": None} == {
        "run_type": "manual",
        "mode": "incremental",
        "dry_run": False,
        "delivery": "at_least_once",
        "spreadsheet_id": SPREADSHEET_ID,
        "sheet_name": TITLE,
        "sheet_id": SHEET_ID,
        "topic": TOPIC,
        "watermark_key": KEY,
        "watermark_before": 6,
        "watermark_after": 6,
        "rows_published": 0,
        "rows_acked": 0,
        "rows_selected": 0,
        "rows_dead_lettered": 0,
        "empty_rows_skipped": 0,
        "first_row": None,
        "last_row": None,
        "pages": 0,
        "sheets_requests": 4,  # this reader counts both runs: 2 + describe and header-only read
        "rows_unchanged": 0,
        "rows_deleted": 0,
        "typed_fallbacks": 0,
        "rows_restamped": 0,
        "duration_s": 0,
        "rows_per_s": None,
    }


def test_new_rows_appended_after_a_run_are_published_by_the_next(mapping_process):
    h = Harness(rows())
    h.run(RUN, mapping_process=mapping_process)
    h.rows.extend([["11/2/2026 9:40:00", "Eve", "eve@x"], [], ["11/2/2026 9:45:00", "Fay", "fay@x"]])
    summary = h.run(RUN, mapping_process=mapping_process)
    assert h.publisher.sent == [record(7, sheet=h.rows), record(9, sheet=h.rows)]
    assert (summary.watermark_before, summary.watermark_after, summary.empty_rows_skipped) == (6, 9, 1)
    assert stored(h).last_row_hash == fingerprint([value(9, h.rows)])


def test_records_are_keyed_by_the_key_column(mapping_process):
    h = Harness(rows()[:-1])  # row 6 has no Email
    h.run(RUN, key_column="Email", mapping_process=mapping_process)
    assert h.publisher.sent == [record(2, b"ann@x"), record(3, b"bob@x"), record(5, b"cy@x")]


@pytest.mark.parametrize(
    ("run", "airflow_headers", "expected"),
    [
        pytest.param(RUN, True, run_headers(RUN), id="run-headers"),
        pytest.param(
            RunContext("d", "scheduled__x", "t", run_type="DagRunType.SCHEDULED", try_number=None),
            True,
            [
                ("airflow.dag_id", b"d"),
                ("airflow.run_id", b"scheduled__x"),
                ("airflow.run_type", b"scheduled"),
                ("airflow.task_id", b"t"),
                ("airflow.try_number", b""),
            ],
            id="enum-run-type-no-try-number",
        ),
        pytest.param(RUN, False, [], id="airflow_headers-off"),
    ],
)
def test_the_airflow_headers(run, airflow_headers, expected):
    h = Harness(rows()[:3])
    h.run(run, airflow_headers=airflow_headers, mapping_process=False)
    for sent in h.publisher.sent:
        assert sent.headers == [*provenance(), *expected, ("sheets.row", sent.key), ("sheets.change", b"insert")]


# -- dry run ---------------------------------------------------------------------------------------


def test_a_dry_run_builds_no_publisher_and_logs_a_preview(mapping_process, caplog):
    sheet = [HEADER, *[[f"11/2/2026 9:0{i}:00", f"n{i}", f"e{i}"] for i in range(2, 10)]]
    h = Harness(sheet)
    h.stores.put(KEY, 1)
    with caplog.at_level(logging.INFO, logger="test"):
        summary = h.run(RUN, dry_run=True, mapping_process=mapping_process)

    assert h.publishers.built == []
    assert h.leases.built == [], "a run that does not move the watermark takes no lease"
    assert stored(h) == Watermark(last_row=1)
    assert "store.set" not in h.journal.events()
    previews = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Dry run preview:")]
    assert previews == [f"Dry run preview: row {row} key={row} {value(row, sheet).decode()}" for row in range(2, 7)]
    assert "Dry run: would publish 8 rows (2..9)" in caplog.text
    assert (summary.dry_run, summary.rows_published, summary.rows_selected) == (True, 0, 8)
    assert (summary.watermark_before, summary.watermark_after) == (1, 1)
    assert summary.as_xcom()["rows_acked"] == 0


# -- start_row, full_refresh, max_rows -------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "options", "published", "after"),
    [
        pytest.param(None, {"start_row": 3}, [3, 5, 6], 6, id="no-watermark"),
        pytest.param(2, {"start_row": 5}, [5, 6], 6, id="forward-skipping-rows"),
        pytest.param(6, {"start_row": 3}, [3, 5, 6], 6, id="republish-a-range"),
        pytest.param(6, {"start_row": 2, "max_rows": 2}, [2, 3], 6, id="never-backwards"),
    ],
)
def test_start_row(mapping_process, before, options, published, after, caplog):
    h = Harness(rows())
    if before is not None:
        h.stores.put(KEY, before)
    with caplog.at_level(logging.WARNING, logger="test"):
        summary = h.run(RUN, mapping_process=mapping_process, **options)
    assert h.publisher.sent == [record(row, through=before or 1) for row in published]
    assert h.reader.reads[0]["after_row"] == options["start_row"] - 1
    assert summary.mode == "from_row"
    assert stored(h).last_row == after
    assert summary.watermark_after == after
    backwards = published[-1] < (before or 0)
    assert sets(h) == ([] if backwards else [after])
    assert ("is already at 6 (beyond this run's last row 3)" in caplog.text) is backwards


@pytest.mark.parametrize("before", [None, 1, 3, 6, 100], ids=lambda b: f"watermark-{b}")
def test_full_refresh_publishes_every_row_and_sets_the_watermark(mapping_process, before):
    h = Harness(rows())
    if before is not None:
        h.stores.put(KEY, before)
    summary = h.run(RUN, full_refresh=True, mapping_process=mapping_process)
    assert h.publisher.sent == [record(row, through=before or 1) for row in (2, 3, 5, 6)]
    assert h.reader.reads[0]["after_row"] == 1
    assert h.reader.reads[0]["check_row"] is None
    assert sets(h) == [6], "set even when it was further (a watermark past the tab's end is repaired)"
    assert summary.mode == "full_refresh"
    assert summary.watermark_before == (before or 1)


def test_max_rows_limits_each_run(mapping_process):
    h = Harness(rows())
    published, afters = [], []
    for _ in range(4):
        summary = h.run(RUN, max_rows=2, mapping_process=mapping_process)
        published.append([int(sent.key) for sent in h.publisher.sent])
        afters.append(summary.watermark_after)
    assert published == [[2, 3], [5], [6], []]
    assert afters == [3, 5, 6, 6]
    assert {read["max_rows"] for read in h.reader.reads} == {2}


# -- the watermark against the tab -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header_row", "last_row"),
    [(1, 0), (3, 2), (3, 0)],
)
def test_a_watermark_above_the_header_row_fails(header_row, last_row):
    h = Harness([["title"], ["note"], *rows()])
    h.stores.put(KEY, last_row)
    with pytest.raises(WatermarkError) as info:
        h.run(RUN, header_row=header_row, mapping_process=False)
    assert str(info.value) == (
        f"the watermark Variable {KEY!r} says last_row={last_row}, above the header row {header_row}; set it to "
        f"{header_row} or more."
    )
    assert h.publisher.sent == []
    assert h.publisher.closed
    assert stored(h).last_row == last_row
    assert h.journal.events()[-1] == "lease.release"


@pytest.mark.parametrize(("row_count", "last_row"), [(None, 7), (None, 100), (8, 9)])
def test_a_watermark_past_the_tabs_end_fails_naming_deleted_rows(row_count, last_row):
    h = Harness(rows(), row_count=row_count)
    h.stores.put(KEY, last_row)
    with pytest.raises(WatermarkError, match="rows were deleted") as info:
        h.run(RUN, mapping_process=False)
    grid = row_count or len(ROWS)
    assert f"says rows up to {last_row} are done, but tab {TITLE!r} now has only {grid} rows" in str(info.value)
    assert f"the watermark Variable {KEY!r}" in str(info.value)
    assert h.publisher.sent == []
    assert h.reader.reads == []


def test_a_watermark_on_the_last_grid_row_is_fine():
    h = Harness(rows(), row_count=8)
    h.stores.put(KEY, 8)
    summary = h.run(RUN, mapping_process=False)
    assert h.publisher.sent == []
    assert summary.watermark_after == 8


def test_a_watermark_the_store_cannot_parse_fails_before_anything_is_read():
    h = Harness(rows())
    h.stores.data[KEY] = "not json"
    with pytest.raises(ValueError, match="does not hold valid JSON"):
        h.run(RUN, mapping_process=False)
    assert h.reader.reads == []


# -- drift -----------------------------------------------------------------------------------------


def _drift(kind: str, sheet: list[list]) -> str:
    """Change ``sheet`` (already published up to row 6) the way ``kind`` says; the finding's start."""
    if kind == "header":
        sheet[0] = ["Timestamp", "Name", "E-mail"]
        return (
            f"the header row of tab {TITLE!r} changed since the last run (added 'E-mail'; removed or renamed 'Email')"
        )
    if kind == "row-inserted-above":
        sheet.insert(2, ["11/2/2026 9:02:00", "Inserted", "in@x"])
        return (
            f"1 row was inserted above the watermark of tab {TITLE!r}: the last row already published, row 6, is now "
            f"row 7, and every row after it moved down by 1."
        )
    if kind == "rows-deleted-above":
        del sheet[1]
        sheet.append([])  # the grid keeps its size
        return (
            f"1 row was deleted above the watermark of tab {TITLE!r}: the last row already published, row 6, is now "
            f"row 5, and every row after it moved up by 1."
        )
    raise AssertionError(kind)


DRIFTS = ["header", "row-inserted-above", "rows-deleted-above"]
#: where on_drift='continue' reads on after: where the last published row is now
FOLLOW = {"header": 6, "row-inserted-above": 7, "rows-deleted-above": 5}


@pytest.mark.parametrize("kind", DRIFTS)
def test_drift_with_on_drift_fail_stops_before_anything_is_produced(mapping_process, kind):
    h = Harness(rows())
    h.run(RUN, mapping_process=mapping_process)
    text = h.stores.data[KEY]
    finding = _drift(kind, h.rows)
    h.rows.append(["11/2/2026 9:50:00", "New", "new@x"])

    with pytest.raises(DriftError) as info:
        h.run(RUN, mapping_process=mapping_process)
    message = str(info.value)
    assert message.startswith(finding), message
    assert f"Nothing was published. To proceed: delete or reset the watermark Variable {KEY!r}" in message
    assert "on_drift='continue' (publish the rows after row 6 as they are now)" in message
    assert h.publisher.sent == []
    assert h.stores.data[KEY] == text
    assert h.publisher.closed


@pytest.mark.parametrize("kind", DRIFTS)
def test_drift_with_on_drift_continue_publishes_the_rows_after_the_watermark(mapping_process, kind, caplog):
    h = Harness(rows())
    h.run(RUN, mapping_process=mapping_process)
    finding = _drift(kind, h.rows)
    h.rows.append(["11/2/2026 9:50:00", "New", "new@x"])
    last = len(h.rows)

    with caplog.at_level(logging.WARNING, logger="test"):
        summary = h.run(RUN, on_drift="continue", mapping_process=mapping_process)
    header = field_names(h.rows[0])
    published = [int(sent.key) for sent in h.publisher.sent]
    assert published == [row for row in range(FOLLOW[kind] + 1, last + 1) if h.rows[row - 1]]
    assert h.publisher.sent[-1].value == value(last, h.rows, header)
    assert h.publisher.sent[-1].header["sheets.header_hash"] == fingerprint(header).encode()
    assert finding in caplog.text
    assert "on_drift='continue': going on." in caplog.text
    assert (summary.mode, summary.watermark_before, summary.watermark_after) == ("incremental", 6, last)


@pytest.mark.parametrize("kind", DRIFTS)
def test_drift_with_on_drift_republish_publishes_every_row_again(mapping_process, kind, caplog):
    h = Harness(rows())
    h.run(RUN, mapping_process=mapping_process)
    _drift(kind, h.rows)
    h.rows.append(["11/2/2026 9:50:00", "New", "new@x"])
    last = len(h.rows)

    with caplog.at_level(logging.WARNING, logger="test"):
        summary = h.run(RUN, on_drift="republish", mapping_process=mapping_process)
    header = field_names(h.rows[0])
    expected = [row for row in range(2, last + 1) if h.rows[row - 1]]
    assert [int(sent.key) for sent in h.publisher.sent] == expected
    assert [sent.value for sent in h.publisher.sent] == [value(row, h.rows, header) for row in expected]
    assert h.reader.reads[-1] == {
        "after_row": 1,
        "page_size": 5000,
        "header_row": 1,
        "max_rows": None,
        "check_row": None,
    }
    assert "on_drift='republish': going on." in caplog.text
    assert summary.mode == "full_refresh"
    assert (summary.watermark_before, summary.watermark_after) == (6, last)
    assert stored(h).header_hash == fingerprint(header)


def test_no_drift_check_when_the_watermark_is_on_the_header_row():
    h = Harness(rows())
    h.stores.put(KEY, 1, header_hash="something else", last_row_hash="x")
    h.run(RUN, mapping_process=False)
    assert h.reader.reads[0]["check_row"] is None
    assert len(h.publisher.sent) == 4


def test_a_watermark_set_by_hand_without_hashes_is_not_drift():
    h = Harness(rows())
    h.stores.put(KEY, 3)
    h.run(RUN, mapping_process=False)
    assert [int(sent.key) for sent in h.publisher.sent] == [5, 6]


# -- rows that cannot be mapped --------------------------------------------------------------------


def test_a_row_that_cannot_be_mapped_fails_the_run_and_leaves_the_watermark(mapping_process, fork_spy):
    h = Harness(rows())
    h.stores.put(KEY, 1)
    with pytest.raises(SheetsConfigError) as info:
        h.run(RUN, key_column="Email", page_size=2, mapping_process=mapping_process)
    assert type(info.value) is SheetsConfigError
    assert str(info.value) == (
        "row 6 cannot be mapped (the key column 'Email' is empty); fix the row, or set dead_letter_topic to send "
        "such rows there with the reason in a header."
    )
    assert stored(h) == Watermark(last_row=1)
    assert "store.set" not in h.journal.events()
    assert not h.publisher.finished, "the rows produced before it are never committed as done"
    assert [sent.key for sent in h.publisher.sent] == [b"ann@x", b"bob@x", b"cy@x"], "the pages before row 6"
    assert h.publisher.polls == 2, "page_done for the two complete pages, none for the page that failed"
    assert h.publisher.closed
    assert fork_spy == (["raised"] if mapping_process else [])


def test_an_empty_header_row_fails_naming_the_setting():
    h = Harness([[], *rows()[1:]])
    with pytest.raises(HeaderError, match=r"the header row 1 of tab 'Form Responses 1' is empty.*or set header_row"):
        h.run(RUN, mapping_process=False)
    assert h.publisher.sent == []


def test_an_unknown_key_column_fails_listing_the_headers():
    h = Harness(rows())
    with pytest.raises(SheetsConfigError, match=r"tab 'Form Responses 1': key_column 'id' is not a header"):
        h.run(RUN, key_column="id", mapping_process=False)


def test_a_dead_letter_topic_takes_the_row_and_the_run_goes_on(mapping_process):
    sheet = rows()
    sheet[2] = ["11/2/2026 9:05:00", "Bob"]  # row 3: no Email, the key column
    sheet[5] = ["11/2/2026 9:31:00", "Dee", "dee@x"]
    h = Harness(sheet)
    summary = h.run(RUN, key_column="Email", dead_letter_topic=DLQ, mapping_process=mapping_process)

    reason = "the key column 'Email' is empty"
    dead = Sent(
        DLQ,
        b"3",
        json.dumps({"row": 3, "cells": ["11/2/2026 9:05:00", "Bob"], "error": reason}).encode(),
        [*provenance(), *run_headers(), ("sheets.row", b"3"), ("sheets.error", reason.encode())],
    )
    assert h.publisher.sent == [
        dead,
        record(2, b"ann@x", sheet),
        record(5, b"cy@x", sheet),
        record(6, b"dee@x", sheet),
    ]
    assert h.publisher.checked_topics == [TOPIC, DLQ]
    assert stored(h).last_row == 6
    assert (summary.rows_published, summary.rows_dead_lettered, summary.rows_selected) == (3, 1, 3)


def test_dead_letters_are_not_counted_as_empty_rows():
    sheet = rows()
    sheet[2] = ["11/2/2026 9:05:00", "Bob"]  # row 3: a dead letter (as is row 6); row 4 is the only empty row
    summary = Harness(sheet).run(RUN, key_column="Email", dead_letter_topic=DLQ, mapping_process=False)
    assert summary.rows_dead_lettered == 2
    assert summary.empty_rows_skipped == 1


def test_a_dead_letter_after_the_last_record_is_not_sent_again_by_the_next_run():
    h = Harness(rows())  # row 6 has no Email: a dead letter after the last record (row 5)
    h.run(RUN, key_column="Email", dead_letter_topic=DLQ, mapping_process=False)
    assert [sent.key for sent in h.publisher.to(DLQ)] == [b"6"]
    h.run(RUN, key_column="Email", dead_letter_topic=DLQ, mapping_process=False)
    assert h.publisher.to(DLQ) == []


# -- backfill --------------------------------------------------------------------------------------

NINE = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
QUARTER_PAST = datetime(2026, 11, 2, 9, 15, tzinfo=timezone.utc)


def backfill(start=NINE, end=QUARTER_PAST) -> RunContext:
    return RunContext("forms", "backfill__1", "publish", run_type="backfill", try_number=2, data_interval=(start, end))


@pytest.mark.parametrize(
    ("time_zone", "start", "end", "published"),
    [
        pytest.param("Etc/UTC", NINE, QUARTER_PAST, [2, 3], id="utc"),
        pytest.param(
            "Etc/UTC",
            datetime(2026, 11, 2, 9, 5, tzinfo=timezone.utc),
            NINE.replace(hour=10),
            [3, 5, 6],
            id="start-inclusive",
        ),
        pytest.param("Etc/UTC", NINE, NINE.replace(minute=5), [2], id="end-exclusive"),
        pytest.param("Asia/Seoul", NINE.replace(hour=0), QUARTER_PAST.replace(hour=0), [2, 3], id="sheet-time-zone"),
        pytest.param("Etc/UTC", NINE.replace(hour=11), NINE.replace(hour=12), [], id="none-in-interval"),
    ],
)
def test_a_backfill_publishes_the_rows_in_its_interval_and_leaves_the_watermark(
    mapping_process, time_zone, start, end, published
):
    h = Harness(rows())
    h.reader.time_zone = time_zone
    h.stores.put(KEY, 3)
    run = backfill(start, end)
    summary = h.run(run, mapping_process=mapping_process)

    headers = [*provenance(), *run_headers(run, "backfill")]
    assert h.publisher.sent == [
        Sent(TOPIC, str(r).encode(), value(r), [*headers, ("sheets.row", str(r).encode()), change(r, 3)])
        for r in published
    ]
    assert stored(h) == Watermark(last_row=3)
    assert "store.set" not in h.journal.events()
    assert h.leases.built == []
    assert (h.reader.reads[0]["after_row"], h.reader.reads[0]["check_row"]) == (1, None)
    xcom = summary.as_xcom()
    assert (xcom["mode"], xcom["run_type"], xcom["watermark_before"], xcom["watermark_after"]) == (
        "interval",
        "backfill",
        3,
        3,
    )
    assert (xcom["interval_start"], xcom["interval_end"]) == (start.isoformat(), end.isoformat())
    assert (xcom["rows_published"], xcom["rows_selected"], xcom["empty_rows_skipped"]) == (
        len(published),
        len(published),
        0,
    )


def test_a_backfill_needs_its_timestamp_column():
    h = Harness(rows())
    with pytest.raises(
        SheetsConfigError, match=r"timestamp_column 'Submitted' is not a header of tab 'Form Responses 1'"
    ):
        h.run(backfill(), timestamp_column="Submitted", mapping_process=False)
    assert h.publisher.sent == []


def test_a_backfill_names_a_timestamp_it_cannot_read(mapping_process):
    sheet = rows()
    sheet[4][0] = "yesterday"
    h = Harness(sheet)
    with pytest.raises(SheetsConfigError) as info:
        h.run(backfill(), mapping_process=mapping_process)
    assert str(info.value) == (
        "row 5: cell A5 ('Timestamp') cannot be placed in time: 'yesterday' is text that is not a date-time of "
        "locale en_US, nor ISO 8601 (spreadsheet locale en_US, time zone Etc/UTC). Nothing was published. Format "
        "the column as a date-time (Format > Number > Date time), clear the cell, or set timestamp_format to the "
        "strptime format of the cells' text."
    )
    assert h.publisher.sent == []


def test_a_backfill_with_a_custom_timestamp_format():
    sheet = [HEADER, ["02.11.2026 09:01", "Ann", "a"], ["02.11.2026 10:01", "Bob", "b"]]
    h = Harness(sheet)
    h.run(backfill(), timestamp_format="%d.%m.%Y %H:%M", mapping_process=False)
    assert [sent.key for sent in h.publisher.sent] == [b"2"]


@pytest.mark.parametrize("interval", [None, (None, None), (QUARTER_PAST, NINE)])
def test_a_backfill_without_a_data_interval_is_a_config_error(interval):
    h = Harness(rows())
    run = RunContext("forms", "backfill__1", "publish", run_type="backfill", data_interval=interval)
    with pytest.raises(SheetsConfigError, match="this backfill run has no data interval"):
        h.batch(run, mapping_process=False)
    assert h.journal == []


@pytest.mark.parametrize(
    "options",
    [{"full_refresh": True, "start_row": 3}, {"start_row": 1}],
)
def test_contradicting_options_are_a_config_error_before_anything_runs(options):
    h = Harness(rows())
    with pytest.raises(SheetsConfigError):
        h.batch(RUN, **options)
    assert h.journal == []


# -- exactly once ----------------------------------------------------------------------------------


def test_exactly_once_commits_the_checkpoint_with_the_records(mapping_process):
    h = Harness(rows())
    summary = h.run(RUN, delivery=EXACTLY_ONCE, mapping_process=mapping_process)

    publisher = h.publisher
    assert publisher.transactional_id == f"sheets-to-kafka.forms.publish.{SPREADSHEET_ID}.gid{SHEET_ID}"
    *records, checkpoint = publisher.sent
    assert records == [record(2), record(3), record(5), record(6)]
    assert (checkpoint.topic, checkpoint.key, checkpoint.headers) == (STATE_TOPIC, KEY.encode(), [])
    committed = Watermark.from_json(checkpoint.value.decode())
    assert committed.last_row == 6
    assert committed.last_row_hash == fingerprint([value(6)])
    assert committed == dataclasses.replace(stored(h), updated_at=""), "the Variable gets what was committed"

    events = h.journal.events()
    state_send = next(i for i, e in enumerate(h.journal) if e[0] == "publisher.send" and e[1] == STATE_TOPIC)
    assert state_send < events.index("publisher.finish") < events.index("store.set")
    assert h.checkpoints.values == {}
    assert ("checkpoint", STATE_TOPIC, KEY) in h.journal
    assert summary.delivery == EXACTLY_ONCE
    assert summary.rows_published == 4, "the checkpoint is not a published row"


def test_exactly_once_with_nothing_new_sends_no_checkpoint():
    h = Harness(rows())
    h.run(RUN, delivery=EXACTLY_ONCE, mapping_process=False)
    h.run(RUN, delivery=EXACTLY_ONCE, mapping_process=False)
    assert h.publisher.sent == []
    assert h.publisher.finished, "the (empty) transaction is still committed"


@pytest.mark.parametrize(
    ("variable", "checkpoint", "after_row", "trusted"),
    [
        pytest.param(2, 5, 5, True, id="checkpoint-newer"),
        pytest.param(None, 3, 3, True, id="no-variable"),
        pytest.param(5, 3, 5, False, id="checkpoint-older"),
        pytest.param(5, 5, 5, False, id="same"),
        pytest.param(3, None, 3, False, id="no-checkpoint"),
    ],
)
def test_exactly_once_trusts_a_newer_committed_checkpoint(
    mapping_process, variable, checkpoint, after_row, trusted, caplog
):
    h = Harness(rows())
    if variable is not None:
        h.stores.put(KEY, variable)
    if checkpoint is not None:
        h.checkpoints.values[KEY] = Watermark(last_row=checkpoint, topic=TOPIC).to_json().encode()
    with caplog.at_level(logging.WARNING, logger="test"):
        summary = h.run(RUN, delivery=EXACTLY_ONCE, mapping_process=mapping_process)

    assert h.reader.reads[0]["after_row"] == after_row
    assert summary.watermark_before == after_row
    assert [int(s.key) for s in h.publisher.sent if s.topic == TOPIC] == [r for r in (2, 3, 5, 6) if r > after_row]
    assert sets(h) == ([checkpoint, 6] if trusted else [6])
    assert ("continuing from the checkpoint" in caplog.text) is trusted
    # a trusted checkpoint is written to the Variable before the sheet is read
    assert (h.journal.first("store.set") < h.journal.first("read")) is trusted


@pytest.mark.parametrize(
    ("run", "options"),
    [pytest.param(RUN, {"dry_run": True}, id="dry-run"), pytest.param(backfill(), {}, id="backfill")],
)
def test_a_run_that_does_not_move_the_watermark_never_writes_it(run, options):
    h = Harness(rows())
    h.stores.put(KEY, 2)
    h.checkpoints.values[KEY] = Watermark(last_row=5).to_json().encode()
    h.run(run, delivery=EXACTLY_ONCE, mapping_process=False, **options)
    assert h.leases.built == []
    assert sets(h) == []
    assert stored(h) == Watermark(last_row=2)


@pytest.mark.parametrize("raw", [b"garbage", b'{"last_row": -1}', b"\xff\xfe"])
def test_exactly_once_fails_on_a_checkpoint_it_cannot_read(raw):
    h = Harness(rows())
    h.checkpoints.values[KEY] = raw
    with pytest.raises(WatermarkError, match=rf"the checkpoint of {KEY!r} in '{STATE_TOPIC}' .*Produce a tombstone"):
        h.run(RUN, delivery=EXACTLY_ONCE, mapping_process=False)
    assert h.publisher.sent == []


def test_at_least_once_reads_no_checkpoint():
    h = Harness(rows())
    h.checkpoints.values[KEY] = Watermark(last_row=5).to_json().encode()
    h.run(RUN, mapping_process=False)
    assert "checkpoint" not in h.journal.events()
    assert h.publisher.transactional_id is None
    assert len(h.publisher.sent) == 4


def test_a_backfill_in_exactly_once_mode_has_its_own_transactional_id():
    h = Harness(rows())
    h.run(backfill(), delivery=EXACTLY_ONCE, mapping_process=False)
    assert h.publisher.transactional_id == (
        f"sheets-to-kafka.forms.publish.{SPREADSHEET_ID}.gid{SHEET_ID}.20261102T090000-20261102T091500"
    )
    assert [s.topic for s in h.publisher.sent] == [TOPIC, TOPIC], "a backfill commits no checkpoint"


# -- ordering --------------------------------------------------------------------------------------


@pytest.mark.parametrize("delivery", ["at_least_once", EXACTLY_ONCE])
def test_the_order_of_effects(delivery):
    h = Harness(rows())
    h.run(RUN, watermark_key="my.key", delivery=delivery, dead_letter_topic=DLQ, mapping_process=False)
    events = h.journal.events()
    begin = events.index("publisher.begin")
    expected = [
        "lease.claim",
        "describe",
        "publisher.new",
        "publisher.check_topic",
        "publisher.check_topic",
        "lease.confirm",
        "publisher.begin",
    ]
    expected += ["lease.keep"] if delivery == EXACTLY_ONCE else []  # an attempt fenced while it stalled stops here
    expected += ["store.get"]
    expected += ["checkpoint"] if delivery == EXACTLY_ONCE else []
    expected += ["read", "publisher.send_many"]
    expected += ["publisher.send"] if delivery == EXACTLY_ONCE else []  # the checkpoint
    expected += ["publisher.finish", "lease.keep", "store.get", "store.set", "publisher.close", "lease.release"]
    assert events == expected
    assert begin < events.index("store.get")
    assert h.stores.keys == ["my.key"]
    assert h.leases.built[0].watermark_key == "my.key"
    assert h.leases.built[0].owner == "forms/manual__1/publish"


def test_without_a_watermark_key_the_lease_is_claimed_once_the_tab_is_known():
    h = Harness(rows())
    h.run(RUN, mapping_process=False)
    events = h.journal.events()
    assert events[:3] == ["describe", "lease.claim", "publisher.new"]
    assert events.index("lease.confirm") < events.index("publisher.begin") < events.index("store.get")
    assert h.stores.keys == [KEY]


def test_the_lease_is_released_and_the_producer_closed_when_a_run_fails():
    h = Harness(rows())
    h.stores.put(KEY, 99)
    with pytest.raises(WatermarkError):
        h.run(RUN, mapping_process=False)
    assert h.journal.events()[-2:] == ["publisher.close", "lease.release"]


def test_a_sheet_name_is_described_and_reported():
    h = Harness(rows())
    summary = h.run(RUN, sheet_name="Other tab", mapping_process=False)
    assert h.journal[0] == ("describe", SPREADSHEET_ID, "Other tab")
    assert summary.sheet_name == "Other tab"
    assert h.publisher.sent[0].header["sheets.sheet_name"] == b"Other tab"


# -- the summary -----------------------------------------------------------------------------------


def test_the_summary_as_xcom(mapping_process):
    h = Harness(rows())
    summary = h.run(RUN, page_size=3, mapping_process=mapping_process)
    xcom = summary.as_xcom()
    json.dumps(xcom)  # serialisable
    assert isinstance(xcom.pop("duration_s"), float)
    rows_per_s = xcom.pop("rows_per_s")
    assert rows_per_s is None or rows_per_s > 0
    assert xcom == {
        "run_type": "manual",
        "mode": "incremental",
        "dry_run": False,
        "delivery": "at_least_once",
        "spreadsheet_id": SPREADSHEET_ID,
        "sheet_name": TITLE,
        "sheet_id": SHEET_ID,
        "topic": TOPIC,
        "watermark_key": KEY,
        "watermark_before": 1,
        "watermark_after": 6,
        "rows_published": 4,
        "rows_acked": 4,
        "rows_selected": 4,
        "rows_dead_lettered": 0,
        "empty_rows_skipped": 1,
        "first_row": 2,
        "last_row": 6,
        "pages": 2,
        "sheets_requests": 3,
        "rows_unchanged": 0,
        "rows_deleted": 0,
        "typed_fallbacks": 0,
        "rows_restamped": 0,
    }
    assert "interval_start" not in xcom


# -- both paths ------------------------------------------------------------------------------------


@pytest.mark.skipif(not forked.available(), reason="the platform cannot fork")
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"page_size": 1},
        {"key_column": "Email", "dead_letter_topic": DLQ, "page_size": 2},
        {"delivery": EXACTLY_ONCE, "page_size": 4},
    ],
    ids=["default", "page-per-row", "dead-letters", "exactly-once"],
)
def test_both_paths_give_the_same_records_watermark_and_summary(monkeypatch, options):
    monkeypatch.delenv(accel.PLAIN_ENV, raising=False)
    sheet = [
        HEADER,
        ["11/2/2026 9:01:00", "Zoë 😀", "z@x"],
        ["11/2/2026 9:02:00", 'quote " and \\', "", "wider", "still"],
        [],
        ["", "", ""],
        ["11/2/2026 9:05:00", "\u2028", "u@x"],
        ["11/2/2026 9:06:00", "last", "l@x"],
    ]
    outcomes = {}
    for mapping_process in (False, True):
        h = Harness([list(row) for row in sheet])
        summary = h.run(RUN, mapping_process=mapping_process, **options).as_xcom()
        summary.pop("duration_s"), summary.pop("rows_per_s")
        outcomes[mapping_process] = (h.publisher.sent, h.stores.data[KEY], summary)
    assert outcomes[True] == outcomes[False]
    assert outcomes[False][0], "something was produced"
