"""
A page request that times out (Google's 504 at its 180 s limit, or the client's socket timeout) is
asked again for half the rows, a bounded number of times, through the unmodified ``GSheetsHook``.
"""

from __future__ import annotations

import logging
import socket
import uuid

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from airflow_provider_sheets.errors import SheetsAccessError
from airflow_provider_sheets.hooks.sheets import SHRINK_ATTEMPTS, SheetsConnection


def _tab(server, rows: int) -> str:
    spreadsheet_id = f"slow-{uuid.uuid4().hex[:8]}"
    server.create_spreadsheet(spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *forms_rows(rows)]}, row_count=rows + 1)
    return spreadsheet_id


def _page_spans(server, start: int) -> list[str]:
    return [r.query["ranges"][-1].split("!")[1] for r in server.requests[start:] if r.kind == "values.batchGet"]


def test_a_504_is_asked_again_for_half_the_rows_and_later_pages_keep_to_it(server, caplog):
    spreadsheet_id = _tab(server, 40)
    reader = accel.reader(SheetsConnection(api_endpoint=server.url))
    info = reader.describe(spreadsheet_id)
    start = len(server.requests)
    server.fail_next(504, count=1, path_regex="values:batchGet")  # Google's DEADLINE_EXCEEDED
    with caplog.at_level(logging.WARNING):
        header, pages = reader.read(info, 1, page_size=16)
        read = list(pages)
    assert header == FORMS_HEADER
    assert sum(len(page.rows) for page in read) == 40, "every row read"
    assert [(p.first_row, p.last_row) for p in read] == [(2, 9), (10, 17), (18, 25), (26, 33), (34, 41)]
    assert _page_spans(server, start) == ["A2:Z17", "A2:Z9", "A10:Z17", "A18:Z25", "A26:Z33", "A34:Z41"]
    assert "Reading 16 rows of tab 'Form Responses 1' from row 2 timed out (SheetsAccessError); asking again for 8" in (
        caplog.text
    )


def test_a_page_that_keeps_timing_out_fails_clearly(server):
    spreadsheet_id = _tab(server, 40)
    reader = accel.reader(SheetsConnection(api_endpoint=server.url))
    info = reader.describe(spreadsheet_id)
    server.fail_next(504, count=SHRINK_ATTEMPTS + 1, path_regex="values:batchGet")
    with pytest.raises(SheetsAccessError) as info_error:
        reader.read(info, 1, page_size=16)
    assert str(info_error.value) == (
        "reading rows 2..3 of tab 'Form Responses 1' timed out 4 times, the last time asking for 2 rows "
        "(SheetsAccessError). Lower page_size, or check the network to the Sheets API; the task can be retried."
    )


def test_another_error_is_not_retried_smaller(server):
    spreadsheet_id = _tab(server, 10)
    reader = accel.reader(SheetsConnection(api_endpoint=server.url))
    info = reader.describe(spreadsheet_id)
    server.fail_next(500, count=1, path_regex="values:batchGet")
    with pytest.raises(SheetsAccessError, match="HTTP 500"):
        reader.read(info, 1, page_size=16)


def test_a_client_socket_timeout_is_asked_again_for_half_the_rows(server, monkeypatch):
    """The Google client's socket timeout (60 s by default; 0.5 s here) on a request the server holds."""
    spreadsheet_id = _tab(server, 40)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.5)  # read by the Google client when it builds its HTTP object
    try:
        reader = accel.reader(SheetsConnection(api_endpoint=server.url))
        info = reader.describe(spreadsheet_id)
        hold = server.hold_next("values.batchGet", timeout=5.0, skip=1)  # the second page's request
        header, pages = reader.read(info, 1, page_size=16)
        read = list(pages)
        hold.release()
    finally:
        socket.setdefaulttimeout(previous)
    assert sum(len(page.rows) for page in read) == 40
    assert [(p.first_row, p.last_row) for p in read][:2] == [(2, 17), (18, 25)]
    assert reader.span_cap == 8
