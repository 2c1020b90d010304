"""
The only place that turns a ``kafka`` connection into client configuration: the producer's (with
the settings this package enforces) and the consumers' and admin clients' (:func:`client_config`).
Both go through the kafka provider's own config builder (dotted-path callbacks resolved, the
managed-Kafka OAuth callback injected).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
from confluent_kafka import KafkaException

from airflow_provider_sheets.errors import KafkaConfigError

log = logging.getLogger(__name__)

#: Settings a connection cannot weaken: every record is acked by all in-sync replicas and the
#: producer's own retries cannot duplicate or reorder records.
ENFORCED_CONFIG: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}

#: Settings the :class:`Publisher`'s accounting relies on: a delivery report only for a record that
#: failed (a report per acknowledged record costs a Python call and a message object each; without
#: them the operator took 5% less time on 500k rows); what was acknowledged is known from a complete
#: flush instead.
ACCOUNTING_CONFIG: dict[str, Any] = {"delivery.report.only.error": True}

#: Throughput defaults; a connection's extra overrides any of them.
DEFAULT_CONFIG: dict[str, Any] = {
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "message.timeout.ms": 120_000,
    # each queued record costs ~1.4 KB of client memory; 20k keeps the queue ~30 MB at full speed
    "queue.buffering.max.messages": 20_000,
}

#: Keys whose values are never logged.
SECRET_KEYS = ("sasl.password", "sasl.oauthbearer.client.secret", "ssl.key.password", "ssl.key.pem")


class SheetsProducerHook(KafkaProducerHook):
    """
    :class:`KafkaProducerHook` whose producer always has idempotence and ``acks=all``.

    The connection's extra (a librdkafka config dict) is used as is, over :data:`DEFAULT_CONFIG`;
    a setting that would weaken :data:`ENFORCED_CONFIG` is overridden with a warning.

    :param kafka_config_id: the ``kafka`` connection id.
    :param overrides: extra producer settings applied over the connection's (not over the enforced).
    """

    def __init__(
        self,
        kafka_config_id: str = "kafka_default",
        overrides: dict[str, Any] | None = None,
        max_message_timeout_ms: int | None = None,
    ) -> None:
        super().__init__(kafka_config_id=kafka_config_id)
        self.overrides = dict(overrides or {})
        self.max_message_timeout_ms = max_message_timeout_ms

    def producer_config(self, config: dict[str, Any]) -> dict[str, Any]:
        merged = {**DEFAULT_CONFIG, **config, **self.overrides, **ACCOUNTING_CONFIG}
        if self.max_message_timeout_ms is not None:
            # a record must either be delivered or fail within the flush budget: never later, when
            # a retry may already be re-sending it
            merged["message.timeout.ms"] = min(int(merged["message.timeout.ms"]), self.max_message_timeout_ms)
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
        from confluent_kafka import Producer

        try:
            return Producer(self.producer_config(config))
        except (KafkaException, ValueError, TypeError) as err:
            raise KafkaConfigError(
                f"the Kafka connection {self.kafka_config_id!r} has an invalid producer setting: "
                f"{redact(str(err))}. Fix the connection's extra (a librdkafka config JSON object)."
            ) from None


#: producer-only librdkafka settings, left out of the consumer and admin configurations
_PRODUCER_ONLY = frozenset(
    (
        *DEFAULT_CONFIG,
        *ENFORCED_CONFIG,
        "transactional.id",
        "transaction.timeout.ms",
        "queue.buffering.max.messages",
        "batch.num.messages",
        "queue.buffering.max.ms",
    )
)


def client_config(kafka_config_id: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    The ``kafka`` connection's settings for consumers and admin clients, built the one way the
    producer's are: the kafka provider's own config builder (callbacks given as dotted paths
    resolved, the managed-Kafka OAuth callback injected), then ``overrides`` (an operator's
    ``producer_config``), without the producer-only settings.
    """
    config = {**SheetsProducerHook(kafka_config_id)._build_config(), **(overrides or {})}
    return {k: v for k, v in config.items() if k not in _PRODUCER_ONLY}


def redact(text: str) -> str:
    """``text`` with any secret setting's value hidden (for logs and error messages)."""
    for key in SECRET_KEYS:
        if key in text:
            return text.split(key)[0] + key + "=***"
    return text
