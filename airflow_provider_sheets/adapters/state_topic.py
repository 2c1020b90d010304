"""
Compacted state topics: reading one to its end (:func:`scan_topic`, the one end-of-topic rule), the
latest value of a key (exactly-once checkpoints, stream positions), the highest published
``sheets.row`` (rebuilding a watermark), and the stream runner's :class:`PositionStore`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from airflow_provider_sheets.adapters.kafka_config import client_config, redact
from airflow_provider_sheets.adapters.publisher import Publisher
from airflow_provider_sheets.errors import KafkaConfigError, KafkaPublishError, WatermarkError
from airflow_provider_sheets.model.headers import SHEET_ID, SPREADSHEET_ID, published_row
from airflow_provider_sheets.model.position import PositionFormatError, Watermark

log = logging.getLogger(__name__)

#: Seconds a position record waits for its acknowledgement by default.
DEFAULT_FLUSH_TIMEOUT = 60.0


def scan_topic(config: dict[str, Any], topic: str, timeout: float = 60.0) -> Iterator[Any]:
    """
    Yield every committed record of ``topic`` from the start of each partition to its end offset.

    :param config: consumer settings, e.g. :func:`client_config` of the connection.

    The end is reached when every partition's position is at its end offset (positions, not the
    last offset seen: transaction markers take offsets too) and a poll brings nothing more (some
    brokers understate end offsets).

    :raises KafkaPublishError: the end was not reached within ``timeout`` seconds.
    """
    import uuid

    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            **config,
            "group.id": f"sheets-to-kafka-scan-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        ends = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if high > low:
                ends[partition] = high
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        reached: set[int] = set()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if len(reached) == len(ends):
                    return
            elif msg.error():
                raise KafkaException(msg.error())
            else:
                yield msg
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    reached.add(tp.partition)
        raise KafkaPublishError(
            f"timed out after {timeout:.0f} s reading topic {topic!r}; partitions "
            f"{sorted(set(ends) - reached)} were not read to their end"
        )
    finally:
        consumer.close()


def read_last_value(config: dict[str, Any], topic: str, key: bytes, timeout: float = 30.0) -> bytes | None:
    """The value of the newest committed record with ``key`` in ``topic`` (a compacted state topic), or ``None``."""
    latest: bytes | None = None
    for msg in scan_topic(config, topic, timeout):
        if msg.key() == key:
            latest = msg.value()
    return latest


def highest_published_row(
    config: dict[str, Any], topic: str, spreadsheet_id: str, sheet_id: int, timeout: float = 120.0
) -> tuple[int | None, int]:
    """
    Scan ``topic`` from the start and return the highest ``sheets.row`` header among the records of
    this spreadsheet and tab (``sheets.spreadsheet_id`` and ``sheets.sheet_id``), and how many
    records were scanned.
    """
    want_sheet = spreadsheet_id.encode()
    want_gid = str(sheet_id).encode()
    highest: int | None = None
    scanned = 0
    for msg in scan_topic(config, topic, timeout):
        scanned += 1
        headers = dict(msg.headers() or [])
        if headers.get(SPREADSHEET_ID) == want_sheet and headers.get(SHEET_ID) == want_gid:
            row = published_row(headers)
            if row is not None:
                highest = row if highest is None else max(highest, row)
    return highest, scanned


class PositionStore:
    """
    The runner's position in a compacted topic: key ``<spreadsheet_id>:<gid>``, value a
    :class:`Watermark` as JSON.

    :param topic: the position topic.
    :param kafka_config_id: the ``kafka`` connection (its extra is the librdkafka configuration).
    :param flush_timeout: seconds to wait for a position record's acknowledgement.
    """

    def __init__(self, topic: str, kafka_config_id: str, flush_timeout: float = DEFAULT_FLUSH_TIMEOUT) -> None:
        self.topic = topic
        self.kafka_config_id = kafka_config_id
        self.flush_timeout = flush_timeout

    @cached_property
    def client_config(self) -> dict[str, Any]:
        """The connection's librdkafka settings that apply to admin clients and consumers."""
        return client_config(self.kafka_config_id)

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(self.topic, self.kafka_config_id, flush_timeout=self.flush_timeout)

    def reset_publisher(self) -> None:
        """Close and drop the producer after a failure; the next :meth:`save` builds a new one."""
        publisher = self.__dict__.pop("publisher", None)
        if publisher is not None:
            publisher.close()

    def ensure_topic(self, timeout: float = 15.0) -> bool:
        """
        Create the topic (one partition, ``cleanup.policy=compact``) unless it exists.

        :return: whether it was created.
        """
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.client_config)
        future = admin.create_topics(
            [NewTopic(self.topic, num_partitions=1, replication_factor=-1, config={"cleanup.policy": "compact"})],
            operation_timeout=timeout,
        )[self.topic]
        try:
            future.result(timeout=timeout)
        except KafkaException as err:
            text = str(err)
            if "TOPIC_ALREADY_EXISTS" not in text and "already exists" not in text.lower():
                raise KafkaConfigError(
                    f"cannot create the position topic {self.topic!r} ({text}). Create it yourself with "
                    f"cleanup.policy=compact (kafka-topics.sh --create --topic {self.topic} --partitions 1 "
                    f"--config cleanup.policy=compact), or grant this principal CREATE on it."
                ) from None
            self._check_compacted(admin, timeout)
            return False
        log.info("Created the position topic %r (cleanup.policy=compact).", self.topic)
        return True

    def _check_compacted(self, admin, timeout: float) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import ConfigResource

        resource = ConfigResource("topic", self.topic)
        try:
            configs = admin.describe_configs([resource])[resource].result(timeout=timeout)
        except KafkaException as err:
            log.debug("Could not read the configuration of %r: %s", self.topic, err)
            return
        policy = configs.get("cleanup.policy")
        if policy is not None and "compact" not in str(policy.value):
            log.warning(
                "The position topic %r has cleanup.policy=%s: old positions will be deleted by retention "
                "and, once the latest one is, a restart republishes the tab. Fix: kafka-configs.sh --alter "
                "--entity-type topics --entity-name %s --add-config cleanup.policy=compact",
                self.topic,
                policy.value,
                self.topic,
            )

    def load(self, key: str, timeout: float = 60.0) -> Watermark | None:
        """The latest position stored under ``key``, or ``None`` (never written, or a tombstone)."""
        from confluent_kafka import KafkaException

        try:
            raw = read_last_value(self.client_config, self.topic, key.encode("utf-8"), timeout)
        except (KafkaException, KafkaPublishError) as err:
            raise KafkaPublishError(
                f"cannot read the position topic {self.topic!r} to its end ({redact(str(err))}). Check "
                f"bootstrap.servers and the connection's credentials (READ on the topic), then start again."
            ) from None
        if raw is None:
            return None
        try:
            return Watermark.from_json(raw.decode("utf-8"))
        except (PositionFormatError, UnicodeDecodeError) as err:
            raise WatermarkError(
                f"the latest position record for key {key!r} in topic {self.topic!r} is unusable ({err}). Produce "
                f'a valid one, e.g. {{"last_row": 1}} to start after the header, or a tombstone (null value) '
                f"to start over."
            ) from None

    def save(self, key: str, watermark: Watermark, headers: list[tuple[str, bytes]] | None = None) -> None:
        """Write ``watermark`` under ``key`` and wait for its acknowledgement."""
        watermark.updated_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self.publisher.send(key.encode("utf-8"), watermark.to_json().encode("utf-8"), headers or [])
        self.publisher.finish()
