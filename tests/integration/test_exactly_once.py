"""exactly_once delivery, on librdkafka's built-in mock cluster.

The local Tansu broker has no working EndTxn, so the transactional path runs against the mock
cluster that librdkafka starts in-process (``test.mock.num.brokers``): real TCP brokers speaking
the Kafka protocol, with transactions and ``read_committed``. Its brokers do not enforce producer
epochs on produce, so zombie fencing itself cannot be observed here (see the README).
"""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
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
    failed = run_operator(**kwargs, key_column="Email Address")
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
