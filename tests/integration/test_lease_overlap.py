"""The watermark lease's settle overlaps the describe and topic check, and still keeps runs apart
(on real Airflow Variables, in separate processes).

See :mod:`airflow_provider_sheets.adapters.lease`: a run claims the lease, describes the sheet and checks the
topic while the settle elapses, and confirms the claim before it reads the watermark or produces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from tests.conftest import REPO
from tests.helpers import consume_all, get_variable, run_operator

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


def _sheet(server, rows) -> str:
    sid = f"sheet-{uuid.uuid4().hex[:12]}"
    server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER, *rows]})
    return sid


class Timeline:
    """Records when the wrapped methods start and end (``time.monotonic()``), in call order."""

    def __init__(self, monkeypatch) -> None:
        self.monkeypatch = monkeypatch
        self.events: list[tuple[str, float, float]] = []

    def wrap(self, cls, name: str, label: str | None = None) -> None:
        original = getattr(cls, name)
        events = self.events

        def timed(*args, **kwargs):
            start = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                events.append((label or name, start, time.monotonic()))

        self.monkeypatch.setattr(cls, name, timed)

    def first(self, label: str) -> tuple[float, float]:
        return next((start, end) for name, start, end in self.events if name == label)

    def labels(self) -> list[str]:
        return [name for name, _, _ in sorted(self.events, key=lambda e: e[1])]


def test_the_settle_runs_while_the_sheet_is_described(connections, sheets_server, broker, topic, monkeypatch):
    """
    With a 0.3 s Sheets latency and a 0.5 s settle, the describe happens between the claim and its
    confirm: the confirm comes at the settle's end (not 0.3 s later), no earlier than 0.5 s after the
    claim was written, and before the watermark is read or any record produced.
    """
    from airflow_provider_sheets.adapters.lease import WatermarkLease
    from airflow_provider_sheets.adapters.publisher import Publisher
    from airflow_provider_sheets.adapters.variable_store import WatermarkStore
    from airflow_provider_sheets.hooks.sheets import SheetsReader

    settle, latency = 0.5, 0.3
    sid = _sheet(sheets_server, forms_rows(5))
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": connections["api_endpoint"],
        "watermark_key": f"lease-overlap.{sid}",  # known before the describe: claimed first
        "lease_settle": settle,
    }
    timeline = Timeline(monkeypatch)
    timeline.wrap(WatermarkLease, "claim")
    timeline.wrap(WatermarkLease, "confirm", "confirm-read")
    timeline.wrap(SheetsReader, "describe")
    timeline.wrap(Publisher, "check_topic")
    timeline.wrap(WatermarkStore, "get", "watermark-read")
    timeline.wrap(Publisher, "send_many", "produce")
    sheets_server.latency = latency
    try:
        result = run_operator(**kwargs)
    finally:
        sheets_server.latency = 0.0
    assert result.state == "success"
    assert result.summary["rows_published"] == 5

    order = timeline.labels()
    first = {label: order.index(label) for label in ("claim", "describe", "check_topic", "confirm-read")}
    assert first["claim"] < first["describe"] < first["check_topic"] < first["confirm-read"], order
    assert order.index("confirm-read") < order.index("watermark-read") < order.index("produce"), order

    _, claimed = timeline.first("claim")
    describe_start, describe_end = timeline.first("describe")
    confirm_start, confirm_end = timeline.first("confirm-read")
    assert describe_end - describe_start >= latency
    assert confirm_end - claimed >= settle, "the claim is read back no earlier than the settle's end"
    # in sequence (describe, then claim and settle) this would be >= settle + latency
    assert confirm_end - claimed < settle + latency - 0.1, timeline.events
    assert get_variable(f"lease-overlap.{sid}.lease") is None, "the lease is released"
    assert get_variable(f"lease-overlap.{sid}.lease.holder") is None


_RACER = """
import json, sys, time
from pathlib import Path

from airflow_provider_sheets.adapters.lease import WatermarkLease

spec = json.loads(sys.argv[1])
barrier = Path(spec["barrier"])
_get = WatermarkLease._get


class FirstRead:
    done = False


_claim = WatermarkLease.claim


def claim_together(self):
    # both runs start their first claim together (not counted in its read-to-write time)
    if not FirstRead.done:
        (barrier / spec["name"]).touch()
        deadline = time.monotonic() + 120
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.002)
    return _claim(self)


def read_then_wait(self, key):
    # each run writes its claim write_delay after reading it free: the first 0.04 s after, so the
    # other has read it free by then (the race the settle resolves)
    text = _get(self, key)
    if key == self.key and not FirstRead.done:
        FirstRead.done = True
        time.sleep(spec["write_delay"])
    return text


WatermarkLease.claim = claim_together
WatermarkLease._get = read_then_wait
from tests.helpers import run_operator

result = run_operator(dag_id=spec["dag_id"], **spec["kwargs"])
print("RACER-RESULT " + json.dumps({"state": result.state, "summary": result.summary}))
"""


@pytest.mark.parametrize("second", ["quick", "late"])
def test_two_runs_that_find_the_lease_free_together_publish_once(
    connections, sheets_server, broker, topic, tmp_path, second
):
    """
    Two DAGs on one watermark both read the lease free, then claim it (``lease_settle`` 0.3 s) and
    describe the sheet while it settles. When the second claim comes 0.06 s after the first
    (*quick*), it lands inside the first one's settle and wins. When it comes 0.56 s after (*late*),
    the first run has taken the lease, and the second claim, landed over its claim, finds the first
    run's holder record (or the first run's claim written back over it). Either way the other run
    waits, reads the watermark afresh and publishes nothing: every row is in the topic once.
    """
    total = 300
    sid = _sheet(sheets_server, forms_rows(total))
    key = f"lease-race.{sid}"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": connections["api_endpoint"],
        "watermark_key": key,
        "page_size": 100,
        "lease_settle": 0.3,
        "lease_wait": 120,
    }
    dags = (("first", "sheets_race_a", 0.04), ("last", "sheets_race_b", 0.1 if second == "quick" else 0.6))
    for _, dag_id, _ in dags:
        # the metadata DB rows the two processes would otherwise race to create (bundle, DAGs)
        assert run_operator(dag_id=dag_id, dry_run=True, **kwargs).state == "success"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = {}
    for name, dag_id, write_delay in dags:
        spec = {"barrier": str(barrier), "name": name, "dag_id": dag_id, "write_delay": write_delay, "kwargs": kwargs}
        racers[name] = subprocess.Popen(
            [sys.executable, "-c", _RACER, json.dumps(spec)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    sheets_server.latency = 0.05 if second == "quick" else 0.2
    outputs = {}
    try:
        for name, racer in racers.items():
            outputs[name], _ = racer.communicate(timeout=300)
    finally:
        sheets_server.latency = 0.0
        for racer in racers.values():
            if racer.poll() is None:
                racer.kill()
    results = {}
    for name, out in outputs.items():
        line = next((x for x in out.splitlines() if x.startswith("RACER-RESULT ")), None)
        assert line is not None, out[-3000:]
        results[name] = json.loads(line.removeprefix("RACER-RESULT "))
    assert sorted(os.listdir(barrier)) == ["first", "last"], "both runs read the lease before either claimed it"

    keys = [m.key for m in consume_all(broker.bootstrap_servers, topic, expected=total, idle=2.0)]
    assert len(keys) == len(set(keys)) == total, f"{len(keys) - len(set(keys))} rows published twice"

    winner, other = ("last", "first") if second == "quick" else ("first", "last")
    assert results[winner]["state"] == results[other]["state"] == "success", outputs[other][-3000:]
    assert results[winner]["summary"]["rows_published"] == total, outputs[winner][-3000:]
    winner_dag = "sheets_race_b" if second == "quick" else "sheets_race_a"
    assert f"Watermark leased by {winner_dag}/" in outputs[other], "the other run waited for the winner"
    assert results[other]["summary"]["watermark_before"] == total + 1, "the other read the watermark afresh"
    assert results[other]["summary"]["rows_published"] == 0

    assert get_variable(key)["last_row"] == total + 1
    assert get_variable(f"{key}.lease") is None
    assert get_variable(f"{key}.lease.holder") is None
