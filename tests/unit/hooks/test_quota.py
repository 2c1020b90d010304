"""The read budget: a sliding window (tables), and readers paced by it on a server that enforces Google's quota."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from airflow_provider_sheets.devkit.sheets_server import SheetsServer, busiest_window
from airflow_provider_sheets.errors import SheetsQuotaError
from airflow_provider_sheets.hooks.sheets import SheetsConnection
from airflow_provider_sheets.model.loop import LoopOptions
from airflow_provider_sheets.model.quota import SlidingWindow
from airflow_provider_sheets.pipeline.tab import mapper_for
from tests.unit.hooks.conftest import BUDGET, WINDOW


@pytest.mark.parametrize(
    ("made", "now", "delay"),
    [
        ([], 0.0, 0.0),
        ([0.0, 0.1, 0.2], 0.3, 0.0),  # under the budget
        ([0.0, 0.1, 0.2, 0.3], 0.4, 1.6),  # full: the oldest leaves the window at 2.0
        ([0.0, 0.1, 0.2, 0.3], 1.99, 0.01),  # the oldest leaves the window at 2.0 …
        ([0.0, 0.1, 0.2, 0.3], 2.0, 0.0),  # … and then one more fits
        ([0.0, 0.1, 0.2, 0.3], 5.0, 0.0),  # all out
        ([1.9, 1.95, 1.99, 2.0], 2.5, 1.4),  # a burst at the end of one minute still counts in the next
    ],
)
def test_a_sliding_window_never_holds_more_than_its_budget(made, now, delay):
    window = SlidingWindow(BUDGET, WINDOW)
    for moment in made:
        window.record(moment)
    assert window.delay(now) == pytest.approx(delay)


def test_a_sliding_window_counts_what_a_forked_child_saw():
    window = SlidingWindow(BUDGET, WINDOW)
    window.record(1.0)
    window.merge([0.5, 1.0, 1.5])
    assert list(window.times) == [0.5, 1.0, 1.5]
    assert window.used(1.6) == 3


@pytest.mark.parametrize("budget", [0, -1])
def test_a_budget_is_at_least_one_request(budget):
    with pytest.raises(ValueError, match="at least 1 request"):
        SlidingWindow(budget)


def _tab(server: SheetsServer, rows: int) -> str:
    spreadsheet_id = f"quota-{uuid.uuid4().hex[:8]}"
    # the grid ends with the data (as a Forms responses tab's does): no empty pages to read
    server.create_spreadsheet(spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *forms_rows(rows)]}, row_count=rows + 1)
    return spreadsheet_id


def _reader(server: SheetsServer, budget: int | None):
    return accel.reader(SheetsConnection(server.conn_id, server.url, sheets_quota_per_minute=budget))


def test_a_paced_read_larger_than_the_quota_gets_no_429_and_takes_the_quota_floor(quota_server, caplog):
    spreadsheet_id = _tab(quota_server, 20)
    reader = _reader(quota_server, BUDGET)
    started = time.monotonic()
    info = reader.describe(spreadsheet_id)
    header, pages = reader.read(info, 1, page_size=2)  # 1 describe + 10 pages of 2 rows (+ the header)
    rows = sum(len(page.rows) for page in pages)
    elapsed = time.monotonic() - started
    assert (header, rows) == (FORMS_HEADER, 20)
    assert quota_server.quota_rejections == 0
    assert len(quota_server.read_times) == reader.requests == 11
    assert busiest_window(quota_server.read_times, WINDOW) <= BUDGET
    floor = (reader.requests - BUDGET) / BUDGET * WINDOW  # the requests past the first budget, at its pace
    assert elapsed >= floor * 0.9
    assert "for Sheets read quota" in caplog.text


def test_without_pacing_the_same_read_meets_the_quota(quota_server):
    """The server really enforces it: the read fails with Google's 429 once the client retries are spent."""
    spreadsheet_id = _tab(quota_server, 20)
    reader = _reader(quota_server, 0)
    info = reader.describe(spreadsheet_id)
    _, pages = reader.read(info, 1, page_size=2)
    with pytest.raises(SheetsQuotaError, match="quota exhausted"):
        list(pages)
    assert quota_server.quota_rejections >= 1


def test_readers_of_one_connection_share_the_budget(quota_server):
    spreadsheet_id = _tab(quota_server, 2)
    first, second = _reader(quota_server, BUDGET), _reader(quota_server, BUDGET)
    assert first.pacer is second.pacer
    for _ in range(3):
        first.describe(spreadsheet_id)
        second.describe(spreadsheet_id)
    assert quota_server.quota_rejections == 0
    assert busiest_window(quota_server.read_times, WINDOW) <= BUDGET


@pytest.mark.skipif(not accel.forked.available(), reason="fork is not available on this platform")
def test_a_forked_readers_requests_count_against_the_task_processs_budget(quota_server):
    spreadsheet_id = _tab(quota_server, 8)
    reader = _reader(quota_server, BUDGET)
    info = reader.describe(spreadsheet_id)
    header, pages = reader.read(info, 1, page_size=2)
    mapper = mapper_for(header, 1, info, None, "header_row")

    class Sink:
        rows = 0

        def dead_letter(self, error, cells):
            raise AssertionError(error)

        def records(self, records):
            Sink.rows += len(records)

        def page_done(self, result):
            pass

    accel.publish_pages(pages, mapper, Sink(), LoopOptions(), accel.Switches(forked=True), reader)
    assert Sink.rows == 8
    assert len(reader.pacer.times()) == reader.requests == len(quota_server.read_times) == 5
    assert quota_server.quota_rejections == 0


def test_a_429_with_retry_after_is_waited_out_and_the_wait_logged(quota_server, caplog):
    """Unpaced, on a server that says Retry-After: each refusal is waited out as it asks, and the read completes."""
    quota_server.set_read_quota(BUDGET, WINDOW, retry_after=True)
    spreadsheet_id = _tab(quota_server, 20)
    reader = _reader(quota_server, 0)
    info = reader.describe(spreadsheet_id)
    _, pages = reader.read(info, 1, page_size=4)  # 1 describe + 5 pages: one refusal at least
    assert sum(len(page.rows) for page in pages) == 20
    assert quota_server.quota_rejections >= 1
    waits = [r.getMessage() for r in caplog.records if "with Retry-After: waiting" in r.getMessage()]
    assert len(waits) == quota_server.quota_rejections
    assert all("attempt 1 of 3" in w or "attempt 2 of 3" in w for w in waits)


@pytest.mark.parametrize(
    ("status", "header", "wait"),
    [(429, "3", (3.0, 3.3)), (429, "0", (0.0, 0.0)), (429, "999", (120.0, 132.0)), (429, None, None), (503, "3", None)],
    ids=["seconds", "zero", "capped", "absent", "not-a-429"],
)
def test_retry_after_tables(status, header, wait):
    import types

    from airflow_provider_sheets.hooks.sheets import retry_after

    headers = {"retry-after": header} if header is not None else {}
    response = types.SimpleNamespace(status=status, get=headers.get)
    got = retry_after(types.SimpleNamespace(resp=response))
    if wait is None:
        assert got is None
    else:
        assert wait[0] <= got <= wait[1]


@pytest.mark.parametrize(("extra", "budget"), [(None, 60), ("", 60), (30, 30), ("300", 300), (0, None)])
def test_the_budget_comes_from_the_connection_extra_when_not_given(monkeypatch, extra, budget):
    conn_id = f"google_{uuid.uuid4().hex[:8]}"
    fields = {"is_anonymous": True} | ({} if extra is None else {"sheets_quota_per_minute": extra})
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "google_cloud_platform", "extra": fields})
    )
    pacer = SheetsConnection(conn_id).reader().pacer
    assert (pacer.budget if pacer is not None else None) == budget


def test_an_unusable_budget_in_the_connection_names_it(monkeypatch):
    from airflow_provider_sheets.errors import SheetsConfigError

    conn_id = f"google_{uuid.uuid4().hex[:8]}"
    extra = {"is_anonymous": True, "sheets_quota_per_minute": "lots"}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
    )
    with pytest.raises(
        SheetsConfigError, match=f"sheets_quota_per_minute extra of connection '{conn_id}' must be an integer"
    ):
        _ = SheetsConnection(conn_id).reader().pacer
