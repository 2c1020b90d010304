"""
Place a sheet's timestamp cells in time (pure): serial numbers, text in the spreadsheet's locale,
time zones, and a backfill's selection of rows by its data interval.

A backfill reads its timestamp column as ``UNFORMATTED_VALUE`` with ``SERIAL_NUMBER`` date-times,
so a date-time cell arrives as a number of days since 1899-12-30, in the spreadsheet's time zone,
whatever the spreadsheet's locale shows (``11/5/2026`` in en_US, ``05/11/2026`` in en_GB,
``05.11.2026`` in de_DE). Only a cell holding *text* is parsed as text: with ``timestamp_format``
when one is given, else in the date order of the spreadsheet's locale, else as ISO 8601.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow_provider_sheets.model.a1 import column_letter

#: Day 0 of Google Sheets' serial date-time numbers.
SERIAL_EPOCH = datetime(1899, 12, 30)

#: How Google Forms writes its ``Timestamp`` column in an en_US spreadsheet.
FORMS_TIMESTAMP_FORMAT = "%m/%d/%Y %H:%M:%S"

#: The header Google Forms gives its timestamp column, by the form's language (the first is the
#: default of ``timestamp_column``; a form in another language is found by the others).
FORMS_TIMESTAMP_HEADERS = (
    "Timestamp",
    "Horodateur",  # fr
    "Zeitstempel",  # de
    "Marca temporal",  # es
    "Carimbo de data/hora",  # pt
    "Informazioni cronologiche",  # it
    "Tijdstempel",  # nl
    "Sygnatura czasowa",  # pl
    "\u041e\u0442\u043c\u0435\u0442\u043a\u0430 \u0432\u0440\u0435\u043c\u0435\u043d\u0438",  # ru: Отметка времени
    "\u30bf\u30a4\u30e0\u30b9\u30bf\u30f3\u30d7",  # ja: タイムスタンプ
    "\ud0c0\uc784\uc2a4\ud0ec\ud504",  # ko: 타임스탬프
    "\u65f6\u95f4\u6233\u8bb0",  # zh-CN: 时间戳记
)

#: Locales whose numeric dates put the month first, and languages that put the year first; every
#: other locale writes day, month, year.
_MONTH_FIRST = frozenset({"en_US", "en_PH", "es_US", "fil_PH", "en"})
_YEAR_FIRST_LANGUAGES = frozenset({"ko", "ja", "zh", "hu", "lt", "mn", "sv"})

_NOON = {"am": False, "a.m.": False, "\uc624\uc804": False, "pm": True, "p.m.": True, "\uc624\ud6c4": True}
_NUMERIC = re.compile(
    r"(?P<a>\d{1,4})\s*[./-]\s*(?P<b>\d{1,2})\s*[./-]\s*(?P<c>\d{1,4})\.?"
    r"(?:[\sT,]+(?:(?P<noon1>am|pm|a\.m\.|p\.m\.|\uc624\uc804|\uc624\ud6c4)\s*)?"
    r"(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?\s*(?P<noon2>am|pm|a\.m\.|p\.m\.)?)?",
    re.IGNORECASE,
)


def sheet_zone(name: str) -> ZoneInfo:
    """The spreadsheet's time zone (``properties.timeZone``); UTC when unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def date_order(locale: str) -> str:
    """How ``locale`` (``properties.locale``, e.g. ``en_GB``) orders a numeric date: ``MDY``, ``DMY`` or ``YMD``."""
    name = (locale or "en_US").replace("-", "_")
    if name in _MONTH_FIRST:
        return "MDY"
    return "YMD" if name.split("_")[0].lower() in _YEAR_FIRST_LANGUAGES else "DMY"


def parse_local_text(text: str, locale: str) -> datetime | None:
    """
    A numeric date, with an optional time (24-hour, or with AM/PM, ``오전``/``오후``), read in
    ``locale``'s date order (a four-digit first number is always a year); naive. ``None`` when
    ``text`` is not such a date.
    """
    match = _NUMERIC.fullmatch(text.strip())
    if match is None:
        return None
    a, b, c = match["a"], match["b"], match["c"]
    if len(a) == 4 or date_order(locale) == "YMD":
        year, month, day = a, b, c
    elif date_order(locale) == "MDY":
        month, day, year = a, b, c
    else:
        day, month, year = a, b, c
    hour = int(match["h"] or 0)
    noon = match["noon1"] or match["noon2"]
    if noon is not None:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if _NOON[noon.lower()] else 0)
    try:
        return datetime(int(year), int(month), int(day), hour, int(match["m"] or 0), int(match["s"] or 0))
    except ValueError:
        return None


def parse_timestamp(cell: object, zone: ZoneInfo, fmt: str | None = None, locale: str = "en_US") -> datetime | None:
    """
    Place a timestamp cell in time, in the spreadsheet's time zone; ``None`` for a blank cell.

    A number is a serial date-time (``UNFORMATTED_VALUE``); text is read with ``fmt`` when given,
    else as a numeric date in ``locale``'s date order, else as ISO 8601.

    :raises ValueError: the cell is not blank and is none of these.
    """
    if cell is None or cell == "":
        return None
    if isinstance(cell, bool):
        raise ValueError(f"{cell!r} is a checkbox value, not a date-time")
    if isinstance(cell, (int, float)):
        return (SERIAL_EPOCH + timedelta(days=float(cell))).replace(tzinfo=zone)
    text = str(cell).strip()
    if fmt:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=zone)
        except ValueError:
            pass
    local = parse_local_text(text, locale)
    if local is not None:
        return local.replace(tzinfo=zone)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        expected = f"the timestamp format {fmt!r}" if fmt else f"a date-time of locale {locale}"
        raise ValueError(f"{text!r} is text that is not {expected}, nor ISO 8601") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def in_interval(moment: datetime, start: datetime, end: datetime) -> bool:
    """``start <= moment < end``, comparing aware datetimes in UTC."""
    return start.astimezone(timezone.utc) <= moment.astimezone(timezone.utc) < end.astimezone(timezone.utc)


def timestamp_field(fields: list[str], wanted: str) -> str | None:
    """
    The field a backfill selects rows by: ``wanted`` when it is one of ``fields``; for the default
    ``Timestamp``, also the timestamp column of a form in another language (``Horodateur``…).
    """
    if wanted in fields:
        return wanted
    if wanted == FORMS_TIMESTAMP_HEADERS[0]:
        return next((name for name in fields if name in FORMS_TIMESTAMP_HEADERS), None)
    return None


class TimestampError(ValueError):
    """A row's timestamp cell could not be placed in time (the message names the row, cell, locale and zone)."""


@dataclass(frozen=True)
class TimestampColumn:
    """Where a backfill's timestamps are, and how the spreadsheet shows them."""

    name: str
    index: int  # 0-based
    zone: ZoneInfo
    locale: str
    fmt: str | None = None

    def moment(self, cell: object, row: int) -> datetime | None:
        """The cell of ``row`` placed in time, or ``None`` when blank; :class:`TimestampError` otherwise."""
        try:
            return parse_timestamp(cell, self.zone, self.fmt, self.locale)
        except ValueError as err:
            raise TimestampError(
                f"row {row}: cell {column_letter(self.index + 1)}{row} ({self.name!r}) cannot be placed in time: {err} "
                f"(spreadsheet locale {self.locale}, time zone {self.zone.key})"
            ) from None


@dataclass(frozen=True)
class RowSelection:
    """
    A backfill's row filter (a :class:`~airflow_provider_sheets.model.loop.LoopOptions` selector): the
    rows whose timestamp fell in the interval, found before the rows are read.
    """

    rows: frozenset[int]

    def __call__(self, cells: list[object], row: int) -> bool:
        return row in self.rows

    @property
    def span(self) -> tuple[int, int] | None:
        """The first and last selected rows, or ``None`` when none is."""
        return (min(self.rows), max(self.rows)) if self.rows else None


def select_rows(
    cells: Iterable[tuple[int, object]], column: TimestampColumn, start: datetime, end: datetime
) -> RowSelection:
    """
    The rows whose cell (``(row, cell)`` pairs of the timestamp column) falls in ``[start, end)``;
    blank cells are left out.

    :raises TimestampError: a cell that is not blank and not a date-time.
    """
    selected = set()
    for row, cell in cells:
        moment = column.moment(cell, row)
        if moment is not None and in_interval(moment, start, end):
            selected.add(row)
    return RowSelection(frozenset(selected))
