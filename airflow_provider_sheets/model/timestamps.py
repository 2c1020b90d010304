"""Turn a sheet's timestamp cell into an aware datetime (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Day 0 of Google Sheets' serial date-time numbers.
SERIAL_EPOCH = datetime(1899, 12, 30)

#: How Google Forms writes its ``Timestamp`` column in an en_US spreadsheet.
FORMS_TIMESTAMP_FORMAT = "%m/%d/%Y %H:%M:%S"

_FALLBACK_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%d/%m/%Y %H:%M:%S", "%Y. %m. %d %p %I:%M:%S")


def sheet_zone(name: str) -> ZoneInfo:
    """The spreadsheet's time zone (``properties.timeZone``); UTC when unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_timestamp(cell: object, zone: ZoneInfo, fmt: str = FORMS_TIMESTAMP_FORMAT) -> datetime | None:
    """
    Parse a timestamp cell in the spreadsheet's time zone; ``None`` for a blank cell.

    Accepts a serial number (``UNFORMATTED_VALUE``), text in ``fmt``, or ISO 8601.

    :raises ValueError: the cell is not blank and matches none of these.
    """
    if cell is None or cell == "":
        return None
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return (SERIAL_EPOCH + timedelta(days=float(cell))).replace(tzinfo=zone)
    text = str(cell).strip()
    for candidate in (fmt, *_FALLBACK_FORMATS):
        try:
            return datetime.strptime(text, candidate).replace(tzinfo=zone)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} does not match the timestamp format {fmt!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def in_interval(moment: datetime, start: datetime, end: datetime) -> bool:
    """``start <= moment < end``, comparing aware datetimes in UTC."""
    return start.astimezone(timezone.utc) <= moment.astimezone(timezone.utc) < end.astimezone(timezone.utc)


class TimestampError(ValueError):
    """A row's timestamp cell could not be read (the message names the row, column and zone)."""


class IntervalSelector:
    """
    A backfill's row filter: keeps the rows whose ``column`` cell falls in ``[start, end)``, read in
    the spreadsheet's time zone. Blank cells are left out.

    :param index: the 0-based column of the timestamp cells; ``column`` is its field name.
    :raises TimestampError: (when called) a cell that is not blank and not a timestamp.
    """

    def __init__(self, index: int, column: str, zone: ZoneInfo, fmt: str, start: datetime, end: datetime) -> None:
        self.index = index
        self.column = column
        self.zone = zone
        self.fmt = fmt
        self.start = start
        self.end = end

    def __call__(self, cells: list[object], row: int) -> bool:
        cell = cells[self.index] if self.index < len(cells) else None
        try:
            moment = parse_timestamp(cell, self.zone, self.fmt)
        except ValueError as err:
            raise TimestampError(
                f"row {row}: {err} (column {self.column!r}, spreadsheet time zone {self.zone.key})"
            ) from None
        return moment is not None and in_interval(moment, self.start, self.end)
