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
