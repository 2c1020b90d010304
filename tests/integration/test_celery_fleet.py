"""
The fleet DAG on Airflow's CeleryExecutor for real (see :mod:`tests.celery_airflow`): Redis and
PostgreSQL from Debian's packages, the scheduler, the dag-processor, the API server and two Celery
workers; 21 tabs in four spreadsheets (a ``"*"`` entry among hidden and chart tabs, a glob, a
non-ASCII tab) on the local Sheets server, which enforces Google's read quota and counts every read,
and the session's broker. One scheduled run of ``sheets_fleet``, during which the worker running
one tab's exactly-once task is SIGKILLed mid-read.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_sheets.devkit import postgres
from airflow_provider_sheets.devkit.sheets_server import busiest_window
from airflow_provider_sheets.model.position import default_watermark_key
from tests.celery_airflow import WORKERS, CeleryAirflow
from tests.conftest import require_or_skip
from tests.helpers import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DAG_ID = "sheets_fleet"
#: the fleet's read budget: the Sheets server refuses what goes beyond it, the tasks share it through Redis
QUOTA = 40
HEADER = ["Timestamp", "Name", "Rating"]


def _rows(count: int, tag: str) -> list[list[object]]:
    return [[f"11/5/2026 9:{i // 60:02d}:{i % 60:02d}", f"{tag}-{i}", i % 5 + 1] for i in range(count)]


def _postgres_database() -> str:
    """A PostgreSQL database of this test's own on the cluster scripts/services.sh started."""
    import psycopg2

    name = f"sheets_celery_{uuid.uuid4().hex[:8]}"
    try:
        postgres.admin(f'CREATE DATABASE "{name}"')
    except psycopg2.OperationalError as err:
        require_or_skip(False, f"PostgreSQL on {postgres.HOST}:{postgres.PORT} ({err})")
    return name


@pytest.fixture(scope="module")
def celery_airflow(broker, sheets_server, redis_server, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("celery-airflow")
    database = _postgres_database()
    airflow = CeleryAirflow(
        log_dir,
        broker.bootstrap_servers,
        sheets_server.url,
        postgres.url(database),
        f"redis://{redis_server.host}:{redis_server.port}",
        QUOTA,
    )
    try:
        yield airflow.start()
    finally:
        airflow.stop()
        postgres.admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


class Fleet:
    """The spreadsheets, tabs and topics of the test, and the catalogue that names them."""

    def __init__(self, sheets_server, broker) -> None:
        tag = uuid.uuid4().hex[:6]
        self.tabs: list[tuple[str, str, int, str, int]] = []  # spreadsheet, tab, gid, topic, rows
        self.catalogue: list[dict] = []
        self.server, self.broker = sheets_server, broker
        star, glob, named, kill = (f"fleet-{name}-{tag}" for name in ("star", "glob", "named", "kill"))
        self.topics = {name: f"celery-{name}-{tag}" for name in ("star", "glob", "named", "kill")}
        broker.create_topics(self.topics.values(), partitions=3)
        broker.create_topics([f"{self.topics['kill']}.state"], config={"cleanup.policy": "compact"})
        self._book(star, [f"Form Responses {i}" for i in range(1, 11)], self.topics["star"])
        sheets_server.add_sheet(star, "Archive", [HEADER, *_rows(3, "hidden")], hidden=True)
        sheets_server.add_sheet(star, "Chart 1", sheet_type="OBJECT")
        self._book(glob, [f"Signups {i}" for i in range(1, 9)], self.topics["glob"])
        sheets_server.add_sheet(glob, "Notes", [["not a form"], ["left out by the glob"]])
        self._book(named, ["설문 응답", "Réponses"], self.topics["named"])
        self.kill_sheet = kill
        self._book(kill, ["Form Responses 1"], self.topics["kill"], rows=60)
        endpoint = sheets_server.url
        self.catalogue = [
            {"spreadsheet_id": star, "sheet_name": "*", "topic": self.topics["star"], "api_endpoint": endpoint},
            {
                "spreadsheet_id": glob,
                "sheet_name": "Signups *",
                "topic": self.topics["glob"],
                "key_column": "Name",
                "api_endpoint": endpoint,
            },
            {
                "spreadsheet_id": named,
                "sheet_name": "설문 응답",
                "topic": self.topics["named"],
                "api_endpoint": endpoint,
            },
            {
                "spreadsheet_id": named,
                "sheet_name": "Réponses",
                "topic": self.topics["named"],
                "api_endpoint": endpoint,
            },
            {
                "spreadsheet_id": kill,
                "sheet_name": "Form Responses 1",
                "topic": self.topics["kill"],
                "delivery": "exactly_once",
                "page_size": 10,
                "api_endpoint": endpoint,
            },
        ]

    def _book(self, spreadsheet_id: str, titles: list[str], topic: str, rows: int | None = None) -> None:
        self.server.create_spreadsheet(spreadsheet_id, {titles[0]: [HEADER]}, title=spreadsheet_id)
        for index, title in enumerate(titles):
            count = rows or 3 + index % 4
            data = [HEADER, *_rows(count, f"{spreadsheet_id}/{title}")]
            gid = 0 if index == 0 else self.server.add_sheet(spreadsheet_id, title, data)
            if index == 0:
                self.server.set_rows(spreadsheet_id, title, data)
            self.tabs.append((spreadsheet_id, title, gid, topic, count))


def _scheduled_run(airflow: CeleryAirflow, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = airflow.runs(DAG_ID)
        if runs:
            return runs[0]
        time.sleep(1.0)
    raise AssertionError(f"no run of {DAG_ID} was scheduled\n{airflow.log_tail()}")


def _running_task(airflow: CeleryAirflow, run_id: str, map_index: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ti in airflow.task_instances(DAG_ID, run_id):
            if (ti["task_id"], ti["map_index"], ti["state"]) == ("publish", map_index, "running") and ti["hostname"]:
                return ti
        time.sleep(0.5)
    raise AssertionError(f"task publish[{map_index}] did not show its worker\n{airflow.log_tail()}")


def _report(request, line: str) -> None:
    """One line in the run's log, past pytest's capture."""
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        sys.stderr.write(f"\n== {line}\n")


def test_the_fleet_dag_on_two_celery_workers_keeps_the_quota_and_survives_a_killed_worker(
    celery_airflow, sheets_server, broker, request
):
    fleet = Fleet(sheets_server, broker)
    assert len(fleet.tabs) >= 20
    celery_airflow.set_variable("sheets_catalogue", json.dumps(fleet.catalogue, ensure_ascii=False))
    # the killed attempt stops on its third page, with two pages in its open transaction
    hold = sheets_server.hold_next("values.batchGet", timeout=600, skip=2, spreadsheet_id=fleet.kill_sheet)
    sheets_server.set_read_quota(QUOTA, 60.0)
    try:
        celery_airflow.unpause(DAG_ID)  # the scheduler creates the run of the last interval
        run_id = _scheduled_run(celery_airflow)["dag_run_id"]
        assert hold.arrived.wait(300), f"the exactly-once tab never read its third page\n{celery_airflow.log_tail()}"
        victim = _running_task(celery_airflow, run_id, map_index=len(fleet.tabs) - 1)
        killed = victim["hostname"]
        assert killed in WORKERS
        celery_airflow.kill_worker(killed)
        hold.release()
        run = celery_airflow.wait_run(DAG_ID, run_id, expect=None, timeout=600)  # a retry is expected
        celery_airflow.pause(DAG_ID)
        reads, rejected = list(sheets_server.read_times), sheets_server.quota_rejections
    finally:
        sheets_server.set_read_quota(None)
        sheets_server.clear_faults()

    assert run["state"] == "success", (
        celery_airflow.describe_run(DAG_ID, run_id, logs_of_successes=False) + "\n" + celery_airflow.log_tail()
    )
    publish = [ti for ti in celery_airflow.task_instances(DAG_ID, run_id) if ti["task_id"] == "publish"]
    assert len(publish) == len(fleet.tabs)
    assert {ti["state"] for ti in publish} == {"success"}
    assert {ti["hostname"] for ti in publish} == set(WORKERS), "the tasks ran on both workers"
    assert (
        fleet.topics["kill"]
        in next(ti for ti in publish if ti["map_index"] == victim["map_index"])["rendered_map_index"]
    )
    tries = celery_airflow.tries(DAG_ID, run_id, "publish", victim["map_index"])
    assert [t["hostname"] for t in tries] == [killed, next(w for w in WORKERS if w != killed)]

    # the quota: never more than QUOTA reads in a minute at the Sheets server, none refused
    _report(
        request,
        f"celery fleet: {len(fleet.tabs)} tabs, {len(reads)} Sheets reads, busiest minute {busiest_window(reads, 60.0)}"
        f" (quota {QUOTA}), {rejected} refused; {killed} killed, retried on {tries[-1]['hostname']}; run "
        f"{run['start_date']} .. {run['end_date']}",
    )
    # the Sheets server refuses (429) every read beyond QUOTA in 60 s: it refused none
    assert rejected == 0
    assert len(reads) > QUOTA, "the fleet read more than one minute's budget, so the shared window had to pace it"
    logs = Path(celery_airflow.env["AIRFLOW_HOME"], "logs", f"dag_id={DAG_ID}", f"run_id={run_id}")
    waited = [p for p in logs.rglob("*.log") if "for the fleet's Sheets read quota" in p.read_text(errors="replace")]
    assert waited, f"no task of the run logged a wait for the quota (logs in {logs})"

    # every row of every tab exactly once in its topic (read_committed), every watermark at its tab's end
    expected = Counter()
    for spreadsheet_id, title, gid, topic, rows in fleet.tabs:
        expected.update((topic, spreadsheet_id, title, row) for row in range(2, rows + 2))
        watermark = celery_airflow.get_json_variable(default_watermark_key(spreadsheet_id, gid, topic))
        assert watermark is not None, f"{spreadsheet_id}/{title}"
        assert watermark["last_row"] == rows + 1, f"{spreadsheet_id}/{title}"
    got = Counter()
    for topic in fleet.topics.values():
        total = sum(count for (t, *_), count in expected.items() if t == topic)
        committed = consume_all(
            broker.bootstrap_servers, topic, expected=total, **{"isolation.level": "read_committed"}
        )
        for message in committed:
            headers = message.headers
            got[
                (topic, headers["sheets.spreadsheet_id"], headers["sheets.sheet_name"], int(headers["sheets.row"]))
            ] += 1
    assert got == expected
