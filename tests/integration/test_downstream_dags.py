"""
The example downstream DAGs on the real scheduler: ``sheets_new_responses`` (scheduled on the
operator's asset events) runs after a publishing run and not after an empty one, and reads exactly
the published rows; ``sheets_watch_topic`` (an AssetWatcher on the topic, in the triggerer) runs for
new response records.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import quote

import pytest

import tests.airflow_server as harness
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows

airflow_server = harness.airflow_server
example_dag = harness.example_dag
airflow_log_on_failure = harness.airflow_log_on_failure

pytestmark = pytest.mark.integration

DOWNSTREAM = "sheets_new_responses"
WATCHER = "sheets_watch_topic"


def _finished_runs(server, dag_id: str) -> list[dict]:
    return [run for run in server.runs(dag_id) if run["state"] in harness.FINISHED]


def _wait_runs(server, dag_id: str, count: int, timeout: float = 120.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _finished_runs(server, dag_id)
        if len(runs) >= count:
            return runs
        time.sleep(1.0)
    raise AssertionError(
        f"{dag_id}: {len(_finished_runs(server, dag_id))} finished runs, not {count}\n{server.log_tail(80)}"
    )


def test_the_asset_scheduled_dag_runs_after_a_publishing_run_only(
    airflow_server, example_dag, sheets_server, broker, topic
):
    spreadsheet_id = f"down-{uuid.uuid4().hex[:8]}"
    rows = forms_rows(5)
    sheets_server.create_spreadsheet(spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *rows]})
    airflow_server.wait_dag(DOWNSTREAM)
    # unpaused once no scheduled run of the example DAG is due: only this test's runs emit events then
    example_dag.use(spreadsheet_id, topic)
    before = len(airflow_server.runs(DOWNSTREAM))
    airflow_server.unpause(DOWNSTREAM)
    try:
        published, summary = example_dag.run_and_wait()
        assert summary["rows_published"] == 5
        path = f"/dags/{harness.EXAMPLE_DAG}/dagRuns/{quote(published['dag_run_id'], safe='')}"
        links = airflow_server.get(f"{path}/taskInstances/{harness.EXAMPLE_TASK}/links")["extra_links"]
        assert links == {
            "Google Sheet": f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit#gid=0",
            "Topic": f"http://kafka-ui.test/ui/clusters/local/all-topics/{topic}",
        }
        (run,) = _wait_runs(airflow_server, DOWNSTREAM, before + 1)[before:]
        assert run["state"] == "success", airflow_server.describe_run(DOWNSTREAM, run["dag_run_id"])
        counted = airflow_server.xcom(DOWNSTREAM, run["dag_run_id"], "count_answers")
        expected: dict[str, int] = {}
        for row in rows:
            expected[str(row[3])] = expected.get(str(row[3]), 0) + 1
        # the run also reads the events of other tests' runs since its last run: theirs are other spreadsheets
        assert counted["how_did_you_hear_about_us"][spreadsheet_id] == expected, "exactly the published rows"
        assert counted["rows"] >= 5

        _, summary = example_dag.run_and_wait()  # nothing new
        assert summary["rows_published"] == 0
        time.sleep(15)  # the scheduler would have queued a run by now (it loops every second)
        assert len(airflow_server.runs(DOWNSTREAM)) == before + 1, "no run after an empty one"
    finally:
        airflow_server.pause(DOWNSTREAM)


def test_the_asset_watcher_dag_runs_for_new_response_records(airflow_server, example_dag, sheets_server, broker):
    """The triggerer's AwaitMessageTrigger on form-responses: a run whose event names a published row."""
    spreadsheet_id = f"watch-{uuid.uuid4().hex[:8]}"
    sheets_server.create_spreadsheet(spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *forms_rows(3)]})
    airflow_server.wait_dag(WATCHER)
    example_dag.use(spreadsheet_id, harness.WATCHED_TOPIC)
    before = len(airflow_server.runs(WATCHER))
    airflow_server.unpause(WATCHER)
    try:
        _, summary = example_dag.run_and_wait()
        assert summary["rows_published"] == 3
        runs = _wait_runs(airflow_server, WATCHER, before + 1, timeout=180)[before:]
        assert all(run["state"] == "success" for run in runs), airflow_server.log_tail(80)
        payloads = [p for run in runs for p in airflow_server.xcom(WATCHER, run["dag_run_id"], "note_new_response")]
        mine = [p for p in payloads if p["spreadsheet_id"] == spreadsheet_id]
        assert mine, payloads
        assert {p["row"] for p in mine} <= {2, 3, 4}
        assert all(p["topic"] == harness.WATCHED_TOPIC for p in mine)
    finally:
        airflow_server.pause(WATCHER)
