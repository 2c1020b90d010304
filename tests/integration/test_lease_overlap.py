"""The watermark lease costs a lone run no settle, overlaps the settle of runs claiming together
with the describe and topic check, and keeps runs apart.

See :mod:`airflow_provider_sheets.adapters.lease`: a run claims the lease, describes the sheet and
checks the topic, and confirms the claim (at once when no other run claims beside it, else once the
settle is over) before it reads the watermark or produces.
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


def _timed_run(monkeypatch, connections, sheets_server, topic, settle, latency, contended):
    """One run on a 5-row sheet with a Sheets latency, its calls timed; ``contended``: another run
    passes the lease's door whenever this one reads it back (as when runs start together)."""
    from airflow_provider_sheets.adapters.lease import WatermarkLease
    from airflow_provider_sheets.adapters.publisher import Publisher
    from airflow_provider_sheets.adapters.variable_store import WatermarkStore
    from airflow_provider_sheets.hooks.sheets import SheetsReader

    sid = _sheet(sheets_server, forms_rows(5))
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": connections["api_endpoint"],
        "watermark_key": f"lease-overlap.{sid}",  # known before the describe: claimed first
        "lease_settle": settle,
    }
    if contended:
        get = WatermarkLease._get
        monkeypatch.setattr(
            WatermarkLease, "_get", lambda self, key: "another-run/1" if key.endswith(".door") else get(self, key)
        )
    timeline = Timeline(monkeypatch)
    timeline.wrap(WatermarkLease, "claim")
    timeline.wrap(WatermarkLease, "confirm")
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
    first = {label: order.index(label) for label in ("claim", "describe", "check_topic", "confirm")}
    assert first["claim"] < first["describe"] < first["check_topic"] < first["confirm"], order
    assert order.index("confirm") < order.index("watermark-read") < order.index("produce"), order
    # (the door another run passed is that run's to clear)
    for suffix in ("lease", "lease.holder") + (() if contended else ("lease.door",)):
        assert get_variable(f"lease-overlap.{sid}.{suffix}") is None, f"the {suffix} Variable is left behind"
    return timeline


def test_a_run_no_other_run_claims_beside_goes_on_without_the_settle(
    connections, sheets_server, broker, topic, monkeypatch
):
    """
    Alone on its watermark, a run confirms the lease as soon as the topic is checked: no settle
    (0.5 s), only the Variable requests of the claim (real Airflow Variables in the metadata DB).
    """
    timeline = _timed_run(monkeypatch, connections, sheets_server, topic, settle=0.5, latency=0.0, contended=False)
    claim_start, claim_end = timeline.first("claim")
    confirm_start, confirm_end = timeline.first("confirm")
    assert confirm_end - confirm_start < 0.05, timeline.events
    assert confirm_end - claim_start < 0.5, "the whole claim, describe and topic check take less than a settle"


def test_the_settle_of_runs_claiming_together_runs_while_the_sheet_is_described(
    connections, sheets_server, broker, topic, monkeypatch
):
    """
    With another run passing the door, a 0.3 s Sheets latency and a 0.5 s settle, the describe
    happens between the claim and its confirm: the confirm comes at the settle's end (not 0.3 s
    later), no earlier than 0.5 s after the claim was written, and before the watermark is read or
    any record produced.
    """
    settle, latency = 0.5, 0.3
    timeline = _timed_run(monkeypatch, connections, sheets_server, topic, settle, latency, contended=True)
    _, claimed = timeline.first("claim")
    describe_start, describe_end = timeline.first("describe")
    _, confirm_end = timeline.first("confirm")
    assert describe_end - describe_start >= latency
    assert confirm_end - claimed >= settle, "the claim is read back no earlier than the settle's end"
    # in sequence (describe, then claim and settle) this would be >= settle + latency
    assert confirm_end - claimed < settle + latency - 0.1, timeline.events


_RACER = """
import json, sys, time
from pathlib import Path

from airflow_provider_sheets.adapters.lease import WatermarkLease

spec = json.loads(sys.argv[1])
barrier = Path(spec["barrier"])
_get = WatermarkLease._get


class FirstRead:
    done = False


def read_after_both_read(self, key):
    # both runs read the claim (free) before either writes its own: the race the lease resolves
    value = _get(self, key)
    if key == self.key and not FirstRead.done:
        FirstRead.done = True
        (barrier / spec["name"]).touch()
        deadline = time.monotonic() + 120
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(spec["write_delay"])
    return value


WatermarkLease._get = read_after_both_read
from tests.helpers import run_operator

result = run_operator(dag_id=spec["dag_id"], **spec["kwargs"])
print("RACER-RESULT " + json.dumps({"state": result.state, "summary": result.summary}))
"""


def test_two_runs_that_find_the_lease_free_together_publish_once(connections, sheets_server, broker, topic, tmp_path):
    """
    Two DAGs on one watermark both read the lease free, then claim it 0.15 s apart (inside the
    0.5 s settle) and describe the sheet. One goes on (the last through the door at once, or, if
    its claim was too slow for that, the later claim after the settle); the other waits for it,
    reads the watermark afresh and publishes nothing. Every row is in the topic once.
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
        "lease_settle": 0.5,
        "lease_wait": 120,
    }
    dags = (("first", "sheets_race_a", 0.0), ("last", "sheets_race_b", 0.15))
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
    sheets_server.latency = 0.05
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

    assert {name: result["state"] for name, result in results.items()} == {"first": "success", "last": "success"}
    (winner,) = (name for name, result in results.items() if result["summary"]["rows_published"] == total)
    (loser,) = {"first", "last"} - {winner}
    # (the loser either waited for the winner, or its claim was read back once the winner was done)
    assert "at once: no other run was claiming it" not in outputs[loser], "both runs took the fast path"
    assert results[loser]["summary"]["watermark_before"] == total + 1, "and read the watermark afresh"
    assert results[loser]["summary"]["rows_published"] == 0

    assert get_variable(key)["last_row"] == total + 1
    for suffix in ("lease", "lease.holder", "lease.door"):
        assert get_variable(f"{key}.{suffix}") is None
