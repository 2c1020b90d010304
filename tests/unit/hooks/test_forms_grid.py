"""
A Forms responses tab: its grid is exactly its data and grows by one row per response. Idle checks
stay one request, no range starting past the grid is ever sent, and every new row is read.
"""

from __future__ import annotations

import uuid

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from airflow_provider_sheets.devkit.sheets_server import SheetsServer
from airflow_provider_sheets.hooks.sheets import SheetsConnection
from airflow_provider_sheets.pipeline.probe import NewRowsProbe

READS = ("spreadsheets.get", "values.get", "values.batchGet")


def _forms_tab(server: SheetsServer, responses: int) -> str:
    spreadsheet_id = f"forms-{uuid.uuid4().hex[:8]}"
    server.create_spreadsheet(
        spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *forms_rows(responses)]}, row_count=responses + 1
    )
    return spreadsheet_id


def _reads_since(server: SheetsServer, start: int) -> list[tuple[str, int]]:
    return [(r.kind, r.status) for r in server.requests[start:] if r.kind in READS]


def test_an_idle_operator_read_is_two_requests_and_asks_nothing_past_the_grid(server):
    spreadsheet_id = _forms_tab(server, 5)
    reader = accel.reader(SheetsConnection(api_endpoint=server.url))
    start = len(server.requests)
    info = reader.describe(spreadsheet_id)
    header, pages = reader.read(info, 6, check_row=6)  # every row published: the watermark is the grid's end
    assert (info.row_count, header, list(pages)) == (6, FORMS_HEADER, [])
    assert _reads_since(server, start) == [("spreadsheets.get", 200), ("values.batchGet", 200)]
    assert reader.checked_row is not None, "the last published row came back for the drift check"
    ranges = server.requests[-1].query["ranges"]
    assert all("!A7" not in r for r in ranges), ranges  # the row past the grid is never asked


def test_an_idle_probe_is_one_request_and_sees_each_inserted_row(server):
    spreadsheet_id = _forms_tab(server, 5)
    probe = NewRowsProbe(accel.reader(SheetsConnection(api_endpoint=server.url)), spreadsheet_id, None, 200)
    assert probe.count(6) == 0
    for _ in range(3):
        start = len(server.requests)
        assert probe.count(6) == 0
        assert _reads_since(server, start) == [("spreadsheets.get", 200)], "the grid ends at the watermark"
    server.append_rows(spreadsheet_id, FORMS_TAB, forms_rows(2, start=5))  # the grid grows with them
    start = len(server.requests)
    assert probe.count(6) == 2
    assert _reads_since(server, start) == [("spreadsheets.get", 200), ("values.batchGet", 200)]


def test_rows_inserted_between_reads_are_all_read(server):
    spreadsheet_id = _forms_tab(server, 3)
    reader = accel.reader(SheetsConnection(api_endpoint=server.url))
    last, seen = 1, []
    for added in (0, 1, 4, 0, 2):
        if added:
            server.append_rows(spreadsheet_id, FORMS_TAB, forms_rows(added, start=len(seen) + 3))
        info = reader.describe(spreadsheet_id)
        _, pages = reader.read(info, last, page_size=2)
        for page in pages:
            seen.extend(range(page.first_row, page.first_row + len(page.rows)))
        last = info.row_count
    assert seen == list(range(2, 2 + 3 + 1 + 4 + 2))
    assert all(status == 200 for _, status in _reads_since(server, 0)), "no request was refused"


def test_the_server_refuses_a_range_that_starts_past_the_grid_as_google_does(server):
    """The whole batchGet is a 400, so a reader that asked it would lose the header and the drift row too."""
    from airflow_provider_sheets.errors import SheetsConfigError
    from airflow_provider_sheets.model.a1 import A1Range

    spreadsheet_id = _forms_tab(server, 5)
    reader = accel.reader(SheetsConnection(api_endpoint=server.url))
    header = A1Range.rows(FORMS_TAB, 1, 1, 5)
    with pytest.raises(SheetsConfigError, match="exceeds grid limits"):
        reader.batch_get(spreadsheet_id, [header, A1Range.rows(FORMS_TAB, 7, 8, 5)])
