"""Publish records through the ``kafka`` connection, fail closed, and account for every ack."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook

from airflow_provider_sheets.errors import KafkaConfigError, KafkaPublishError

log = logging.getLogger(__name__)

#: Settings a connection cannot weaken: every record is acked by all in-sync replicas and the
#: producer's own retries cannot duplicate or reorder records.
ENFORCED_CONFIG: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}

#: Throughput defaults; a connection's extra overrides any of them.
DEFAULT_CONFIG: dict[str, Any] = {
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "message.timeout.ms": 120_000,
}

#: Keys whose values are never logged.
SECRET_KEYS = ("sasl.password", "sasl.oauthbearer.client.secret", "ssl.key.password", "ssl.key.pem")

Headers = Sequence[tuple[str, bytes]]


class SheetsProducerHook(KafkaProducerHook):
    """
    :class:`KafkaProducerHook` whose producer always has idempotence and ``acks=all``.

    The connection's extra (a librdkafka config dict) is used as is, over :data:`DEFAULT_CONFIG`;
    a setting that would weaken :data:`ENFORCED_CONFIG` is overridden with a warning.

    :param kafka_config_id: the ``kafka`` connection id.
    :param overrides: extra producer settings applied over the connection's (not over the enforced).
    """

    def __init__(self, kafka_config_id: str = "kafka_default", overrides: dict[str, Any] | None = None) -> None:
        super().__init__(kafka_config_id=kafka_config_id)
        self.overrides = dict(overrides or {})

    def producer_config(self, config: dict[str, Any]) -> dict[str, Any]:
        merged = {**DEFAULT_CONFIG, **config, **self.overrides}
        for key, value in ENFORCED_CONFIG.items():
            current = merged.get(key)
            if current is not None and str(current).lower() not in (str(value).lower(), "-1"):
                log.warning(
                    "Kafka connection %r sets %s=%s; using %s=%s so that no acknowledged record can be lost "
                    "or duplicated by the producer's retries.",
                    self.kafka_config_id,
                    key,
                    current,
                    key,
                    value,
                )
            merged[key] = value
        return merged

    def _get_client(self, config):
        from confluent_kafka import KafkaException, Producer

        try:
            return Producer(self.producer_config(config))
        except (KafkaException, ValueError, TypeError) as err:
            raise KafkaConfigError(
                f"the Kafka connection {self.kafka_config_id!r} has an invalid producer setting: "
                f"{_redact(str(err))}. Fix the connection's extra (a librdkafka config JSON object)."
            ) from None


class Publisher:
    """
    Produce records to one topic and account for every delivery report.

    Delivery semantics: :meth:`finish` returns only when every produced record has been
    acknowledged by the broker (``acks=all``); otherwise it raises :class:`KafkaPublishError`
    after purging whatever is still queued, so that nothing of a failed attempt is delivered
    later. Records acked before the failure stay in the topic: a retry re-sends them with the
    same keys and ``sheets.*`` headers, which is what lets consumers de-duplicate.

    :param topic: the destination topic.
    :param kafka_config_id: the ``kafka`` connection id.
    :param flush_timeout: seconds :meth:`finish` waits for outstanding acks.
    :param producer_config: extra librdkafka settings applied over the connection's.
    """

    def __init__(
        self,
        topic: str,
        kafka_config_id: str = "kafka_default",
        flush_timeout: float = 300.0,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.kafka_config_id = kafka_config_id
        self.flush_timeout = flush_timeout
        self.producer_config = dict(producer_config or {})
        self.produced = 0
        self.acked = 0
        self.errors: list[str] = []
        self.error_count = 0

    @cached_property
    def hook(self) -> SheetsProducerHook:
        return SheetsProducerHook(self.kafka_config_id, overrides=self.producer_config)

    @cached_property
    def producer(self):
        return self.hook.get_producer()

    def check_topic(self, timeout: float = 15.0) -> int:
        """
        Fail fast, before anything is read, when the broker is unreachable or the topic is missing.

        :return: the topic's partition count.
        """
        from confluent_kafka import KafkaException

        try:
            metadata = self.producer.list_topics(self.topic, timeout=timeout)
        except KafkaException as err:
            raise KafkaPublishError(
                f"cannot reach the Kafka brokers of connection {self.kafka_config_id!r} within {timeout:.0f} s "
                f"({_redact(str(err))}). Check bootstrap.servers and the network/credentials settings in "
                f"its extra."
            ) from None
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            detail = f" ({topic.error.str()})" if topic is not None and topic.error is not None else ""
            raise KafkaConfigError(
                f"topic {self.topic!r} does not exist or is not authorised for connection "
                f"{self.kafka_config_id!r}{detail}. Create it first, e.g. "
                f"kafka-topics.sh --create --topic {self.topic} --partitions 3, or grant this principal "
                f"WRITE and DESCRIBE on it."
            )
        return len(topic.partitions)

    def _on_delivery(self, err, msg) -> None:
        if err is None:
            self.acked += 1
            return
        self.error_count += 1
        if len(self.errors) < 10:
            key = msg.key().decode("utf-8", "replace") if msg is not None and msg.key() else "?"
            self.errors.append(f"key {key}: {err.str()}")

    def send(self, key: bytes, value: bytes, headers: Headers) -> None:
        """Queue one record; waits for room when the local queue is full."""
        producer = self.producer
        while True:
            try:
                producer.produce(self.topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        self.produced += 1
        if self.error_count:
            self.abort(f"{self.error_count} record(s) failed to deliver while producing")

    def poll(self) -> None:
        """Serve delivery reports without blocking."""
        self.producer.poll(0)

    def finish(self) -> int:
        """
        Wait until every produced record is acknowledged.

        :return: the number of acknowledged records (equal to the number produced).
        :raises KafkaPublishError: a record failed or the flush timed out; the queue is purged.
        """
        if not self.produced:
            return 0
        deadline = time.monotonic() + self.flush_timeout
        remaining = self.producer.flush(self.flush_timeout)
        while remaining and time.monotonic() < deadline:
            remaining = self.producer.flush(max(0.1, deadline - time.monotonic()))
        if remaining:
            self.abort(f"{remaining} record(s) were still unacknowledged after {self.flush_timeout:.0f} s")
        if self.error_count:
            self.abort(f"{self.error_count} record(s) failed to deliver")
        if self.acked != self.produced:
            self.abort(f"{self.produced} records produced but {self.acked} acknowledged")
        return self.acked

    def abort(self, reason: str) -> None:
        """Purge everything queued or in flight and raise :class:`KafkaPublishError`."""
        producer = self.producer
        producer.purge(in_queue=True, in_flight=True, blocking=True)
        producer.flush(0)
        detail = "; ".join(self.errors[:5])
        raise KafkaPublishError(
            f"publishing to topic {self.topic!r} failed: {reason}"
            + (f" (first errors: {detail})" if detail else "")
            + f". {self.acked} of {self.produced} records were acknowledged before the failure; the "
            f"watermark was not moved, so a retry re-sends them with the same keys and headers."
        )


def _redact(text: str) -> str:
    for key in SECRET_KEYS:
        if key in text:
            return text.split(key)[0] + key + "=***"
    return text
