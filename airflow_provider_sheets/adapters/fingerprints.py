"""The fingerprint topic: what a reconcile run compares the tab with (see :mod:`~..model.reconcile`)."""

from __future__ import annotations

from typing import Any

from airflow_provider_sheets.adapters.state_topic import scan_topic
from airflow_provider_sheets.model.reconcile import known_fingerprints


def load_fingerprints(config: dict[str, Any], topic: str, timeout: float = 120.0) -> dict[bytes, tuple[int, str]]:
    """
    The latest fingerprint of each key in ``topic``, read to its end (committed records only).

    :raises KafkaPublishError: the end was not reached within ``timeout`` seconds.
    """
    return known_fingerprints((message.key(), message.value()) for message in scan_topic(config, topic, timeout))
