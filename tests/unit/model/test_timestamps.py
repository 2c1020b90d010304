"""Timestamp parsing, time zones and the half-open interval (pure)."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_sheets.model.timestamps import in_interval, parse_timestamp, sheet_zone

START = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
END = datetime(2026, 11, 2, 9, 15, tzinfo=timezone.utc)


SEOUL = ZoneInfo("Asia/Seoul")


@pytest.mark.parametrize(
    ("cell", "zone", "expected"),
    [
        ("11/2/2026 9:07:01", ZoneInfo("UTC"), datetime(2026, 11, 2, 9, 7, 1, tzinfo=timezone.utc)),
        ("11/2/2026 18:07:01", SEOUL, datetime(2026, 11, 2, 9, 7, 1, tzinfo=timezone.utc)),
        ("2026-11-02 09:07:01", ZoneInfo("UTC"), datetime(2026, 11, 2, 9, 7, 1, tzinfo=timezone.utc)),
        ("2026-11-02T09:07:01+00:00", SEOUL, datetime(2026, 11, 2, 9, 7, 1, tzinfo=timezone.utc)),
        # 45658 is 2025-01-01 in Sheets and Excel; +365 +305 days is 2026-11-02
        (46328.25, ZoneInfo("UTC"), datetime(2026, 11, 2, 6, 0, tzinfo=timezone.utc)),
        (1, ZoneInfo("UTC"), datetime(1899, 12, 31, tzinfo=timezone.utc)),
    ],
)
def test_parse_timestamp(cell, zone, expected):
    assert parse_timestamp(cell, zone) == expected


@pytest.mark.parametrize("blank", [None, ""])
def test_parse_blank_timestamp(blank):
    assert parse_timestamp(blank, ZoneInfo("UTC")) is None


def test_parse_timestamp_names_the_format():
    with pytest.raises(ValueError, match=r"'yesterday' does not match the timestamp format '%m/%d/%Y %H:%M:%S'"):
        parse_timestamp("yesterday", ZoneInfo("UTC"))


def test_custom_format():
    parsed = parse_timestamp("02.11.2026 09:07", ZoneInfo("Europe/Berlin"), "%d.%m.%Y %H:%M")
    assert parsed == datetime(2026, 11, 2, 8, 7, tzinfo=timezone.utc)


@pytest.mark.parametrize(("name", "key"), [("Asia/Seoul", "Asia/Seoul"), ("", "UTC"), ("Mars/Base", "UTC")])
def test_sheet_zone(name, key):
    assert sheet_zone(name).key == key


@pytest.mark.parametrize(
    ("moment", "inside"),
    [(START, True), (END, False), (datetime(2026, 11, 2, 18, 14, 59, tzinfo=SEOUL), True)],
)
def test_in_interval_is_half_open(moment, inside):
    assert in_interval(moment, START, END) is inside
