"""Timestamp parsing, time zones and the half-open interval (pure)."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_sheets.model.timestamps import (
    TimestampColumn,
    TimestampError,
    date_order,
    in_interval,
    parse_local_text,
    parse_timestamp,
    select_rows,
    sheet_zone,
    timestamp_field,
)

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


@pytest.mark.parametrize(
    ("fmt", "locale", "message"),
    [
        (None, "en_GB", "'yesterday' is text that is not a date-time of locale en_GB, nor ISO 8601"),
        ("%d %b %Y", "en_US", "'yesterday' is text that is not the timestamp format '%d %b %Y', nor ISO 8601"),
    ],
)
def test_parse_timestamp_names_what_it_expected(fmt, locale, message):
    with pytest.raises(ValueError) as info:
        parse_timestamp("yesterday", ZoneInfo("UTC"), fmt, locale)
    assert str(info.value) == message


def test_a_checkbox_is_not_a_timestamp():
    with pytest.raises(ValueError, match="True is a checkbox value, not a date-time"):
        parse_timestamp(True, ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("locale", "order"),
    [
        ("en_US", "MDY"),
        ("en_GB", "DMY"),
        ("de_DE", "DMY"),
        ("fr_FR", "DMY"),
        ("ko_KR", "YMD"),
        ("ja_JP", "YMD"),
        ("en-US", "MDY"),
        ("pt_BR", "DMY"),
        ("", "MDY"),
    ],
)
def test_date_order(locale, order):
    assert date_order(locale) == order


# What each locale's FORMATTED_VALUE shows for 5 November 2026, 14:05:03 (Google's default formats).
NOV_5 = datetime(2026, 11, 5, 14, 5, 3)


@pytest.mark.parametrize(
    ("text", "locale", "expected"),
    [
        ("11/5/2026 14:05:03", "en_US", NOV_5),
        ("05/11/2026 14:05:03", "en_GB", NOV_5),
        ("05.11.2026 14:05:03", "de_DE", NOV_5),
        ("05/11/2026 14:05:03", "fr_FR", NOV_5),
        ("2026. 11. 5 \uc624\ud6c4 2:05:03", "ko_KR", NOV_5),
        ("2026. 11. 5 \uc624\uc804 12:05:03", "ko_KR", NOV_5.replace(hour=0)),
        ("11/5/2026 2:05:03 PM", "en_US", NOV_5),
        ("11/5/2026 12:05:03 am", "en_US", NOV_5.replace(hour=0)),
        ("2026-11-05 14:05", "en_GB", NOV_5.replace(second=0)),  # a four-digit first number is a year
        ("05/11/2026", "en_GB", datetime(2026, 11, 5)),
        ("13/11/2026 9:00:00", "en_US", None),  # no 13th month: not a date of this locale
        ("11/5/2026 13:05:03 PM", "en_US", None),
        ("Nov 5, 2026", "en_US", None),
    ],
)
def test_parse_local_text(text, locale, expected):
    assert parse_local_text(text, locale) == expected


def test_the_same_text_is_a_different_day_in_another_locale():
    assert parse_local_text("05/11/2026 09:05:03", "en_US") == datetime(2026, 5, 11, 9, 5, 3)
    assert parse_local_text("05/11/2026 09:05:03", "en_GB") == datetime(2026, 11, 5, 9, 5, 3)


@pytest.mark.parametrize(
    ("fields", "wanted", "found"),
    [
        (["Timestamp", "Name"], "Timestamp", "Timestamp"),
        (["Horodateur", "Nom"], "Timestamp", "Horodateur"),
        (["Zeitstempel", "Name"], "Timestamp", "Zeitstempel"),
        (["\ud0c0\uc784\uc2a4\ud0ec\ud504", "\uc774\ub984"], "Timestamp", "\ud0c0\uc784\uc2a4\ud0ec\ud504"),
        (["Submitted", "Name"], "Submitted", "Submitted"),
        (["Horodateur", "Nom"], "Submitted", None),  # only the default looks for Forms' other names
        (["Name"], "Timestamp", None),
    ],
)
def test_timestamp_field(fields, wanted, found):
    assert timestamp_field(fields, wanted) == found


UTC = ZoneInfo("UTC")
COLUMN = TimestampColumn("Timestamp", 0, UTC, "en_GB")


def test_select_rows_keeps_the_rows_in_the_half_open_interval():
    serial_9am = 46328 + 9 / 24  # 2026-11-02 09:00 as a serial date-time
    minute = 1 / 1440
    cells = [
        (2, serial_9am - minute),
        (3, serial_9am),
        (4, ""),
        (5, serial_9am + 14 * minute),
        (6, serial_9am + 15 * minute),
    ]
    selection = select_rows(cells, COLUMN, START, END)
    assert selection.rows == frozenset({3, 5})
    assert selection.span == (3, 5)
    assert selection([], 3)
    assert not selection([], 4)


def test_select_rows_reads_text_in_the_locale():
    selection = select_rows([(2, "02/11/2026 09:07:00"), (3, "11/02/2026 09:07:00")], COLUMN, START, END)
    assert selection.rows == frozenset({2})


def test_select_rows_names_the_row_the_cell_and_the_locale():
    with pytest.raises(TimestampError) as info:
        select_rows([(2, 46328.4), (7, "soon")], TimestampColumn("Horodateur", 2, SEOUL, "fr_FR"), START, END)
    assert str(info.value) == (
        "row 7: cell C7 ('Horodateur') cannot be placed in time: 'soon' is text that is not a date-time of locale "
        "fr_FR, nor ISO 8601 (spreadsheet locale fr_FR, time zone Asia/Seoul)"
    )


def test_an_empty_selection_has_no_span():
    assert select_rows([], COLUMN, START, END).span is None


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
