"""exactly_once delivery, on two real Kafka-protocol implementations, each for what it gets right.

librdkafka's built-in mock cluster (``test.mock.num.brokers``: real TCP brokers started
in-process) hides the records of an open transaction from ``read_committed`` consumers but never
fences an older producer epoch, and (librdkafka 2.16) shows records that reached it before their
transaction was aborted; the local Tansu broker fences (it refuses a zombie's records) but shows
aborted records to ``read_committed`` consumers. So commits, aborts of records still queued and the
checkpoint are tested on the mock cluster, and zombie fencing on Tansu.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import uuid

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from tests.conftest import REPO
from tests.helpers import consume_all, get_variable, run_operator

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def mock_cluster():
    """Bootstrap servers of a 3-broker mock cluster, kept alive by its host client."""
    from confluent_kafka import Producer

    handler = _Lines()
    logger = logging.getLogger(f"mock-cluster-{uuid.uuid4().hex[:6]}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    host = Producer({"test.mock.num.brokers": 3, "logger": logger, "debug": "mock", "log_level": 7})
    host.poll(0.5)
    found = [m.group(1) for line in handler.lines if (m := re.search(r"replaced with (\S+)", line))]
    assert found, "librdkafka did not report the mock cluster's address"
    yield found[0]
    host.flush(0)


@pytest.fixture
def eos(monkeypatch, mock_cluster, sheets_server):
    monkeypatch.setenv(
        "AIRFLOW_CONN_KAFKA_DEFAULT",
        json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": mock_cluster}}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps({"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True}}),
    )
    sid = f"sheet-{uuid.uuid4().hex[:12]}"
    topic = f"eos-{uuid.uuid4().hex[:8]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER, *forms_rows(8)]})
    _create_topics(mock_cluster, [topic, f"{topic}.state"])
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": sheets_server.url,
        "delivery": "exactly_once",
        "page_size": 3,
    }
    return mock_cluster, sid, topic, kwargs


def _create_topics(bootstrap: str, names: list[str]) -> None:
    """The mock cluster refuses CreateTopics but creates a topic that a metadata request names."""
    from confluent_kafka import Producer

    client = Producer({"bootstrap.servers": bootstrap})
    for name in names:
        assert client.list_topics(name, timeout=10).topics[name].partitions
    client.flush(0)


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
    bootstrap, sid, topic, kwargs = eos
    sheets_server.set_cell(sid, FORMS_TAB, 8, 3, "")  # row 8 has no Email: unmappable with key_column
    # the records before row 8 stay in the producer's queue until the abort: the mock cluster would
    # show any that reached it (see the module docstring)
    failed = run_operator(**kwargs, key_column="Email Address", producer_config={"linger.ms": 10_000})
    assert failed.state == "failed"
    assert _committed(bootstrap, topic) == [], "records produced before the abort stay invisible"
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
    An attempt stalls with its transaction open (its first Sheets read is held by the server, as
    by a network stall), its lease expires, and the next attempt of the same task publishes every
    row. When the zombie wakes up and produces, Kafka refuses it: the zombie fails as fenced and
    nothing of it is in the topic or the watermark. (The zombie is held before its first record
    because Tansu would show a fenced attempt's aborted records to read_committed consumers.)
    """
    total = 300
    sid = f"sheet-{uuid.uuid4().hex[:12]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER, *forms_rows(total)]})
    broker.create_topics([f"{topic}.state"], config={"cleanup.policy": "compact"})
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": connections["api_endpoint"],
        "delivery": "exactly_once",
        "page_size": 100,
        "lease_ttl": 2,
    }
    hold = sheets_server.hold_next("values.batchGet")
    zombie = subprocess.Popen(
        [sys.executable, "-c", _ZOMBIE, json.dumps(kwargs)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert hold.arrived.wait(120), "the first attempt never read the sheet"
        assert zombie.poll() is None

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

    rows = [m.row for m in _committed(connections["bootstrap.servers"], topic, expected=total)]
    assert rows == list(range(2, total + 2)), "every row once: nothing of the zombie reached the topic"
    key = retry.summary["watermark_key"]
    assert get_variable(key)["last_row"] == total + 1
    assert json.loads(_state(connections["bootstrap.servers"], f"{topic}.state")[key])["last_row"] == total + 1
