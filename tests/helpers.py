"""Test helpers: read a whole topic back, and run the operator through ``dag.test()``."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class Message:
    key: str
    value: dict[str, Any] | None
    headers: dict[str, str]
    partition: int
    offset: int
    #: the record's timestamp in epoch ms, and whether it is a CreateTime (the producer's)
    timestamp: int = 0
    create_time: bool = False

    @property
    def row(self) -> int:
        return int(self.headers["sheets.row"])


def consume_all(
    bootstrap_servers: str,
    topic: str,
    expected: int | None = None,
    idle: float = 1.5,
    timeout: float = 60.0,
    decode: Any = None,
    **config: Any,
) -> list[Message]:
    """
    Every record of ``topic`` from offset 0, across all partitions, sorted by sheet row.

    Reads until no record arrives for ``idle`` seconds (not to the high watermarks: Tansu, the
    broker of a laptop without Java, reports wrong ones); with ``expected``, waits up to ``timeout`` for at
    least that many records first, then ``idle`` more to catch any extra (duplicate) record. Values
    are read as JSON, or with ``decode`` (a deserializer of the record's value bytes).
    """
    from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **config,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                waiting = expected is not None and len(out) < expected
                if not waiting and time.monotonic() - quiet_since >= idle:
                    break
                continue
            if msg.error():
                raise AssertionError(f"consumer error: {msg.error()}")
            quiet_since = time.monotonic()
            out.append(
                Message(
                    key=msg.key().decode("utf-8"),
                    value=None if msg.value() is None else (decode or _json)(msg.value()),  # None: a tombstone
                    headers={k: v.decode("utf-8") for k, v in (msg.headers() or [])},
                    partition=msg.partition(),
                    offset=msg.offset(),
                    timestamp=msg.timestamp()[1],
                    create_time=msg.timestamp()[0] == TIMESTAMP_CREATE_TIME,
                )
            )
        return sorted(out, key=lambda m: (m.row, m.partition, m.offset))
    finally:
        consumer.close()


def _json(value: bytes) -> Any:
    return json.loads(value.decode("utf-8"))


def latest_per_key(messages: list[Message]) -> dict[str, dict[str, Any]]:
    """What a consumer keeping the latest value per key holds (one key, one partition; a tombstone removes it)."""
    view: dict[str, dict[str, Any]] = {}
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        if message.value is None:
            view.pop(message.key, None)
        else:
            view[message.key] = message.value
    return view


def use_kafka(monkeypatch, bootstrap_servers: str, conn_id: str = "kafka_default") -> None:
    """Point the Airflow connection ``conn_id`` (type ``kafka``, from the environment) at these brokers."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": bootstrap_servers}}),
    )


@dataclass
class RunResult:
    state: str
    summary: dict[str, Any] | None
    run_id: str


def run_operator(task_id: str = "publish", dag_id: str = "sheets_it", **operator_kwargs: Any) -> RunResult:
    """
    Run one ``SheetToKafkaOperator`` with these arguments through ``dag.test()``; values are
    formatted (``typed_values=False``) unless asked, as the tests' expected records are the cells as
    the sheet shows them (the default, typed, is tested on its own).
    """
    from airflow.sdk import DAG

    from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

    operator_kwargs.setdefault("lease_settle", 0.2)
    operator_kwargs.setdefault("typed_values", False)
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
        SheetToKafkaOperator(task_id=task_id, **operator_kwargs)
    return run_dag(dag, task_id)


def run_dag(dag, task_id: str, **test_kwargs: Any) -> RunResult:
    dag_run = dag.test(**test_kwargs)
    ti = dag_run.get_task_instance(task_id)
    summary = ti.xcom_pull(task_ids=task_id) if ti is not None and ti.state == "success" else None
    return RunResult(state=str(dag_run.state), summary=summary, run_id=dag_run.run_id)


def get_xcom(dag_id: str, run_id: str, task_id: str, key: str) -> Any:
    """A task's XCom value read straight from the metadata DB (``None`` when absent)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        found = session.scalars(XComModel.get_many(run_id=run_id, key=key, task_ids=task_id, dag_ids=dag_id)).first()
        return None if found is None else XComModel.deserialize_value(found)


def get_variable(key: str) -> dict[str, Any] | None:
    """A Variable's JSON value read straight from the metadata DB (``None`` when absent)."""
    from airflow.models.variable import Variable

    value = Variable.get(key, default_var=None)
    return None if value is None else json.loads(value)
