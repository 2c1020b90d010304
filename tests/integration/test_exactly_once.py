"""exactly_once delivery on Apache Kafka: a real transaction coordinator and ``read_committed`` consumers.

Every test here needs Apache Kafka (the session broker when Java is present, always in CI): the
stand-ins are wrong exactly here. Tansu shows aborted records to ``read_committed`` consumers, and
librdkafka's mock cluster never fences an older producer epoch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from tests.conftest import REPO, needs_apache_kafka
from tests.helpers import consume_all, get_variable, run_operator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("airflow_db"),
    needs_apache_kafka("read_committed must hide aborted records and an older producer epoch must be fenced"),
]

_COMPACTED = {"cleanup.policy": "compact"}


@pytest.fixture
def eos(connections, broker, sheets_server, topic):
    sid = f"sheet-{uuid.uuid4().hex[:12]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER, *forms_rows(8)]})
    broker.create_topics([f"{topic}.state"], config=_COMPACTED)
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": connections["api_endpoint"],
        "delivery": "exactly_once",
        "page_size": 3,
    }
    return broker.bootstrap_servers, sid, topic, kwargs


def _fail_after_sending(sheets_server, kwargs):
    """
    Run with ``key_column`` on a sheet where a later row has no key: slow pages (the Sheets server's
    latency) let the earlier pages' records reach the broker before that row fails the attempt.
    """
    sheets_server.latency = 0.3
    try:
        return run_operator(**kwargs, key_column="Email Address", producer_config={"linger.ms": 0})
    finally:
        sheets_server.latency = 0


def _committed(bootstrap: str, topic: str, expected: int | None = None):
    options = {"isolation.level": "read_committed"}
    return consume_all(bootstrap, topic, expected=expected, idle=2.0, timeout=30, **options)


def test_rows_and_checkpoint_commit_together(eos, sheets_server):
    bootstrap, sid, topic, kwargs = eos
    result = run_operator(**kwargs)
    assert result.state == "success"
    assert result.summary["delivery"] == "exactly_once"
    assert result.summary["rows_published"] == 8
    rows = [m.row for m in _committed(bootstrap, topic, expected=8)]
    assert rows == list(range(2, 10))
    key = result.summary["watermark_key"]
    state = _state(bootstrap, f"{topic}.state")
    assert json.loads(state[key])["last_row"] == 9
    assert get_variable(key)["last_row"] == 9


def test_crash_between_commit_and_variable_write_sends_no_duplicates(eos, sheets_server):
    from airflow.models.variable import Variable

    bootstrap, sid, topic, kwargs = eos
    first = run_operator(**kwargs)
    assert first.state == "success"
    key = first.summary["watermark_key"]
    # the state a worker killed right after commit_transaction leaves: Kafka has rows 2..9 and the
    # checkpoint, the Variable still says nothing was published
    Variable.delete(key)
    sheets_server.append_rows(sid, FORMS_TAB, forms_rows(2, start=8))
    second = run_operator(**kwargs)
    assert second.state == "success"
    assert (second.summary["watermark_before"], second.summary["first_row"]) == (9, 10)
    rows = [m.row for m in _committed(bootstrap, topic, expected=10)]
    assert rows == list(range(2, 12)), "no row twice: the checkpoint committed with the rows wins"
    assert get_variable(key)["last_row"] == 11


def test_failed_attempt_leaves_nothing_visible(eos, sheets_server):
    """Records that reached the broker before the abort are in the log, and invisible to read_committed."""
    bootstrap, sid, topic, kwargs = eos
    sheets_server.set_cell(sid, FORMS_TAB, 8, 3, "")  # row 8 has no Email: unmappable with key_column
    assert _fail_after_sending(sheets_server, kwargs).state == "failed"
    in_the_log = consume_all(bootstrap, topic, idle=1.0, **{"isolation.level": "read_uncommitted"})
    assert in_the_log, "the aborted attempt's records reached the broker (else this test proves nothing)"
    assert _committed(bootstrap, topic) == [], "records of an aborted transaction stay invisible"
    assert get_variable(f"sheets_to_kafka.{sid}.gid0.{topic}") is None


def _state(bootstrap: str, topic: str) -> dict[str, str]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "isolation.level": "read_committed"}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        latest: dict[str, str] = {}
        idle = 0
        while idle < 6:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                idle += 1
                continue
            latest[msg.key().decode()] = msg.value().decode()
        return latest
    finally:
        consumer.close()


def test_every_attempt_uses_the_same_transactional_id(eos, capfd):
    """The id Kafka fences zombies by is stable per (dag, task, spreadsheet, tab), across runs and retries."""
    bootstrap, sid, topic, kwargs = eos
    ids = []
    for _ in range(2):
        capfd.readouterr()
        assert run_operator(**kwargs).state == "success"
        log = "".join(capfd.readouterr())
        ids += re.findall(r"transaction open with transactional\.id (\S+) \(an older attempt", log)
    assert ids == [f"sheets-to-kafka.sheets_it.publish.{sid}.gid0"] * 2


_ZOMBIE = """
import json, sys
from tests.helpers import run_operator
result = run_operator(**json.loads(sys.argv[1]))
print("ZOMBIE-STATE", result.state, flush=True)
"""


def test_a_zombie_attempt_is_fenced_by_the_next_one(connections, broker, sheets_server, topic):
    """
    An attempt publishes its first page inside its transaction, then stalls (its second Sheets
    read is held by the server, as by a network stall); its lease expires and the next attempt of
    the same task publishes every row. When the zombie wakes up and produces, Kafka refuses it: the
    zombie fails as fenced, the records it had sent are aborted, and a ``read_committed`` consumer
    sees every row exactly once. A transactional id per attempt would let the zombie commit.
    """
    total = 300
    sid = f"sheet-{uuid.uuid4().hex[:12]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER, *forms_rows(total)]})
    broker.create_topics([f"{topic}.state"], config=_COMPACTED)
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": connections["api_endpoint"],
        "delivery": "exactly_once",
        "page_size": 100,
        "lease_ttl": 2,
        "producer_config": {"linger.ms": 0},
    }
    hold = sheets_server.hold_next("values.batchGet", skip=1)
    zombie = subprocess.Popen(
        [sys.executable, "-c", _ZOMBIE, json.dumps(kwargs)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    bootstrap = connections["bootstrap.servers"]
    try:
        assert hold.arrived.wait(120), "the first attempt never read its second page"
        assert zombie.poll() is None
        uncommitted = {"isolation.level": "read_uncommitted"}
        sent = consume_all(bootstrap, topic, expected=100, idle=0.5, timeout=30, **uncommitted)
        assert len(sent) >= 100, "the zombie's first page is in the log, inside its open transaction"

        retry = run_operator(**kwargs)  # waits out the zombie's lease, then fences it
        assert retry.state == "success"
        assert retry.summary["rows_published"] == total
    finally:
        hold.release()
        sheets_server.clear_faults()
    out, _ = zombie.communicate(timeout=120)
    assert "ZOMBIE-STATE failed" in out, out[-3000:]
    assert "ProducerFencedError" in out, out[-3000:]
    assert "this attempt was fenced" in out
    assert "transaction open with transactional.id sheets-to-kafka.sheets_it.publish." in out

    rows = [m.row for m in _committed(bootstrap, topic, expected=total)]
    assert rows == list(range(2, total + 2)), "every row once: nothing of the zombie is visible"
    everything = consume_all(bootstrap, topic, idle=1.0, **{"isolation.level": "read_uncommitted"})
    assert len(everything) >= total + 100, "the zombie's aborted records are in the log, just not visible"
    key = retry.summary["watermark_key"]
    assert get_variable(key)["last_row"] == total + 1
    assert json.loads(_state(bootstrap, f"{topic}.state")[key])["last_row"] == total + 1


def test_rebuild_ignores_aborted_records_and_ends_past_transaction_markers(eos, sheets_server):
    """
    The watermark rebuild reads to the real high watermarks of a transactional topic (the commit
    and abort markers take offsets past the last record) and counts only committed records: the
    rows of an aborted attempt are in the log but are not claimed.
    """
    from tests.integration.test_watermark_tools import _admin

    bootstrap, sid, topic, kwargs = eos
    assert run_operator(**kwargs).state == "success"  # rows 2..9 committed
    sheets_server.append_rows(sid, FORMS_TAB, [*forms_rows(3, start=8), ["2026-11-30 10:00:00", "no email"]])
    assert _fail_after_sending(sheets_server, kwargs).state == "failed"  # rows 10..12 sent, row 13 fails
    aborted = consume_all(bootstrap, topic, idle=1.0, **{"isolation.level": "read_uncommitted"})
    assert max(m.row for m in aborted) >= 10, "the aborted rows reached the log (else this proves nothing)"

    common = {k: kwargs[k] for k in ("spreadsheet_id", "topic", "api_endpoint")}
    assert _admin("reset", **common).summary["after"] is None
    rebuilt = _admin("rebuild", **common)
    assert rebuilt.state == "success"
    assert rebuilt.summary["after"] == 9, "the highest committed sheets.row, not an aborted one"
    assert rebuilt.summary["records_scanned"] == 8


def test_the_checkpoint_topic_really_compacts(connections, broker, sheets_server, topic):
    """
    ``cleanup.policy=compact`` honoured by the broker: after several exactly-once runs the
    checkpoint topic's log cleaner keeps only the newest checkpoint per key, and that is what the
    next run reads back (the Variable lost, as after a crash between commit and its write).
    """
    from airflow.models.variable import Variable

    sid = f"sheet-{uuid.uuid4().hex[:12]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER, *forms_rows(2)]})
    state = f"{topic}.state"
    eager = {
        "min.cleanable.dirty.ratio": "0.01",
        "segment.ms": "100",
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": "100",
    }
    broker.create_topics([state], partitions=1, config={**_COMPACTED, **eager})
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": connections["api_endpoint"],
        "delivery": "exactly_once",
    }
    runs = 5
    for run in range(runs):
        result = run_operator(**kwargs)
        assert result.state == "success"
        sheets_server.append_rows(sid, FORMS_TAB, forms_rows(1, start=2 + run))
    key = result.summary["watermark_key"]
    last_row = result.summary["last_row"]
    written = _end_offset(broker.bootstrap_servers, state)
    assert written >= 2 * runs, "one checkpoint and one commit marker per run were appended"

    deadline = time.monotonic() + 60
    while len(_checkpoints(broker.bootstrap_servers, state, key)) > 2:  # the active segment is never cleaned
        assert time.monotonic() < deadline, "the log cleaner never compacted the checkpoint topic"
        time.sleep(1)
    assert json.loads(_checkpoints(broker.bootstrap_servers, state, key)[-1])["last_row"] == last_row

    Variable.delete(key)
    resumed = run_operator(**kwargs)
    assert resumed.state == "success"
    assert (resumed.summary["watermark_before"], resumed.summary["first_row"]) == (last_row, last_row + 1)
    rows = [m.row for m in _committed(broker.bootstrap_servers, topic, expected=last_row)]
    assert rows == list(range(2, last_row + 2)), "every row once, resumed from the compacted checkpoint"


def _end_offset(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def _checkpoints(bootstrap: str, topic: str, key: str) -> list[str]:
    """Every record of ``key`` still in ``topic`` (after compaction), in offset order."""
    from airflow_provider_sheets.adapters.state_topic import scan_topic

    return [m.value().decode() for m in scan_topic({"bootstrap.servers": bootstrap}, topic) if m.key() == key.encode()]
