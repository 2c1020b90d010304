"""SheetNewRowsTrigger against a real local Sheets server, driven by asyncio; the probe's pure parts."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from airflow_provider_sheets.devkit.sheets_server import SheetsServer
from airflow_provider_sheets.errors import (
    SheetNotFoundError,
    SheetsAccessError,
    SheetsConfigError,
    SheetsQuotaError,
    SheetsToKafkaError,
    WatermarkError,
)
from airflow_provider_sheets.hooks.sheets import SheetInfo
from airflow_provider_sheets.pipeline.probe import MAX_TRANSIENT_FAILURES, count_filled, is_retryable, probe_range
from airflow_provider_sheets.triggers.sheet_rows import SheetNewRowsTrigger

CLASSPATH = "airflow_provider_sheets.triggers.sheet_rows.SheetNewRowsTrigger"
READ_KINDS = {"spreadsheets.get", "values.get", "values.batchGet"}


def _sheet(server: SheetsServer, data_rows: int, **kwargs) -> str:
    spreadsheet_id = f"sheet-{uuid.uuid4().hex[:12]}"
    server.create_spreadsheet(spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *forms_rows(data_rows)]}, **kwargs)
    return spreadsheet_id


def _trigger(server: SheetsServer, spreadsheet_id: str, after_row: int, **kwargs) -> SheetNewRowsTrigger:
    return SheetNewRowsTrigger(
        spreadsheet_id=spreadsheet_id,
        sheet_name=kwargs.pop("sheet_name", FORMS_TAB),
        after_row=after_row,
        poke_interval=kwargs.pop("poke_interval", 0.2),
        api_endpoint=server.url,
        **kwargs,
    )


def _first_event(trigger: SheetNewRowsTrigger, timeout: float = 20.0) -> dict:
    async def first():
        return await asyncio.wait_for(anext(trigger.run()), timeout)

    return asyncio.run(first()).payload


def _after_requests(server: SheetsServer, kind: str, count: int, action) -> threading.Thread:
    """Run ``action`` once the server has answered ``count`` requests of ``kind`` (a poll-exact timer)."""

    def wait_then_act() -> None:
        deadline = time.monotonic() + 20
        while server.request_count(kind) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def _later(delay: float, action) -> threading.Timer:
    timer = threading.Timer(delay, action)
    timer.start()
    return timer


# -- pure parts ----------------------------------------------------------------------------------------


def _info(row_count: int, column_count: int = 6) -> SheetInfo:
    return SheetInfo("id", "t", "Etc/UTC", 0, "Form Responses 1", row_count, column_count, ("Form Responses 1",))


@pytest.mark.parametrize(
    ("row_count", "after_row", "probe_rows", "expected"),
    [
        (1000, 1, 200, "'Form Responses 1'!A2:F201"),
        (1000, 999, 200, "'Form Responses 1'!A1000:F1199"),  # the end may pass the grid: the API clips it
        (1000, 1000, 200, None),  # the grid ends at the watermark: nothing to ask
        (1000, 1001, 200, None),
        (50_000, 49_990, 5, "'Form Responses 1'!A49991:F49995"),
    ],
)
def test_probe_range_is_bounded_by_probe_rows(row_count, after_row, probe_rows, expected):
    block = probe_range(_info(row_count), after_row, probe_rows)
    assert (None if block is None else str(block)) == expected


@pytest.mark.parametrize(
    ("rows", "expected"),
    [([], 0), ([[]], 0), ([["a"]], 1), ([["a"], [], ["", None], ["", "b"], [0]], 3), ([["", ""], []], 0)],
)
def test_count_filled_skips_blank_rows(rows, expected):
    assert count_filled(rows) == expected


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (SheetsQuotaError("429"), True),
        (SheetsAccessError("503"), True),
        (ConnectionRefusedError("refused"), True),
        (TimeoutError("slow"), True),
        (SheetNotFoundError("404"), False),
        (SheetsConfigError("400"), False),
        (WatermarkError("deleted rows"), False),
        (ValueError("bug"), False),
    ],
)
def test_is_retryable(error, retryable):
    assert is_retryable(error) is retryable


# -- serialisation ---------------------------------------------------------------------------------------


def test_serialize_round_trips():
    kwargs = {
        "spreadsheet_id": "1AbC",
        "sheet_name": "Form Responses 1",
        "after_row": 41,
        "min_rows": 3,
        "probe_rows": 50,
        "poke_interval": 30.0,
        "gcp_conn_id": "sheets",
        "api_endpoint": "http://127.0.0.1:8085",
        "impersonation_chain": ["a@p.iam.gserviceaccount.com", "b@p.iam.gserviceaccount.com"],
        "watermark_key": "wm",
        "not_before": 1_795_000_000.5,
        "sheets_quota_per_minute": 30,
    }
    classpath, serialized = SheetNewRowsTrigger(**kwargs).serialize()
    assert (classpath, serialized) == (CLASSPATH, kwargs)
    assert SheetNewRowsTrigger(**serialized).serialize() == (CLASSPATH, kwargs)


def test_serialize_fills_defaults_and_survives_airflow_serialisation():
    from airflow.models.trigger import Trigger
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize

    trigger = SheetNewRowsTrigger(spreadsheet_id="1AbC", sheet_name="Tab", after_row=1, min_rows=250)
    classpath, kwargs = trigger.serialize()
    assert kwargs["probe_rows"] == 250, "probe_rows defaults to max(min_rows, 200)"
    assert SheetNewRowsTrigger(spreadsheet_id="x", sheet_name="T", after_row=1).serialize()[1]["probe_rows"] == 200

    # the task runner's path (serde), as dag.test() and the triggerer use it
    through_serde = deserialize(serialize(kwargs))
    assert import_string(classpath)(**through_serde).serialize() == (classpath, kwargs)
    # the triggerer's table (kwargs encrypted in the row)
    row = Trigger.from_object(trigger)
    assert row.classpath == CLASSPATH
    assert import_string(row.classpath)(**row.kwargs).serialize() == (classpath, kwargs)


# -- against the local Sheets server -------------------------------------------------------------------


def test_fires_once_rows_are_appended_after_a_few_polls(server):
    sid = _sheet(server, 10)  # rows 2..11, grid of 1000 rows
    server.reset_stats()
    _after_requests(server, "values.batchGet", 2, lambda: server.append_rows(sid, FORMS_TAB, forms_rows(3, start=10)))
    started = time.monotonic()
    event = _first_event(_trigger(server, sid, after_row=11, min_rows=3))
    elapsed = time.monotonic() - started
    assert event["status"] == "success", event
    assert event["count"] == 3
    assert (event["spreadsheet_id"], event["sheet_name"], event["after_row"]) == (sid, FORMS_TAB, 11)
    assert event["polls"] == 3, "the rows came after two polls"
    assert elapsed >= 2 * 0.2, "each poll comes one poke_interval after the previous one"
    assert server.request_count("spreadsheets.get") == 1, "the tab is described once"
    assert server.request_count("values.batchGet") == event["polls"], "one values request per poll"
    assert {r.kind for r in server.requests} <= READ_KINDS


def test_first_poll_waits_until_not_before_and_a_late_restart_polls_at_once(server):
    """The sensor polled just before deferring and asks for the first poll one interval later."""
    sid = _sheet(server, 5)  # the rows are already there
    server.reset_stats()
    started = time.monotonic()
    trigger = _trigger(server, sid, after_row=1, poke_interval=30.0, not_before=time.time() + 1.0)
    event = _first_event(trigger)
    elapsed = time.monotonic() - started
    assert (event["status"], event["polls"]) == ("success", 1)
    assert elapsed >= 0.95, f"fired {elapsed:.2f} s after starting, before not_before"
    assert server.request_count("values.batchGet") == 1

    started = time.monotonic()  # the same trigger restarted (by the triggerer) after its not_before
    event = _first_event(SheetNewRowsTrigger(**trigger.serialize()[1]))
    assert event["status"] == "success"
    assert time.monotonic() - started < 5.0, "a restart after not_before does not wait another interval"


def test_waits_for_min_rows_and_counts_only_non_empty_rows(server):
    sid = _sheet(server, 4)  # rows 2..5
    server.append_rows(sid, FORMS_TAB, [forms_rows(1, start=4)[0]])  # row 6
    server.append_rows(sid, FORMS_TAB, [["", "", ""], forms_rows(1, start=5)[0]])  # row 7 blank, row 8 filled
    event = _first_event(_trigger(server, sid, after_row=5, min_rows=2))
    assert (event["status"], event["count"], event["polls"]) == ("success", 2, 1)

    asked = server.request_count("values.batchGet")
    one_more = forms_rows(1, start=6)
    _after_requests(server, "values.batchGet", asked + 1, lambda: server.append_rows(sid, FORMS_TAB, one_more))
    event = _first_event(_trigger(server, sid, after_row=5, min_rows=3))
    assert (event["status"], event["count"]) == ("success", 3)
    assert event["polls"] >= 2


def test_count_is_capped_at_the_probe_window(server):
    sid = _sheet(server, 40)
    event = _first_event(_trigger(server, sid, after_row=1, probe_rows=25))
    assert (event["status"], event["count"]) == ("success", 25)


def test_a_full_grid_is_described_again_and_no_values_are_asked(server):
    sid = _sheet(server, 5, row_count=6)  # the grid ends at the last row, like a Forms sheet
    server.reset_stats()
    _after_requests(server, "spreadsheets.get", 2, lambda: server.append_rows(sid, FORMS_TAB, forms_rows(2, start=5)))
    event = _first_event(_trigger(server, sid, after_row=6))
    assert (event["status"], event["count"]) == ("success", 2)
    assert event["polls"] == 3
    assert server.request_count("values.batchGet") == 1, "values are asked only once the grid has grown"
    assert server.request_count("spreadsheets.get") == event["polls"], "one metadata request per poll"


def test_running_twice_has_no_side_effects(server):
    sid = _sheet(server, 8)
    before = [list(row) for row in server.get_rows(sid, FORMS_TAB)]
    trigger = _trigger(server, sid, after_row=4)
    first, second = _first_event(trigger), _first_event(trigger)
    assert first == second
    assert first["count"] == 5
    assert server.get_rows(sid, FORMS_TAB) == before
    assert {r.kind for r in server.requests} <= READ_KINDS


def test_missing_spreadsheet_is_an_error_event(server):
    event = _first_event(_trigger(server, "no-such-sheet", after_row=1))
    assert event["status"] == "error"
    assert event["error_type"] == "SheetNotFoundError"
    assert "'no-such-sheet' was not found" in event["message"]
    assert "share the sheet" in event["message"]


def test_missing_tab_is_an_error_event_listing_the_tabs(server):
    sid = _sheet(server, 2)
    event = _first_event(_trigger(server, sid, after_row=1, sheet_name="Form Responses 2"))
    assert (event["status"], event["error_type"]) == ("error", "SheetNotFoundError")
    assert "tabs are: 'Form Responses 1'" in event["message"]


def test_rows_deleted_under_the_watermark_is_an_error_event(server):
    sid = _sheet(server, 10, row_count=20)  # rows 2..11 filled, grid of 20
    trigger = _trigger(server, sid, after_row=11, poke_interval=0.3)
    timer = _later(0.4, lambda: server.delete_rows(sid, FORMS_TAB, 2, 10))  # the grid shrinks to 10 rows
    try:
        event = _first_event(trigger)
    finally:
        timer.cancel()
    assert (event["status"], event["error_type"]) == ("error", "WatermarkError"), event
    assert "now has only 10 rows: rows were deleted" in event["message"]


def test_transient_errors_are_polled_through_then_reported(server):
    sid = _sheet(server, 3)
    server.fail_next(503, count=2)
    event = _first_event(_trigger(server, sid, after_row=1, poke_interval=0.05))
    assert (event["status"], event["count"], event["polls"]) == ("success", 3, 3)

    server.fail_next(503, count=100)
    try:
        event = _first_event(_trigger(server, sid, after_row=1, poke_interval=0.05))
    finally:
        server.clear_faults()
    assert (event["status"], event["error_type"], event["polls"]) == (
        "error",
        "SheetsAccessError",
        MAX_TRANSIENT_FAILURES,
    )
    assert "HTTP 503" in event["message"]


def test_a_slow_request_does_not_block_the_event_loop(server):
    sid = _sheet(server, 3)
    server.latency = 0.5  # every request: spreadsheets.get, then values:batchGet

    async def scenario():
        ticks: list[float] = []
        stop = asyncio.Event()

        async def ticker():
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.02)

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        event = await asyncio.wait_for(anext(_trigger(server, sid, after_row=1).run()), 10)
        elapsed = time.monotonic() - started
        stop.set()
        await ticking
        return event.payload, elapsed, ticks

    try:
        event, elapsed, ticks = asyncio.run(scenario())
    finally:
        server.latency = 0.0
    assert (event["status"], event["count"]) == ("success", 3)
    assert elapsed >= 1.0, "two requests of 0.5 s each"
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert len(ticks) >= 25, f"the ticker ran only {len(ticks)} times in {elapsed:.2f} s"
    assert max(gaps) < 0.25, f"the event loop was blocked for {max(gaps):.2f} s"


# -- the sensor's side of the contract ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_rows": 0}, "min_rows must be at least 1"),
        ({"header_row": 0}, "header_row must be at least 1"),
        ({"min_rows": 300, "probe_rows": 200}, "probe_rows must be an integer of at least min_rows"),
    ],
)
def test_sensor_rejects_bad_arguments_when_the_dag_is_parsed(kwargs, message):
    from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor

    with pytest.raises(SheetsConfigError, match=message):
        SheetNewRowsSensor(task_id="wait", spreadsheet_id="s", topic="t", **kwargs)


def test_sensor_probe_rows_default():
    from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor

    assert SheetNewRowsSensor(task_id="a", spreadsheet_id="s", topic="t").probe_rows == 200
    assert SheetNewRowsSensor(task_id="b", spreadsheet_id="s", topic="t", min_rows=500).probe_rows == 500


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        (
            {"status": "error", "error_type": "SheetNotFoundError", "message": "tab 'X' not found; tabs are: 'A'"},
            SheetNotFoundError,
            "failed: tab 'X' not found; tabs are: 'A'",
        ),
        (
            {"status": "error", "error_type": "WatermarkError", "message": "rows were deleted"},
            WatermarkError,
            "deleted",
        ),
        ({"status": "error", "error_type": "IndexError", "message": "boom"}, SheetsToKafkaError, "boom"),
        ({"status": "error", "error_type": "AirflowException", "message": "x"}, SheetsToKafkaError, "x"),
        (None, SheetsToKafkaError, "no usable event"),
        ({"status": "odd"}, SheetsToKafkaError, "no usable event"),
    ],
)
def test_execute_complete_raises_the_reported_error(event, error, message):
    from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor

    sensor = SheetNewRowsSensor(task_id="wait", spreadsheet_id="s", topic="t")
    with pytest.raises(error, match=message) as raised:
        sensor.execute_complete({}, event)
    assert type(raised.value) is error


def test_execute_complete_returns_the_count():
    from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor

    sensor = SheetNewRowsSensor(task_id="wait", spreadsheet_id="s", topic="t")
    assert sensor.execute_complete({}, {"status": "success", "count": 7, "after_row": 3, "polls": 2}) == 7


def test_a_probe_whose_range_names_a_renamed_tab_describes_again_and_counts(server):
    """
    The cached range names the first tab's old title (HTTP 400 from the whole batchGet): the probe
    describes the tab again and, the new range being valid, counts with it instead of raising.
    """
    from airflow_provider_sheets.hooks.sheets import SheetsConnection
    from airflow_provider_sheets.pipeline.probe import NewRowsProbe

    sid = _sheet(server, 3)
    probe = NewRowsProbe(SheetsConnection(api_endpoint=server.url).reader(), sid, None, probe_rows=50)
    assert probe.count(1) == 3
    server.rename_sheet(sid, FORMS_TAB, "Responses (renamed)")
    server.append_rows(sid, "Responses (renamed)", forms_rows(2, start=3))
    assert probe.count(1) == 5
    assert probe.tab().title == "Responses (renamed)"
