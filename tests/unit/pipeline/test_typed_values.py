"""
Typed values through the unmodified ``GSheetsHook`` and the local Sheets server: the same form in
en_US and de_DE gives the same typed records; number formats are read once and kept in the watermark.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.errors import SheetsConfigError
from airflow_provider_sheets.hooks.sheets import SheetsConnection
from airflow_provider_sheets.pipeline.batch import RunContext
from tests.unit.pipeline.fakes import SPREADSHEET_ID, Harness

RUN = RunContext("forms", "scheduled__1", "publish", run_type="scheduled")
TAB = "Responses"
HEADER = ["Timestamp", "Name", "Rating", "Share", "Subscribed", "Budget", "Comment"]
ROWS = [
    [datetime(2026, 11, 5, 9, 5, 3), "Ann", 4, 0.5, True, 1234.5, "ok"],
    [datetime(2026, 11, 5, 14, 30, 0), "Bob", 5, 0.25, False, "about 10", ""],
]


def _harness(server, locale: str, time_zone: str) -> Harness:
    server.create_spreadsheet(SPREADSHEET_ID, {TAB: [HEADER, *ROWS]}, locale=locale, time_zone=time_zone)
    server.set_column_format(SPREADSHEET_ID, TAB, 4, "PERCENT", "0.00%")
    server.set_column_format(SPREADSHEET_ID, TAB, 6, "CURRENCY", '"$"#,##0.00')
    h = Harness([])
    h.reader = accel.reader(SheetsConnection(api_endpoint=server.url), typed=True)
    return h


@pytest.mark.parametrize(
    ("locale", "zone", "offset"), [("en_US", "America/New_York", "-05:00"), ("de_DE", "Europe/Berlin", "+01:00")]
)
def test_typed_records_do_not_depend_on_the_locale(server, locale, zone, offset, mapping_process):
    h = _harness(server, locale, zone)
    summary = h.run(RUN, sheet_name=TAB, typed_values=True, mapping_process=mapping_process)
    values = [json.loads(sent.value) for sent in h.publisher.sent]
    assert values == [
        {
            "Timestamp": f"2026-11-05T09:05:03{offset}",
            "Name": "Ann",
            "Rating": 4,
            "Share": 0.5,
            "Subscribed": True,
            "Budget": 1234.5,
            "Comment": "ok",
        },
        {
            "Timestamp": f"2026-11-05T14:30:00{offset}",
            "Name": "Bob",
            "Rating": 5,
            "Share": 0.25,
            "Subscribed": False,
            "Budget": "about 10",  # text in a currency column: kept, and counted
            "Comment": None,
        },
    ]
    assert summary.typed_fallbacks == 1


def test_the_number_formats_are_read_once_and_kept_in_the_watermark(server):
    h = _harness(server, "en_US", "Etc/UTC")
    h.run(RUN, sheet_name=TAB, typed_values=True, mapping_process=False)
    stored = h.stores.watermark(next(iter(h.stores.data)))
    assert stored.column_types == ["DATE_TIME", None, "NUMBER", "PERCENT", "BOOLEAN", "CURRENCY", None]
    server.append_rows(SPREADSHEET_ID, TAB, [[datetime(2026, 11, 6, 8, 0, 0), "Cy", 3, 1.0, True, 10, "hi"]])
    start = len(server.requests)
    h.run(RUN, sheet_name=TAB, typed_values=True, mapping_process=False)
    reads = [r.kind for r in server.requests[start:] if r.kind in ("spreadsheets.get", "values.batchGet")]
    assert reads == ["spreadsheets.get", "values.batchGet"], "no request for the formats: the watermark has them"
    assert json.loads(h.publisher.sent[0].value)["Share"] == 1


def test_typed_values_and_a_value_render_option_cannot_be_combined(server):
    h = _harness(server, "en_US", "Etc/UTC")
    with pytest.raises(SheetsConfigError, match="typed_values reads the cells' values and number formats itself"):
        h.run(RUN, sheet_name=TAB, typed_values=True, value_render_option="FORMULA", mapping_process=False)


def test_a_column_added_under_typed_values_does_not_make_published_rows_look_edited(server):
    h = _harness(server, "en_US", "Etc/UTC")
    h.run(RUN, sheet_name=TAB, typed_values=True, mapping_process=False)
    server.set_cell(SPREADSHEET_ID, TAB, 1, len(HEADER) + 1, "Status")
    server.set_cell(SPREADSHEET_ID, TAB, 3, len(HEADER) + 1, "done")
    h.run(RUN, sheet_name=TAB, typed_values=True, mapping_process=False)
    assert h.publisher.sent == []


def test_the_submission_time_is_each_records_kafka_timestamp(server):
    h = _harness(server, "de_DE", "Europe/Berlin")
    server.append_rows(SPREADSHEET_ID, TAB, [["", "No time", 1]])
    h.run(RUN, sheet_name=TAB, typed_values=True, mapping_process=False)
    stamps = [sent.timestamp for sent in h.publisher.sent]
    # 09:05:03 and 14:30:00 in Berlin (UTC+1 in November); the row without a timestamp: the publish time (0)
    assert stamps == [
        int(datetime(2026, 11, 5, 8, 5, 3, tzinfo=timezone.utc).timestamp() * 1000),
        int(datetime(2026, 11, 5, 13, 30, 0, tzinfo=timezone.utc).timestamp() * 1000),
        0,
    ]


def test_an_event_time_column_that_is_not_a_header_is_named(server):
    h = _harness(server, "en_US", "Etc/UTC")
    with pytest.raises(SheetsConfigError, match="event_time_column 'Submitted' is not a header of tab 'Responses'"):
        h.run(RUN, sheet_name=TAB, typed_values=True, event_time_column="Submitted", mapping_process=False)


def test_an_event_time_column_needs_typed_values(server):
    h = _harness(server, "en_US", "Etc/UTC")
    with pytest.raises(SheetsConfigError, match="event_time_column reads the column's date-times as serial numbers"):
        h.run(RUN, sheet_name=TAB, event_time_column="Timestamp", mapping_process=False)


def test_a_dead_letter_shows_the_rows_cells_typed_as_the_records_are(server, mapping_process):
    """A row with no key, under typed values: its dead letter has typed JSON cells (an ISO date-time, a number)."""
    h = _harness(server, "de_DE", "Europe/Berlin")
    server.set_cell(SPREADSHEET_ID, TAB, 3, 2, "")  # Bob's name, the key column
    dlq = "responses.dlq"
    summary = h.run(
        RUN,
        sheet_name=TAB,
        typed_values=True,
        key_column="Name",
        dead_letter_topic=dlq,
        mapping_process=mapping_process,
    )
    assert summary.rows_dead_lettered == 1
    (dead,) = [sent for sent in h.publisher.sent if sent.topic == dlq]
    assert json.loads(dead.value) == {
        "row": 3,
        "cells": ["2026-11-05T14:30:00+01:00", None, 5, 0.25, False, "about 10"],
        "error": "the key column 'Name' is empty",
    }
