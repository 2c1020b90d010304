"""
How old a record's timestamp may be for a topic to keep it (pure): a topic deletes by time, and
refuses timestamps too far in the past, by its configuration, not by when a record was written.

A record's Kafka timestamp (CreateTime) is its row's event time (Forms' ``Timestamp``) when values
are typed. A topic with ``cleanup.policy=delete`` drops a segment once its newest timestamp is
older than ``retention.ms``, at the broker's next retention check (every
``log.retention.check.interval.ms``, five minutes by default): the responses of last month written
to a topic that keeps seven days would be gone minutes after a run acknowledged them, and the
watermark would claim rows no longer in Kafka. ``message.timestamp.before.max.ms`` (Kafka 3.6+)
makes the broker refuse such a record outright (``INVALID_TIMESTAMP``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: How long a record stamped with its event time is kept at least: older ones carry the publish time.
MARGIN_MS = 3_600_000

#: Configuration values meaning "no limit" (``-1``; Kafka's ``Long.MAX_VALUE`` defaults).
_UNLIMITED = 2**62


@dataclass(frozen=True)
class TimeLimit:
    """
    How far in the past a topic keeps (and accepts) record timestamps.

    :param limit_ms: the age past which a record is deleted at the next retention check, or refused.
    :param setting: ``name=value`` of the topic setting that says so.
    """

    limit_ms: int
    setting: str

    def oldest(self, now_ms: int) -> int:
        """The oldest timestamp the topic keeps :data:`MARGIN_MS` (half the limit, if shorter) at ``now_ms``."""
        return now_ms - self.limit_ms + min(MARGIN_MS, self.limit_ms // 2)


def _limit(configs: Mapping[str, str | None], name: str) -> int | None:
    value = configs.get(name)
    try:
        limit = int(value) if value is not None else -1
    except ValueError:
        return None
    return limit if 0 < limit < _UNLIMITED else None


def time_limit(configs: Mapping[str, str | None]) -> TimeLimit | None:
    """
    The limit a topic with these settings (``describe_configs`` values as text) puts on record
    timestamps; ``None`` when it keeps and accepts any (compacted only, no time limit, or the broker
    stamps records itself with ``LogAppendTime``).
    """
    if configs.get("message.timestamp.type") == "LogAppendTime":
        return None
    names = ["retention.ms"] if "delete" in str(configs.get("cleanup.policy") or "delete") else []
    names += ["message.timestamp.before.max.ms", "message.timestamp.difference.max.ms"]
    found = [(limit, name) for name in names if (limit := _limit(configs, name)) is not None]
    if not found:
        return None
    limit, name = min(found)
    return TimeLimit(limit, f"{name}={limit}")
