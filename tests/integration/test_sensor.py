"""SheetNewRowsSensor through ``dag.test()``: real Airflow DB, real Google client over HTTP to the local server."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from tests.helpers import run_operator

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

DAG_ID, TASK_ID = "sheets_sensor_it", "wait_rows"  # as in tests/dags/sheets_sensor_it.py
VALUES_KINDS = ("values.batchGet", "values.get")


@dataclass
class SensorRun:
    dag_state: str
    task_state: str
    count: Any


def run_sensor(**sensor_kwargs: Any) -> SensorRun:
    """Run one ``SheetNewRowsSensor`` with these arguments through ``dag.test()``."""
    from airflow.sdk import DAG

    from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor

    with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
        SheetNewRowsSensor(task_id=TASK_ID, **sensor_kwargs)
    dag_run = dag.test()
    ti = dag_run.get_task_instance(TASK_ID)
    count = ti.xcom_pull(task_ids=TASK_ID) if ti.state == "success" else None
    return SensorRun(dag_state=str(dag_run.state), task_state=str(ti.state), count=count)


@pytest.fixture
def google(monkeypatch, sheets_server):
    """An anonymous ``google_cloud_default`` connection for the local server; returns its URL."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"is_anonymous": True, "num_retries": 0, "sheets_quota_per_minute": 0},
            }
        ),
    )
    return sheets_server.url


def _sheet(server, data_rows: int, **kwargs) -> str:
    spreadsheet_id = f"sheet-{uuid.uuid4().hex[:12]}"
    server.create_spreadsheet(spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *forms_rows(data_rows)]}, **kwargs)
    return spreadsheet_id


def _set_watermark(key: str, last_row: int) -> None:
    from airflow.models.variable import Variable

    Variable.set(key, json.dumps({"last_row": last_row}))


def _values_requests(server) -> int:
    return sum(server.request_count(kind) for kind in VALUES_KINDS)


def _after_requests(server, count: int, action, kind: str = "spreadsheets.get", delay: float = 0.3) -> threading.Thread:
    """Run ``action`` ``delay`` seconds after the server has answered ``count`` requests of ``kind``."""

    def wait_then_act() -> None:
        deadline = time.monotonic() + 60
        while server.request_count(kind) < count:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        time.sleep(delay)
        action()

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("soft_fail", "task_state", "dag_state"), [(True, "skipped", "success"), (False, "failed", "failed")]
)
def test_no_new_rows_times_out(google, sheets_server, soft_fail, task_state, dag_state):
    sid = _sheet(sheets_server, 5)
    _set_watermark(f"sheets_to_kafka.{sid}.gid0.responses", 6)
    sheets_server.reset_stats()
    run = run_sensor(
        spreadsheet_id=sid, topic="responses", api_endpoint=google, poke_interval=0.2, timeout=2, soft_fail=soft_fail
    )
    assert (run.task_state, run.dag_state, run.count) == (task_state, dag_state, None)
    pokes = _values_requests(sheets_server)
    assert pokes >= 4, "it kept poking until the timeout"
    assert sheets_server.request_count("spreadsheets.get") == 1, "poke mode describes the tab once"


def test_rows_beyond_the_watermark_succeed_with_their_count(google, sheets_server):
    sid = _sheet(sheets_server, 10)  # rows 2..11
    _set_watermark(f"sheets_to_kafka.{sid}.gid0.responses", 7)  # the operator's default key
    sheets_server.append_rows(sid, FORMS_TAB, [["", ""], *forms_rows(2, start=10)])  # row 12 blank, 13-14 filled
    sheets_server.reset_stats()
    run = run_sensor(spreadsheet_id=sid, topic="responses", api_endpoint=google, min_rows=6, timeout=10)
    assert (run.task_state, run.count) == ("success", 6), "rows 8-11, 13 and 14"
    assert sheets_server.request_count("spreadsheets.get") == 1
    assert _values_requests(sheets_server) == 1


def test_without_a_watermark_rows_after_the_header_count(google, sheets_server):
    sid = _sheet(sheets_server, 4)
    run = run_sensor(spreadsheet_id=sid, topic="never-published", api_endpoint=google, timeout=10)
    assert (run.task_state, run.count) == ("success", 4)


@pytest.mark.parametrize(("probe_rows", "expected"), [(None, 200), (50, 50)])
def test_the_count_is_capped_at_the_probe_window(google, sheets_server, probe_rows, expected):
    sid = _sheet(sheets_server, 300)
    run = run_sensor(
        spreadsheet_id=sid, topic="t", api_endpoint=google, watermark_key=f"wm-{sid}", probe_rows=probe_rows, timeout=10
    )
    assert (run.task_state, run.count) == ("success", expected)


def test_poke_mode_waits_for_appended_rows(google, sheets_server):
    sid = _sheet(sheets_server, 3, row_count=50)
    _set_watermark(f"wm-{sid}", 4)
    sheets_server.reset_stats()
    appended = forms_rows(2, start=3)
    _after_requests(
        sheets_server, 1, lambda: sheets_server.append_rows(sid, FORMS_TAB, appended), "values.batchGet", 0.6
    )
    run = run_sensor(
        spreadsheet_id=sid,
        topic="t",
        sheet_name=FORMS_TAB,
        api_endpoint=google,
        watermark_key=f"wm-{sid}",
        min_rows=2,
        poke_interval=0.2,
        timeout=30,
    )
    assert (run.task_state, run.count) == ("success", 2)
    assert _values_requests(sheets_server) >= 3, "several pokes before the rows came"
    assert sheets_server.request_count("spreadsheets.get") == 1


def test_a_watermark_past_the_end_of_the_tab_fails_naming_the_fix(google, sheets_server, monkeypatch):
    from airflow_provider_sheets.errors import WatermarkError
    from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor

    sid = _sheet(sheets_server, 3, row_count=4)
    key = f"wm_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_VAR_{key.upper()}", json.dumps({"last_row": 9}))
    run = run_sensor(spreadsheet_id=sid, topic="t", api_endpoint=google, watermark_key=key, timeout=10)
    assert (run.task_state, run.dag_state) == ("failed", "failed")

    sensor = SheetNewRowsSensor(task_id="direct", spreadsheet_id=sid, topic="t", api_endpoint=google, watermark_key=key)
    with pytest.raises(WatermarkError, match=rf"Variable '{key}' says rows up to 9 are done, .* only 4 rows"):
        sensor.poke({})


def test_one_poke_is_one_values_request_whose_size_does_not_grow_with_the_sheet(google, sheets_server, monkeypatch):
    """Variables come from the environment here: the sensor is poked directly, outside a task."""
    from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor

    key = f"wm_probe_{uuid.uuid4().hex[:8]}"
    new_rows = forms_rows(3, start=7)
    sid = _sheet(sheets_server, 1000)
    sheets_server.append_rows(sid, FORMS_TAB, new_rows)  # rows 1002-1004
    monkeypatch.setenv(f"AIRFLOW_VAR_{key.upper()}", json.dumps({"last_row": 1001}))
    sensor = SheetNewRowsSensor(
        task_id="direct", spreadsheet_id=sid, topic="t", api_endpoint=google, watermark_key=key, min_rows=5
    )

    def poke() -> tuple[Any, int, int, int]:
        sheets_server.reset_stats()
        result = sensor.poke({})
        return result, sheets_server.request_count(), _values_requests(sheets_server), sheets_server.requests[-1]

    result, total, values, _ = poke()  # warm-up: resolves the tab
    assert (result.is_done, total, values) == (False, 2, 1)
    result, total, values, small = poke()
    assert (result.is_done, total, values) == (False, 1, 1), "after warm-up a poke is exactly one values request"
    assert small.kind == "values.batchGet"

    sheets_server.insert_rows(sid, FORMS_TAB, 1002, forms_rows(49_000, start=1000))  # 50,000 rows behind
    monkeypatch.setenv(f"AIRFLOW_VAR_{key.upper()}", json.dumps({"last_row": 50_001}))
    result, total, values, _ = poke()  # the cached grid ends before the watermark: described again
    assert (result.is_done, total, values) == (False, 2, 1)
    result, total, values, large = poke()
    assert (result.is_done, total, values) == (False, 1, 1)
    assert sheets_server.get_rows(sid, FORMS_TAB)[50_001:] == new_rows, "the same rows follow the watermark"
    assert large.response_bytes - small.response_bytes <= 4, (
        f"the response grew from {small.response_bytes} to {large.response_bytes} bytes "
        "(only the row numbers in the range may add digits)"
    )
    assert large.response_bytes < 2_000


def test_deferrable_sensor_fires_through_the_in_process_triggerer(google, sheets_server):
    sid = _sheet(sheets_server, 3)
    _set_watermark(f"wm-{sid}", 4)
    sheets_server.reset_stats()
    _after_requests(sheets_server, 2, lambda: sheets_server.append_rows(sid, FORMS_TAB, forms_rows(4, start=3)))
    run = run_sensor(
        spreadsheet_id=sid,
        topic="t",
        api_endpoint=google,
        watermark_key=f"wm-{sid}",
        min_rows=4,
        poke_interval=0.2,
        timeout=60,
        deferrable=True,
    )
    assert (run.task_state, run.count) == ("success", 4)
    # one description in the worker before deferring, one in the trigger
    assert sheets_server.request_count("spreadsheets.get") == 2
    assert _values_requests(sheets_server) >= 3


@pytest.mark.parametrize(("soft_fail", "task_state"), [(False, "failed"), (True, "skipped")])
def test_deferrable_sensor_fails_on_the_triggers_error_event(google, sheets_server, soft_fail, task_state):
    sid = _sheet(sheets_server, 10, row_count=20)
    _set_watermark(f"wm-{sid}", 11)
    sheets_server.reset_stats()
    # rows under the watermark are deleted while the trigger waits: it reports a WatermarkError
    _after_requests(sheets_server, 2, lambda: sheets_server.delete_rows(sid, FORMS_TAB, 2, 10))
    run = run_sensor(
        spreadsheet_id=sid,
        topic="t",
        api_endpoint=google,
        watermark_key=f"wm-{sid}",
        poke_interval=0.2,
        timeout=60,
        deferrable=True,
        soft_fail=soft_fail,
    )
    assert run.task_state == task_state
    assert sheets_server.request_count("spreadsheets.get") == 3, "worker, trigger, then the trigger's re-check"


def test_the_sensor_reads_the_watermark_the_operator_wrote(connections, sheets_server, topic):
    sid = _sheet(sheets_server, 5)
    published = run_operator(spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"])
    assert published.state == "success"
    assert published.summary["watermark_after"] == 6
    sheets_server.append_rows(sid, FORMS_TAB, forms_rows(3, start=5))
    run = run_sensor(spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"], min_rows=3, timeout=10)
    assert (run.task_state, run.count) == ("success", 3)

    run = run_sensor(
        spreadsheet_id=sid,
        topic=topic,
        api_endpoint=connections["api_endpoint"],
        min_rows=4,
        timeout=1,
        poke_interval=0.2,
        soft_fail=True,
    )
    assert run.task_state == "skipped", "only 3 rows follow the operator's watermark"


def test_reschedule_mode_describes_the_tab_on_every_poke(google, sheets_server):
    sid = _sheet(sheets_server, 3)
    _set_watermark(f"wm-{sid}", 4)
    sheets_server.reset_stats()

    def append() -> None:
        sheets_server.append_rows(sid, FORMS_TAB, forms_rows(1, start=3))

    _after_requests(sheets_server, 1, append, kind="values.batchGet", delay=1.5)
    run = run_sensor(
        spreadsheet_id=sid,
        topic="t",
        api_endpoint=google,
        watermark_key=f"wm-{sid}",
        mode="reschedule",
        poke_interval=1,
        timeout=60,
    )
    assert (run.task_state, run.count) == ("success", 1)
    pokes = _values_requests(sheets_server)
    assert pokes >= 2, "rescheduled at least once"
    assert sheets_server.request_count("spreadsheets.get") == pokes, "each rescheduled poke is a new instance"


def test_deferring_hands_the_watermark_and_the_timeout_to_the_trigger(google, sheets_server, monkeypatch):
    """Variables come from the environment here: the sensor runs directly, outside a task."""
    from datetime import timedelta

    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor

    sid = _sheet(sheets_server, 6)
    sheets_server.add_sheet(sid, "Other", [["a"], ["b"]])
    key = f"wm_defer_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_VAR_{key.upper()}", json.dumps({"last_row": 7}))
    sensor = SheetNewRowsSensor(
        task_id="direct",
        spreadsheet_id=sid,
        topic="t",
        api_endpoint=google,
        watermark_key=key,
        min_rows=2,
        probe_rows=30,
        poke_interval=45,
        timeout=600,
        deferrable=True,
    )
    sheets_server.reset_stats()
    checked = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert (deferred.value.method_name, deferred.value.timeout) == ("execute_complete", timedelta(seconds=600))
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "airflow_provider_sheets.triggers.sheet_rows.SheetNewRowsTrigger"
    not_before = kwargs.pop("not_before")
    assert checked + 45 <= not_before <= time.time() + 45, "the first poll one poke_interval after the check"
    assert kwargs == {
        "spreadsheet_id": sid,
        "sheet_name": FORMS_TAB,  # the first tab, resolved in the worker
        "after_row": 7,
        "min_rows": 2,
        "probe_rows": 30,
        "poke_interval": 45.0,
        "gcp_conn_id": "google_cloud_default",
        "api_endpoint": google,
        "impersonation_chain": None,
        "sheets_quota_per_minute": None,  # the connection's
        "watermark_key": key,
    }
    assert (sheets_server.request_count("spreadsheets.get"), _values_requests(sheets_server)) == (1, 1)

    sheets_server.append_rows(sid, FORMS_TAB, forms_rows(2, start=6))
    assert sensor.execute({}) == 2, "rows already there: no deferral"
