"""How old a record's timestamp may be for a topic to keep it: the topic settings as describe_configs gives them."""

import pytest

from airflow_provider_sheets.model.retention import MARGIN_MS, TimeLimit, time_limit

WEEK = 604_800_000
DAY = 86_400_000
LONG_MAX = str(2**63 - 1)


@pytest.mark.parametrize(
    ("configs", "expected"),
    [
        ({"cleanup.policy": "delete", "retention.ms": str(WEEK)}, TimeLimit(WEEK, f"retention.ms={WEEK}")),
        ({"retention.ms": str(WEEK)}, TimeLimit(WEEK, f"retention.ms={WEEK}")),  # delete is Kafka's default policy
        ({"cleanup.policy": "delete", "retention.ms": "-1"}, None),
        ({"cleanup.policy": "compact", "retention.ms": str(WEEK)}, None),  # compaction keeps a key's latest record
        ({"cleanup.policy": "compact,delete", "retention.ms": str(WEEK)}, TimeLimit(WEEK, f"retention.ms={WEEK}")),
        ({"retention.ms": "-1", "message.timestamp.before.max.ms": LONG_MAX}, None),  # Kafka 4's defaults: no limit
        (
            {"retention.ms": str(WEEK), "message.timestamp.before.max.ms": str(DAY)},
            TimeLimit(DAY, f"message.timestamp.before.max.ms={DAY}"),  # the broker would refuse the record
        ),
        (
            {"retention.ms": str(DAY), "message.timestamp.difference.max.ms": str(WEEK)},  # Kafka < 4
            TimeLimit(DAY, f"retention.ms={DAY}"),
        ),
        ({"retention.ms": str(WEEK), "message.timestamp.type": "LogAppendTime"}, None),  # the broker stamps records
        ({"retention.ms": None}, None),
        ({"retention.ms": "soon"}, None),
        ({}, None),
    ],
)
def test_the_limit_is_the_shortest_of_the_topic_settings_that_apply(configs, expected):
    assert time_limit(configs) == expected


@pytest.mark.parametrize(
    ("limit_ms", "oldest"),
    [
        (WEEK, 10 * WEEK - WEEK + MARGIN_MS),  # kept an hour at least
        (60_000, 10 * WEEK - 60_000 + 30_000),  # a limit under two hours: kept half of it
    ],
)
def test_the_oldest_timestamp_kept_leaves_the_record_time_in_the_topic(limit_ms, oldest):
    assert TimeLimit(limit_ms, "retention.ms").oldest(10 * WEEK) == oldest
