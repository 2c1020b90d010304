"""
For DAGs downstream of the operator: read back exactly the rows a run published, as its asset event
names them, whatever the value format.

:func:`read_published` takes the events that woke a run, each an asset URI
(``kafka://<server>/<topic>``) and ``extra`` (``spreadsheet_id``, ``sheet_id``, ``first_row``,
``last_row``, ``rows_published``, ``value_format``), and consumes each topic once with a consumer
group of the caller's, keeping the records of those spreadsheets, tabs and row ranges (by their
``sheets.*`` headers; ``read_committed``, so an aborted exactly-once attempt is never read) until it
has every event's ``rows_published``; it commits the group's offsets then, just past those records,
so the next call starts after them. :func:`read_published_rows` does it for one event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_sheets.adapters.kafka_config import client_config
from airflow_provider_sheets.errors import KafkaPublishError
from airflow_provider_sheets.model.formats import CONNECT_JSON, REGISTRY_FORMATS


def topic_of(uri: str) -> str:
    """The topic of a ``kafka://<server>/<topic>`` asset URI."""
    parts = urlsplit(uri)
    if parts.scheme != "kafka" or not parts.path.strip("/"):
        raise ValueError(f"not a kafka://<server>/<topic> asset URI: {uri!r}")
    return parts.path.strip("/")


def value_decoder(value_format: str, topic: str, schema_registry_conn_id: str = "schema_registry_default") -> Callable:
    """How a consumer reads a record's value: JSON (a Connect envelope's payload), or confluent-kafka's deserializer."""
    if value_format == CONNECT_JSON:
        return lambda value: json.loads(value)["payload"]
    if value_format not in REGISTRY_FORMATS:
        return json.loads
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from airflow_provider_sheets.hooks.registry import SchemaRegistryHook

    client = SchemaRegistryHook(schema_registry_conn_id).get_conn()
    if value_format == "avro":
        deserializer: Any = AvroDeserializer(client)
    else:
        deserializer = JSONDeserializer(None, schema_registry_client=client)
    context = SerializationContext(topic, MessageField.VALUE)
    return lambda value: deserializer(value, context)


def published_events(triggering_asset_events: Mapping[Any, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """
    The ``(asset URI, extra)`` of each distinct event that woke a run: Airflow lists an event that
    came through an alias under the asset and under the alias, so each is kept once, in time order.
    """
    seen: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
    for events in (triggering_asset_events or {}).values():
        for event in events:
            source = (event.source_dag_id, event.source_run_id, event.source_task_id, event.source_map_index)
            seen.setdefault((event.asset.uri, *source, event.timestamp), (event.asset.uri, dict(event.extra)))
    return [seen[key] for key in sorted(seen, key=lambda key: key[-1])]


def _wanted(headers: Any, extra: Mapping[str, Any]) -> int | None:
    """The record's sheet row when it is one of the event's rows, else ``None``."""
    found = {key: (value or b"").decode() for key, value in headers or []}
    if found.get("sheets.spreadsheet_id") != str(extra["spreadsheet_id"]):
        return None
    if found.get("sheets.sheet_id") != str(extra["sheet_id"]) or "sheets.row" not in found:
        return None
    row = int(found["sheets.row"])
    return row if int(extra["first_row"]) <= row <= int(extra["last_row"]) else None


def _format_of(extra: Mapping[str, Any]) -> str:
    """The value format an event's records are in."""
    return str(extra.get("value_format") or "json")


def _expected_rows(extra: Mapping[str, Any]) -> int:
    """
    How many rows of its range an event's records hold values for: a reconcile's tombstones
    (``rows_deleted``, for rows past the range) hold none, and a row published twice counts once.
    """
    published = int(extra.get("rows_published") or 0) - int(extra.get("rows_deleted") or 0)
    return min(published, int(extra["last_row"]) - int(extra["first_row"]) + 1) if published > 0 else 0


def read_published_rows(
    uri: str,
    extra: Mapping[str, Any],
    group_id: str,
    kafka_config_id: str = "kafka_default",
    timeout: float = 120.0,
) -> list[Any]:
    """The values of the rows one asset event says were published (:func:`read_published`)."""
    return read_published([(uri, extra)], group_id, kafka_config_id, timeout)[0]


def read_published(
    events: Sequence[tuple[str, Mapping[str, Any]]],
    group_id: str,
    kafka_config_id: str = "kafka_default",
    timeout: float = 120.0,
) -> list[list[Any]]:
    """
    The values of the rows each ``(asset URI, extra)`` event says were published, in row order (the
    latest record of a row read twice), one list per event. Each topic is read once for all its
    events, from the group's committed offsets (the start of each partition for a new group) until
    every event has its rows or the partitions' ends as they were at the start; the group's offset
    of a partition is then committed just past the last record of these events in it, so that a
    later event's records (published after them) are read by the next call.
    :class:`KafkaPublishError` when an event's rows are not all there.
    """
    by_topic: dict[str, list[int]] = {}
    for index, (uri, _) in enumerate(events):
        by_topic.setdefault(topic_of(uri), []).append(index)
    found: list[list[Any]] = [[] for _ in events]
    for topic, indexes in by_topic.items():
        rows = _read_topic(topic, [events[i][1] for i in indexes], group_id, kafka_config_id, timeout)
        for index, event_rows in zip(indexes, rows, strict=True):
            found[index] = [event_rows[row] for row in sorted(event_rows)]
    return found


def _read_topic(
    topic: str, extras: list[Mapping[str, Any]], group_id: str, kafka_config_id: str, timeout: float
) -> list[dict[int, Any]]:
    from confluent_kafka import Consumer

    formats = {_format_of(extra) for extra in extras}
    decoders = {value_format: value_decoder(value_format, topic) for value_format in formats}
    config = {**client_config(kafka_config_id), "group.id": group_id, "enable.auto.commit": False}
    config.update({"isolation.level": "read_committed"})
    consumer = Consumer(config)
    try:
        reading = _TopicRead(consumer, topic, timeout)
        rows = reading.rows(extras, decoders)
        for extra, event_rows in zip(extras, rows, strict=True):
            expected = _expected_rows(extra)
            if len(event_rows) < expected:
                raise KafkaPublishError(
                    f"topic {topic!r} holds {len(event_rows)} of the {expected} rows "
                    f"{extra['first_row']}-{extra['last_row']} the asset event names after the committed offsets of "
                    f"consumer group {group_id!r} ({reading.read} records read to the end): were they published "
                    f"to another topic, deleted by the topic's retention, or did the group already read past them?"
                )
        reading.commit()
    finally:
        consumer.close()
    return rows


class _TopicRead:
    """A group's read of a topic from its committed offsets to the ends the partitions have now (manual assignment)."""

    def __init__(self, consumer: Any, topic: str, timeout: float) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self.consumer, self.deadline, self.read = consumer, time.monotonic() + timeout, 0
        metadata = consumer.list_topics(topic, timeout=timeout)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise KafkaPublishError(f"topic {topic!r} cannot be read: {metadata.topics.get(topic)}")
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.topics[topic].partitions)]
        committed = self._retrying(lambda: consumer.committed(partitions, timeout=timeout))
        self.start = [
            TopicPartition(topic, c.partition, c.offset if c.offset >= 0 else OFFSET_BEGINNING) for c in committed
        ]
        self.ends = {p.partition: consumer.get_watermark_offsets(p, timeout=timeout)[1] for p in partitions}
        self.next = {c.partition: max(c.offset, 0) for c in committed}
        #: per partition, the offset just past the last record of the events read
        self.through: dict[int, int] = {}
        consumer.assign(self.start)

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """``call()``, again while the group's coordinator is still being found or loaded (a new group's first use)."""
        from confluent_kafka import KafkaException

        while True:
            try:
                return call()
            except KafkaException as err:
                if not err.args[0].retriable() and "coordinator" not in str(err).lower():
                    raise
                if time.monotonic() >= self.deadline:
                    raise
                time.sleep(0.5)

    def done(self) -> bool:
        return all(self.next[p] >= end for p, end in self.ends.items())

    def rows(self, extras: list[Mapping[str, Any]], decoders: Mapping[str, Callable]) -> list[dict[int, Any]]:
        """Each event's rows (row → value), read until every event has its ``rows_published`` of them."""
        rows: list[dict[int, Any]] = [{} for _ in extras]
        missing = [_expected_rows(extra) > 0 for extra in extras]
        while any(missing) and not self.done() and time.monotonic() < self.deadline:
            msg = self.consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            self.read += 1
            self.next[msg.partition()] = msg.offset() + 1
            if msg.value() is None:
                continue
            for index, extra in enumerate(extras):
                row = _wanted(msg.headers(), extra)
                if row is not None:
                    rows[index][row] = decoders[_format_of(extra)](msg.value())
                    self.through[msg.partition()] = msg.offset() + 1
                    missing[index] = len(rows[index]) < _expected_rows(extra)
        return rows

    def commit(self) -> None:
        from confluent_kafka import TopicPartition

        topic = self.start[0].topic
        offsets = [TopicPartition(topic, p, offset) for p, offset in self.through.items()]
        if offsets:
            self._retrying(lambda: self.consumer.commit(offsets=offsets, asynchronous=False))


def new_response(message: Any) -> dict[str, Any] | None:
    """
    An ``apply_function`` for the kafka provider's ``AwaitMessageTrigger`` (an ``AssetWatcher`` on
    the topic): a record this provider published for a row not published before
    (``sheets.change: insert``) becomes the asset event's payload ``{spreadsheet_id, sheet_id, row,
    topic, partition, offset}``; any other record (an update, a tombstone, another producer's) is
    passed over.
    """
    headers = {key: (value or b"").decode() for key, value in message.headers() or []}
    if headers.get("sheets.change", "insert") != "insert" or "sheets.row" not in headers or message.value() is None:
        return None
    return {
        "spreadsheet_id": headers.get("sheets.spreadsheet_id"),
        "sheet_id": headers.get("sheets.sheet_id"),
        "row": int(headers["sheets.row"]),
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
    }
