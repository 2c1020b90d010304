"""
The speed layer: :class:`SheetStream` polls one tab and publishes new rows continuously, on the
same reader, mapper, publish loop and publisher as the batch operator, with its position in a
compacted topic (:class:`~airflow_provider_sheets.adapters.state_topic.PositionStore`).
"""

from airflow_provider_sheets.adapters.state_topic import PositionStore
from airflow_provider_sheets.model.position import position_key
from airflow_provider_sheets.streaming.runner import (
    Backoff,
    SheetStream,
    StreamStats,
    default_position_topic,
    runner_id,
)

__all__ = [
    "Backoff",
    "PositionStore",
    "SheetStream",
    "StreamStats",
    "default_position_topic",
    "position_key",
    "runner_id",
]
