"""Watermark tools: show, set, reset, and rebuild from the topic's ``sheets.row`` headers."""

from __future__ import annotations

import time
import uuid
from typing import Any

from airflow_provider_sheets.errors import KafkaPublishError, WatermarkError
from airflow_provider_sheets.watermark import Watermark, WatermarkStore


def highest_published_row(
    config: dict[str, Any], topic: str, spreadsheet_id: str, sheet_id: int, timeout: float = 120.0
) -> tuple[int | None, int]:
    """
    Scan ``topic`` from the start and return the highest ``sheets.row`` header among the records of
    this spreadsheet and tab (``sheets.spreadsheet_id`` and ``sheets.sheet_id``), and how many
    records were scanned. Reads each partition to its end offset (by consumer position).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": config["bootstrap.servers"],
            **{k: v for k, v in config.items() if k.startswith(("security.", "sasl.", "ssl."))},
            "group.id": f"sheets-to-kafka-rebuild-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    want_sheet = spreadsheet_id.encode()
    want_gid = str(sheet_id).encode()
    highest: int | None = None
    scanned = 0
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        if topic not in metadata.topics or not metadata.topics[topic].partitions:
            raise WatermarkError(f"topic {topic!r} not found; cannot rebuild the watermark from it")
        ends: dict[int, int] = {}
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        reached: set[int] = set()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if len(reached) == len(ends):
                    break  # at every end offset and nothing more arrives (some brokers understate ends)
            elif msg.error():
                raise KafkaException(msg.error())
            else:
                scanned += 1
                headers = dict(msg.headers() or [])
                if headers.get("sheets.spreadsheet_id") == want_sheet and headers.get("sheets.sheet_id") == want_gid:
                    row = int(headers.get("sheets.row", b"0") or 0)
                    highest = row if highest is None else max(highest, row)
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    reached.add(tp.partition)
        if len(reached) < len(ends):
            raise KafkaPublishError(f"timed out after {timeout:.0f} s scanning topic {topic!r}")
        return highest, scanned
    finally:
        consumer.close()


def set_watermark(key: str, last_row: int, **fields: Any) -> Watermark:
    """Set ``last_row`` (keeping the other fields of an existing watermark, minus its row hash)."""
    if last_row < 1:
        raise WatermarkError(f"last_row must be at least 1 (1 = only the header is done), got {last_row}")
    store = WatermarkStore(key)
    current = store.get()
    watermark = current or Watermark(last_row=last_row)
    watermark.last_row = last_row
    watermark.last_row_hash = None  # the row behind the new position was not seen by a run
    for name, value in fields.items():
        setattr(watermark, name, value)
    return store.set(watermark)


def reset_watermark(key: str) -> bool:
    """Delete the watermark Variable (the next run publishes every row); ``False`` if it was absent."""
    from airflow.sdk import Variable

    if WatermarkStore(key).get() is None:
        return False
    Variable.delete(key)
    return True
