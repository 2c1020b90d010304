"""
OpenLineage with the openlineage provider installed and its file transport: a run's COMPLETE event
carries the Google Sheet tab as input and the Kafka topic as output (OpenLineage's Kafka naming),
each with the header as a schema facet, and the rows published.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_TAB

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

SCRIPT = """
import json, sys
from tests.helpers import run_operator
spec = json.loads(sys.argv[1])
result = run_operator(**spec)
print("LINEAGE-RESULT " + json.dumps({"state": result.state}))
"""


def _events(path: Path, timeout: float = 60.0) -> list[dict]:
    """The events in the transport's file (the listener emits them from a process of its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        events = [json.loads(line) for line in lines if line.strip()]
        if any(e.get("eventType") in ("COMPLETE", "FAIL") and e["job"]["name"].endswith(".publish") for e in events):
            return events
        time.sleep(0.5)
    raise AssertionError(f"no COMPLETE or FAIL event in {path}: {path.read_text() if path.exists() else 'no file'}")


def _run(tmp_path: Path, spec: dict) -> tuple[str, list[dict]]:
    events = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "sheets-it",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(spec)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("LINEAGE-RESULT ")]
    state = json.loads(line.removeprefix("LINEAGE-RESULT "))["state"]
    return state, _events(events)


def test_a_run_emits_the_sheet_as_input_and_the_topic_as_output(connections, sheets_server, broker, topic, tmp_path):
    from datetime import datetime

    sid = f"lineage-{uuid.uuid4().hex[:8]}"
    rows = [[datetime(2026, 11, 5, 9, 5, 3), "Ann", 4], [datetime(2026, 11, 5, 9, 6, 0), "Bob", 5]]
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [["Timestamp", "Name", "Rating"], *rows]})
    state, events = _run(
        tmp_path,
        {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"], "typed_values": True},
    )
    assert state == "success"
    (complete,) = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".publish")]
    (sheet,) = complete["inputs"]
    (kafka,) = complete["outputs"]
    assert (sheet["namespace"], sheet["name"]) == (f"gsheets://{sid}", FORMS_TAB)
    server = broker.bootstrap_servers.split(",")[0]
    assert (kafka["namespace"], kafka["name"]) == (f"kafka://{server}", topic)
    schema = [(f["name"], f["type"]) for f in kafka["facets"]["schema"]["fields"]]
    assert schema == [("Timestamp", "date_time"), ("Name", "string"), ("Rating", "number")]
    assert sheet["facets"]["schema"] == kafka["facets"]["schema"]
    assert kafka["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assert f"https://docs.google.com/spreadsheets/d/{sid}/edit#gid=0" in sheet["facets"]["documentation"]["description"]


def test_a_failed_run_still_names_both_datasets(connections, sheets_server, broker, tmp_path):
    sid = f"lineage-fail-{uuid.uuid4().hex[:8]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [["Timestamp", "Name"], ["11/5/2026 9:05:03", "Ann"]]})
    missing = f"no-such-topic-{uuid.uuid4().hex[:6]}"
    state, events = _run(
        tmp_path, {"spreadsheet_id": sid, "topic": missing, "api_endpoint": connections["api_endpoint"]}
    )
    assert state == "failed"
    (failed,) = [e for e in events if e["eventType"] == "FAIL" and e["job"]["name"].endswith(".publish")]
    assert [(d["namespace"], d["name"]) for d in failed["inputs"]] == [(f"gsheets://{sid}", "")]
    assert [d["name"] for d in failed["outputs"]] == [missing]
