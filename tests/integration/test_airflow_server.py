"""
The example DAG and the operator under a real Airflow: scheduler, executor, triggerer, REST API, CLI.

Airflow (``airflow standalone``) starts once per session (``tests/airflow_server.py``); each test
uses a fresh spreadsheet on the local Sheets server and a fresh topic on the local broker, and
reads the results back from Kafka, the XCom summaries and the Variables.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import tests.airflow_server as harness
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from airflow_provider_sheets.model.position import default_watermark_key
from tests.airflow_server import EXAMPLE_DAG, EXAMPLE_TASK
from tests.helpers import consume_all, latest_per_key

# the session's Airflow (pytest finds fixtures by their module-level names)
airflow_server = harness.airflow_server
example_dag = harness.example_dag
airflow_log_on_failure = harness.airflow_log_on_failure

pytestmark = pytest.mark.integration


def new_sheet(sheets_server, rows, time_zone: str = "Etc/UTC") -> str:
    spreadsheet_id = f"it-{uuid.uuid4().hex[:10]}"
    sheets_server.create_spreadsheet(spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *rows]}, time_zone=time_zone)
    return spreadsheet_id


def rows_by_run(messages) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        out[message.headers["airflow.run_id"]].append(message.row)
    return {run_id: sorted(rows) for run_id, rows in out.items()}


def watermark(server, spreadsheet_id: str, topic: str) -> dict | None:
    # the first tab of a sheet on the local server has gid 0
    return server.get_json_variable(default_watermark_key(spreadsheet_id, 0, topic))


def test_scheduled_run_publishes_new_rows(airflow_server, example_dag, sheets_server, broker, topic):
    """Unpausing the example DAG makes the scheduler run the latest 15-minute interval (catchup=False)."""
    dag = airflow_server.dag(EXAMPLE_DAG)
    if not dag["is_paused"] or airflow_server.runs(EXAMPLE_DAG, run_type="scheduled"):
        # not the first use of the DAG in this session: bring it back new, so that unpausing schedules a run
        airflow_server.reset_dag(EXAMPLE_DAG)
    assert airflow_server.dag(EXAMPLE_DAG)["is_paused"] is True
    spreadsheet_id = new_sheet(sheets_server, forms_rows(12))
    airflow_server.set_variable("sheets_spreadsheet_id", spreadsheet_id)
    airflow_server.set_variable("sheets_topic", topic)
    unpaused_at = datetime.now(timezone.utc)
    try:
        airflow_server.unpause(EXAMPLE_DAG)
        deadline = time.monotonic() + 60
        scheduled = []
        while not scheduled and time.monotonic() < deadline:
            scheduled = sorted(
                airflow_server.runs(EXAMPLE_DAG, run_type="scheduled"), key=lambda r: r["data_interval_end"]
            )
            time.sleep(0.5)
        assert scheduled, f"no scheduled run within 60 s of unpausing\n{airflow_server.log_tail(60)}"
        run = airflow_server.wait_run(EXAMPLE_DAG, scheduled[0]["dag_run_id"])
    finally:
        example_dag.park()

    assert run["run_type"] == "scheduled"
    interval_end = datetime.fromisoformat(run["data_interval_end"].replace("Z", "+00:00"))
    assert interval_end <= unpaused_at, "catchup=False runs the latest finished interval"
    # the latest interval finished when the scheduler computed the DAG's next run: unpaused just
    # after a 15-minute boundary, that can still be the interval before the boundary
    just_before = unpaused_at - timedelta(minutes=15)
    assert interval_end >= just_before.replace(minute=just_before.minute // 15 * 15, second=0, microsecond=0)
    summary = airflow_server.xcom(EXAMPLE_DAG, run["dag_run_id"], EXAMPLE_TASK)
    assert summary["run_type"] == "scheduled"
    assert summary["mode"] == "incremental"
    assert summary["rows_published"] == 12

    messages = consume_all(broker.bootstrap_servers, topic, expected=12)
    assert [m.row for m in messages] == list(range(2, 14))
    assert {m.headers["airflow.run_id"] for m in messages} == {run["dag_run_id"]}
    assert {m.headers["airflow.run_type"] for m in messages} == {"scheduled"}
    assert messages[0].value["Name"] == forms_rows(1)[0][1]
    assert watermark(airflow_server, spreadsheet_id, topic)["last_row"] == 13


def _backfill_rows(zone: ZoneInfo, start: datetime) -> tuple[list[list[object]], list[datetime]]:
    """Responses around three 15-minute intervals from ``start`` (UTC), written in the sheet's zone."""
    offsets = [
        timedelta(minutes=-10),  # before the backfill
        timedelta(0),  # first instant of interval 0
        timedelta(minutes=7, seconds=1),
        timedelta(minutes=14, seconds=59),  # last second of interval 0
        timedelta(minutes=15),  # interval 1
        timedelta(minutes=22, seconds=30),
        timedelta(minutes=31),  # interval 2
        timedelta(minutes=44, seconds=59),
        timedelta(minutes=45),  # end of the range: excluded
        timedelta(hours=2),  # after
        timedelta(minutes=20),  # a late row at the bottom: interval 1, whatever its position
    ]
    moments = [start + offset for offset in offsets]
    if zone.utcoffset(start.replace(tzinfo=None)) != timedelta(0):
        # a cell showing an in-window UTC time as text is, in this zone, outside the window
        moments.append((start + timedelta(minutes=5)).replace(tzinfo=zone))
    rows = forms_rows(len(moments))
    for row, moment in zip(rows, moments, strict=True):
        row[0] = moment.astimezone(zone).replace(tzinfo=None)  # the sheet shows local wall-clock time
    return rows, moments


def _backfill_runs(airflow_server, before: set[str], count: int) -> list[dict]:
    """The ``count`` backfill runs of the example DAG not in ``before``, once they finished."""
    deadline = time.monotonic() + 60
    runs: list[dict] = []
    while len(runs) < count and time.monotonic() < deadline:
        runs = [r for r in airflow_server.runs(EXAMPLE_DAG, run_type="backfill") if r["dag_run_id"] not in before]
        time.sleep(0.5)
    assert len(runs) == count, runs
    return [airflow_server.wait_run(EXAMPLE_DAG, run["dag_run_id"], timeout=120) for run in runs]


@pytest.mark.parametrize(
    ("time_zone", "day"),
    [pytest.param("Etc/UTC", 2, id="utc"), pytest.param("America/New_York", 3, id="new-york")],
)
def test_backfill_publishes_each_interval_and_keeps_the_watermark(
    airflow_server, example_dag, sheets_server, broker, topic, time_zone, day
):
    zone = ZoneInfo(time_zone)
    start = datetime(2026, 11, day, 14, 0, tzinfo=timezone.utc)
    rows, moments = _backfill_rows(zone, start)
    spreadsheet_id = new_sheet(sheets_server, rows, time_zone=time_zone)
    intervals = [(start + timedelta(minutes=15 * i), start + timedelta(minutes=15 * (i + 1))) for i in range(3)]
    expected = [[row for row, moment in enumerate(moments, start=2) if lo <= moment < hi] for lo, hi in intervals]
    assert [len(e) for e in expected] == [3, 3, 2]  # the test's own arithmetic

    key = default_watermark_key(spreadsheet_id, 0, topic)
    live = json.dumps({"last_row": 4, "run_id": "live-before-backfill"})
    example_dag.use(spreadsheet_id, topic, quiet=60)
    airflow_server.set_variable(key, live)
    before = {r["dag_run_id"] for r in airflow_server.runs(EXAMPLE_DAG)}
    airflow_server.backfill(EXAMPLE_DAG, intervals[0][0], intervals[-1][0])
    by_start = {}
    for run in _backfill_runs(airflow_server, before, 3):
        by_start[datetime.fromisoformat(run["data_interval_start"].replace("Z", "+00:00"))] = run
    assert sorted(by_start) == [lo for lo, _ in intervals]
    example_dag.park()

    messages = consume_all(broker.bootstrap_servers, topic, expected=8)
    published = rows_by_run(messages)
    for (lo, hi), rows_expected in zip(intervals, expected, strict=True):
        run = by_start[lo]
        assert published.get(run["dag_run_id"]) == rows_expected, (lo, published)
        summary = airflow_server.xcom(EXAMPLE_DAG, run["dag_run_id"], EXAMPLE_TASK)
        assert summary["run_type"] == "backfill"
        assert summary["mode"] == "interval"
        assert summary["rows_published"] == len(rows_expected)
        assert datetime.fromisoformat(summary["interval_start"]) == lo
        assert datetime.fromisoformat(summary["interval_end"]) == hi
        assert summary["watermark_key"] == key
    assert len(messages) == 8, "rows outside the three intervals were published"
    assert {m.headers["airflow.run_type"] for m in messages} == {"backfill"}
    assert airflow_server.get_variable(key) == live, "a backfill moved the live watermark"
    assert airflow_server.get_variable(f"{key}.lease") is None
    assert airflow_server.get_variable(f"{key}.lease.holder") is None


def test_backfill_runs_emit_asset_events_once_the_topic_asset_exists(airflow_server, example_dag, sheets_server, topic):
    """A live run's event creates the topic's asset; the backfill runs after it, side by side, emit theirs."""
    start = datetime(2026, 11, 4, 14, 0, tzinfo=timezone.utc)
    rows, moments = _backfill_rows(ZoneInfo("Etc/UTC"), start)
    spreadsheet_id = new_sheet(sheets_server, rows, time_zone="Etc/UTC")
    example_dag.use(spreadsheet_id, topic, quiet=60)
    _, live = example_dag.run_and_wait()
    assert live["rows_published"] == len(rows)
    # created by the alias event, not by a DAG: not "active", so listed only with only_active=false
    (asset,) = airflow_server.get("/assets", uri_pattern=topic, only_active="false")["assets"]
    before = {r["dag_run_id"] for r in airflow_server.runs(EXAMPLE_DAG)}
    intervals = [(start + timedelta(minutes=15 * i), start + timedelta(minutes=15 * (i + 1))) for i in range(3)]
    airflow_server.backfill(EXAMPLE_DAG, intervals[0][0], intervals[-1][0])
    runs = _backfill_runs(airflow_server, before, 3)
    example_dag.park()
    events = airflow_server.get("/assets/events", asset_id=asset["id"], limit=100)["asset_events"]
    by_run = {event["source_run_id"]: event["extra"] for event in events}
    assert len(by_run) == 4, events  # the live run's and one per backfill run
    for lo, hi in intervals:
        (run,) = [r for r in runs if r["data_interval_start"].replace("Z", "+00:00") == lo.isoformat()]
        extra = by_run[run["dag_run_id"]]
        expected = sum(1 for moment in moments if lo <= moment < hi)
        assert (extra["backfill"], extra["run_type"], extra["rows_published"]) == (True, "backfill", expected)
        assert (extra["interval_start"], extra["interval_end"]) == (lo.isoformat(), hi.isoformat())


def test_manual_runs_dry_run_max_rows_then_incremental(airflow_server, example_dag, sheets_server, broker, topic):
    spreadsheet_id = new_sheet(sheets_server, forms_rows(10))  # rows 2..11
    example_dag.use(spreadsheet_id, topic, quiet=60)

    dry, summary = example_dag.run_and_wait({"dry_run": True})
    assert dry["conf"] == {"dry_run": True}
    assert summary["dry_run"] is True
    assert summary["rows_selected"] == 10
    assert summary["rows_published"] == 0
    assert consume_all(broker.bootstrap_servers, topic) == []
    assert watermark(airflow_server, spreadsheet_id, topic) is None

    capped, summary = example_dag.run_and_wait({"max_rows": 4})
    assert summary["rows_published"] == 4
    assert watermark(airflow_server, spreadsheet_id, topic)["last_row"] == 5

    plain, summary = example_dag.run_and_wait()
    assert plain["conf"] == {}
    assert summary["run_type"] == "manual"
    assert summary["mode"] == "incremental"
    assert summary["watermark_before"] == 5
    assert summary["rows_published"] == 6
    assert watermark(airflow_server, spreadsheet_id, topic)["last_row"] == 11
    example_dag.park()

    messages = consume_all(broker.bootstrap_servers, topic, expected=10)
    assert rows_by_run(messages) == {capped["dag_run_id"]: [2, 3, 4, 5], plain["dag_run_id"]: list(range(6, 12))}


def test_rows_deleted_above_the_watermark_are_reconciled_by_the_example_dag(
    airflow_server, example_dag, sheets_server, broker, topic
):
    """
    With ``sheets_fingerprint_topic`` set, the example DAG's ``on_drift`` is ``reconcile``: a plain run
    after spam was removed above the watermark makes the topic match the sheet; the *Reconcile* Param
    then finds nothing to do. On the real scheduler and API server.
    """
    prints = f"{topic}.fingerprints"
    broker.create_topics([prints], config={"cleanup.policy": "compact"})
    spreadsheet_id = new_sheet(sheets_server, forms_rows(8))  # rows 2..9
    example_dag.use(spreadsheet_id, topic, quiet=60)
    airflow_server.set_variable("sheets_fingerprint_topic", prints)
    try:
        _, summary = example_dag.run_and_wait()
        assert (summary["mode"], summary["rows_published"]) == ("incremental", 8)
        sheets_server.delete_rows(spreadsheet_id, FORMS_TAB, 3, 2)  # two responses removed: rows 2..7 remain
        _, summary = example_dag.run_and_wait()
        assert (summary["mode"], summary["rows_deleted"], summary["watermark_after"]) == ("reconcile", 2, 7)
        _, summary = example_dag.run_and_wait({"reconcile": True})
        assert (summary["mode"], summary["rows_published"], summary["rows_unchanged"]) == ("reconcile", 0, 6)
    finally:
        airflow_server.delete_variable("sheets_fingerprint_topic")
        example_dag.park()
    latest = latest_per_key(consume_all(broker.bootstrap_servers, topic))
    rows = sheets_server.get_rows(spreadsheet_id, FORMS_TAB)
    assert sorted(latest, key=int) == [str(row) for row in range(2, len(rows) + 1)]
    assert [latest[str(row)][FORMS_HEADER[1]] for row in range(2, len(rows) + 1)] == [r[1] for r in rows[1:]]


def test_manual_runs_full_refresh_and_start_row(airflow_server, example_dag, sheets_server, broker, topic):
    spreadsheet_id = new_sheet(sheets_server, forms_rows(8))  # rows 2..9
    example_dag.use(spreadsheet_id, topic, quiet=60)

    first, summary = example_dag.run_and_wait({"full_refresh": True})
    assert summary["mode"] == "full_refresh"
    assert watermark(airflow_server, spreadsheet_id, topic)["last_row"] == 9

    # from an earlier row: republishes, and the watermark does not move backwards
    again, summary = example_dag.run_and_wait({"start_row": 4, "max_rows": 2})
    assert summary["mode"] == "from_row"
    assert (summary["first_row"], summary["last_row"]) == (4, 5)
    assert watermark(airflow_server, spreadsheet_id, topic)["last_row"] == 9

    sheets_server.append_rows(spreadsheet_id, FORMS_TAB, forms_rows(2, start=8))  # rows 10, 11
    refresh, summary = example_dag.run_and_wait({"full_refresh": True})
    assert summary["rows_published"] == 10
    assert watermark(airflow_server, spreadsheet_id, topic)["last_row"] == 11
    example_dag.park()

    messages = consume_all(broker.bootstrap_servers, topic, expected=18)
    assert rows_by_run(messages) == {
        first["dag_run_id"]: list(range(2, 10)),
        again["dag_run_id"]: [4, 5],
        refresh["dag_run_id"]: list(range(2, 12)),
    }


@pytest.mark.parametrize(
    ("conf", "param", "reason"),
    [
        ({"max_rows": "lots"}, "max_rows", "is not of type"),
        ({"start_row": 1}, "start_row", "less than the minimum of 2"),
        ({"max_rows": 0}, "max_rows", "less than the minimum of 1"),
        ({"dry_run": "maybe"}, "dry_run", "is not of type"),
    ],
)
def test_invalid_conf_is_rejected_by_the_api(airflow_server, conf, param, reason):
    before = len(airflow_server.runs(EXAMPLE_DAG, run_type="manual"))
    response = airflow_server.trigger_response(EXAMPLE_DAG, conf)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert f"param {param}" in detail
    assert reason in detail
    assert len(airflow_server.runs(EXAMPLE_DAG, run_type="manual")) == before


def test_overlapping_runs_on_one_watermark(airflow_server, sheets_server, broker, topic):
    """Two DAGs on one tab and topic, triggered together: the lease lets one publish, the other none."""
    total = 3000
    spreadsheet_id = new_sheet(sheets_server, forms_rows(total))
    dags = ("sheets_race_a", "sheets_race_b")
    for dag_id in dags:
        airflow_server.wait_dag(dag_id)
        airflow_server.unpause(dag_id)
    conf = {"spreadsheet_id": spreadsheet_id, "topic": topic}
    sheets_server.latency = 0.1  # 30 pages: the first run is still publishing when the second starts
    try:
        runs = [airflow_server.trigger(dag_id, conf) for dag_id in dags]
        runs = [
            airflow_server.wait_run(dag_id, run["dag_run_id"], expect=None, timeout=180)
            for dag_id, run in zip(dags, runs, strict=True)
        ]
    finally:
        sheets_server.latency = 0.0

    messages = consume_all(broker.bootstrap_servers, topic, expected=total, timeout=60)
    keys = [m.key for m in messages]
    assert len(keys) == len(set(keys)) == total, f"{len(keys) - len(set(keys))} rows published twice"
    assert sorted(int(k) for k in keys) == list(range(2, total + 2))
    assert watermark(airflow_server, spreadsheet_id, topic)["last_row"] == total + 1
    for suffix in ("lease", "lease.holder"):
        assert airflow_server.get_variable(f"{default_watermark_key(spreadsheet_id, 0, topic)}.{suffix}") is None

    outcomes = {}
    for dag_id, run in zip(dags, runs, strict=True):
        log = airflow_server.task_log(dag_id, run["dag_run_id"], "publish")
        summary = airflow_server.xcom(dag_id, run["dag_run_id"], "publish") if run["state"] == "success" else None
        outcomes[dag_id] = (run["state"], summary, log)
    winners = [d for d, (state, s, _) in outcomes.items() if state == "success" and s["rows_published"] == total]
    assert len(winners) == 1, {d: (state, s) for d, (state, s, _) in outcomes.items()}
    (loser,) = set(dags) - set(winners)
    state, summary, log = outcomes[loser]
    if state == "success":
        # it waited for the lease, then found the watermark at the last row
        assert "Watermark leased by" in log, f"the runs did not overlap:\n{log}"
        assert summary["watermark_before"] == total + 1
        assert summary["rows_published"] == 0
    else:
        assert state == "failed"
        assert "WatermarkConflictError" in log, log


def test_deferrable_sensor_through_the_triggerer(airflow_server, sheets_server, broker, topic):
    """The sensor defers to the real triggerer, wakes up when 3 rows arrived, then the operator publishes."""
    spreadsheet_id = new_sheet(sheets_server, [])
    dag_id = "sheets_defer_it"
    airflow_server.wait_dag(dag_id)
    airflow_server.unpause(dag_id)
    run_id = airflow_server.trigger(dag_id, {"spreadsheet_id": spreadsheet_id, "topic": topic})["dag_run_id"]

    deadline = time.monotonic() + 60
    state = None
    while state != "deferred" and time.monotonic() < deadline:
        state = airflow_server.task_instance(dag_id, run_id, "wait_new_rows")["state"]
        assert state not in ("success", "failed", "up_for_retry"), airflow_server.describe_run(dag_id, run_id)
        time.sleep(0.5)
    assert state == "deferred", airflow_server.describe_run(dag_id, run_id)
    ti_id = airflow_server.task_instance(dag_id, run_id, "wait_new_rows")["id"]
    airflow_server.wait_executor_event(ti_id)  # Airflow's own race otherwise: see wait_executor_event

    sheets_server.append_rows(spreadsheet_id, FORMS_TAB, forms_rows(2))
    time.sleep(3)  # a few polls: two rows are fewer than min_rows=3
    assert airflow_server.task_instance(dag_id, run_id, "wait_new_rows")["state"] == "deferred"
    sheets_server.append_rows(spreadsheet_id, FORMS_TAB, forms_rows(1, start=2))

    airflow_server.wait_run(dag_id, run_id, timeout=90)
    assert airflow_server.xcom(dag_id, run_id, "wait_new_rows") == 3
    assert airflow_server.xcom(dag_id, run_id, "publish")["rows_published"] == 3
    messages = consume_all(broker.bootstrap_servers, topic, expected=3)
    assert [m.row for m in messages] == [2, 3, 4]
