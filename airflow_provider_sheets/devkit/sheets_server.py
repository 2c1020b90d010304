"""A local, in-process emulator of the Google Sheets API v4 subset used by Airflow's ``GSheetsHook``.

The unmodified ``google-api-python-client`` talks to it when the hook is built with
``api_endpoint=server.url`` (anonymous credentials), or with a service-account key whose
``token_uri`` is ``server.url + "/token"``.

Cell values are stored as Python values: ``str``, ``int``, ``float``, ``bool``, ``None`` (empty),
``datetime.datetime`` / ``datetime.date`` (date-time cells, such as the Timestamp column of a
Google Forms response sheet) or a string starting with ``#`` such as ``"#REF!"`` (a formula error,
rendered as that text by every render option).

Run ``python -m airflow_provider_sheets.devkit.sheets_server --port 8085 --seed-forms ID`` to serve
in the foreground.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import json
import logging
import math
import re
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as time_of_day
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

__all__ = [
    "A1Range",
    "FORMS_HEADER",
    "FORMS_LOCALISED",
    "KINDS",
    "LOCALES",
    "RequestRecord",
    "SheetsServer",
    "column_to_index",
    "format_a1",
    "index_to_column",
    "main",
    "parse_a1",
    "quote_sheet_title",
    "seed_forms",
]

logger = logging.getLogger(__name__)

#: Header row of the ``Form Responses 1`` tab created by :func:`seed_forms`.
FORMS_HEADER = ["Timestamp", "Name", "Email", "Rating", "Comments"]

#: Request kinds recorded in :attr:`SheetsServer.requests`.
_READ_KINDS = frozenset({"spreadsheets.get", "values.get", "values.batchGet"})
KINDS = (
    "spreadsheets.get",
    "values.get",
    "values.batchGet",
    "values.append",
    "values.update",
    "values.clear",
    "batchUpdate",
    "token",
    "other",
)

_CELL_RE = re.compile(r"([A-Za-z]{0,3})(\d*)")  # Google's last column is ZZZ (18,278)
_DEFAULT_ROWS = 1000
_DEFAULT_COLUMNS = 26
_GID_STEP = 1_000_003  # gids are distinct, increasing and deliberately not equal to the tab index
_TOKEN_LIFETIME = 3600
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_SERIAL_EPOCH = datetime(1899, 12, 30)
#: Spreadsheet locales whose FORMATTED_VALUE this server renders as Google does (their default
#: date, date-time and number formats); and those whose decimal separator is a comma.
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "ko_KR")
_DECIMAL_COMMA = frozenset({"de_DE", "fr_FR"})
#: What Google Forms names the responses tab and its timestamp column in a form of each locale.
FORMS_LOCALISED = {
    "en_US": ("Form Responses 1", "Timestamp"),
    "en_GB": ("Form responses 1", "Timestamp"),
    "de_DE": ("Formularantworten 1", "Zeitstempel"),
    "fr_FR": ("R\u00e9ponses au formulaire 1", "Horodateur"),
    "ko_KR": ("\uc124\ubb38\uc9c0 \uc751\ub2f5 \uc2dc\ud2b8 1", "\ud0c0\uc784\uc2a4\ud0ec\ud504"),
}

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per user' "
    "of service 'sheets.googleapis.com' for consumer 'project_number:000000000000'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}

_VALUE_RENDER = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")
_DATETIME_RENDER = ("SERIAL_NUMBER", "FORMATTED_STRING")
_DIMENSIONS = ("DIMENSION_UNSPECIFIED", "ROWS", "COLUMNS")


# --------------------------------------------------------------------------------------------------
# A1 notation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class A1Range:
    """A parsed A1 range; ``None`` bounds are open (whole rows, whole columns or the whole tab).

    :param sheet: tab title, or ``None`` for "the first tab" (``A1:B2`` without a tab).
    """

    sheet: str | None
    start_col: int | None = None
    start_row: int | None = None
    end_col: int | None = None
    end_row: int | None = None


def column_to_index(letters: str) -> int:
    """Return the 1-based index of column ``letters`` (``A`` → 1, ``AA`` → 27), case-insensitive."""
    if not letters.isascii() or not letters.isalpha():
        raise ValueError(f"Not a column: {letters!r}")
    index = 0
    for char in letters.upper():
        index = index * 26 + ord(char) - ord("A") + 1
    return index


def index_to_column(index: int) -> str:
    """Return the letters of the 1-based column ``index`` (27 → ``AA``)."""
    if index < 1:
        raise ValueError(f"Column index must be >= 1, got {index}")
    letters = ""
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _looks_like_reference(title: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z]{1,3}\d+|\d+|[Rr]\d*[Cc]\d*", title))


def quote_sheet_title(title: str) -> str:
    """Quote a tab title for an A1 range the way Google does in responses.

    Titles made only of letters, digits and underscores that do not look like a cell reference
    stay bare; everything else is wrapped in single quotes with inner quotes doubled.
    """
    if re.fullmatch(r"\w+", title, re.ASCII) and not _looks_like_reference(title):
        return title
    return "'" + title.replace("'", "''") + "'"


def format_a1(title: str, start_row: int, start_col: int, end_row: int, end_col: int) -> str:
    """Format a bounded range such as ``'Form Responses 1'!A2:E10`` (a single cell as ``Sheet1!B3``)."""
    start = f"{index_to_column(start_col)}{start_row}"
    end = f"{index_to_column(end_col)}{end_row}"
    cells = start if start == end else f"{start}:{end}"
    return f"{quote_sheet_title(title)}!{cells}"


def _parse_cell(text: str) -> tuple[int | None, int | None] | None:
    match = _CELL_RE.fullmatch(text)
    if not text or match is None:
        return None
    letters, digits = match.groups()
    row = int(digits) if digits else None
    if row == 0:
        return None
    return (column_to_index(letters) if letters else None), row


def _parse_cells(text: str) -> tuple[int | None, int | None, int | None, int | None] | None:
    """Parse the part after ``!``: ``A1``, ``A1:B2``, ``A:A``, ``A2:B``, ``2:5``; ``None`` if invalid."""
    if ":" not in text:
        cell = _parse_cell(text)
        if cell is None or None in cell:
            return None
        return cell[0], cell[1], cell[0], cell[1]
    first, _, second = text.partition(":")
    start, end = _parse_cell(first), _parse_cell(second)
    if start is None or end is None:
        return None
    (col1, row1), (col2, row2) = start, end
    if (col1 is None) != (col2 is None):
        return None
    if col1 is None and (row1 is None or row2 is None):
        return None
    if col1 is not None and col2 is not None and col2 < col1:
        col1, col2 = col2, col1
    if row1 is not None and row2 is not None and row2 < row1:
        row1, row2 = row2, row1
    return col1, row1, col2, row2


def parse_a1(range_: str) -> A1Range:
    """Parse an A1 range (``'Tab ''x'''!A2:J``, ``Tab!2:5``, ``Tab``, ``A1:B2``…).

    A text without ``!`` that is not a cell range is a tab title.

    :raises ValueError: the text is not a valid A1 range.
    """
    text = range_.strip()
    if not text:
        raise ValueError("Empty range")
    if text.startswith("'"):
        parts: list[str] = []
        pos = 1
        while True:
            quote = text.find("'", pos)
            if quote < 0:
                raise ValueError(f"Unterminated quote in {range_!r}")
            parts.append(text[pos:quote])
            if text[quote + 1 : quote + 2] == "'":
                parts.append("'")
                pos = quote + 2
                continue
            rest = text[quote + 1 :]
            break
        title = "".join(parts)
        if not rest:
            return A1Range(title)
        if not rest.startswith("!"):
            raise ValueError(f"Unexpected text after the tab title in {range_!r}")
        cells = rest[1:]
    elif "!" in text:
        title, _, cells = text.rpartition("!")
    else:
        parsed = _parse_cells(text)
        return A1Range(text) if parsed is None else A1Range(None, *parsed)
    if not title:
        raise ValueError(f"Empty tab title in {range_!r}")
    parsed = _parse_cells(cells)
    if parsed is None:
        raise ValueError(f"Invalid cells {cells!r} in {range_!r}")
    return A1Range(title, *parsed)


# --------------------------------------------------------------------------------------------------
# Cell values
# --------------------------------------------------------------------------------------------------


_TEXT = frozenset({str})


def _encode_other(value: object) -> object:
    return str(value)


#: Compact JSON, ~10x faster than ``json.dumps``: UTF-8 text as is, unknown types as ``str()``;
#: floats in shortest form (``1e16``; a client parses the same number).
_encode = msgspec.json.Encoder(enc_hook=_encode_other, decimal_format="number").encode


def parse_fields(text: str) -> dict[str, Any]:
    """
    Parse a partial-response field mask (``a,b/c,d(e,f(g))``) into a tree: name → subtree, or
    ``None`` for the whole value.

    :raises _ApiError: 400, as Google answers a malformed mask.
    """
    tree, end = _fields(text.replace(" ", ""), 0)
    if end != len(text.replace(" ", "")):
        raise _ApiError(400, f"Invalid field selection {text}")
    return tree


def _fields(text: str, start: int) -> tuple[dict[str, Any], int]:
    tree: dict[str, Any] = {}
    index = start
    while True:
        end = index
        while end < len(text) and text[end] not in ",()":
            end += 1
        path = text[index:end].replace(".", "/").split("/")  # Google takes both separators
        if not all(path):
            raise _ApiError(400, f"Invalid field selection {text}")
        sub = None
        if end < len(text) and text[end] == "(":
            sub, end = _fields(text, end + 1)
            if end >= len(text) or text[end] != ")":
                raise _ApiError(400, f"Invalid field selection {text}")
            end += 1
        for name in reversed(path[1:]):
            sub = {name: sub}
        _merge_field(tree, path[0], sub)
        if end < len(text) and text[end] == ",":
            index = end + 1
            continue
        return tree, end


def _merge_field(tree: dict[str, Any], name: str, sub: dict[str, Any] | None) -> None:
    if name not in tree:
        tree[name] = sub
    elif tree[name] is None or sub is None:
        tree[name] = None  # the whole value
    else:
        for key, value in sub.items():
            _merge_field(tree[name], key, value)


def select_fields(value: Any, tree: dict[str, Any] | None) -> Any:
    """Keep only what ``tree`` (from :func:`parse_fields`) selects; lists are selected element by element."""
    if tree is None or "*" in tree:
        return value
    if isinstance(value, list):
        return [select_fields(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    return {name: select_fields(value[name], sub) for name, sub in tree.items() if name in value}


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _rstrip(cells: list[object]) -> list[object]:
    end = len(cells)
    while end and _is_empty(cells[end - 1]):
        end -= 1
    return cells[:end]


def _local(value: datetime, time_zone: str) -> datetime:
    if value.tzinfo is None:
        return value
    try:
        zone: Any = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = timezone.utc
    return value.astimezone(zone).replace(tzinfo=None)


def _date_text(value: date, locale: str) -> str:
    """A date as the locale's default short date format shows it."""
    d, m, y = value.day, value.month, value.year
    if locale == "en_US":
        return f"{m}/{d}/{y}"
    if locale == "de_DE":
        return f"{d:02d}.{m:02d}.{y}"
    if locale == "ko_KR":
        return f"{y}. {m}. {d}"
    return f"{d:02d}/{m:02d}/{y}"  # en_GB, fr_FR


_ENTERED_DATE = re.compile(
    r"(?P<a>\d{1,4})[./-]\s?(?P<b>\d{1,2})[./-]\s?(?P<c>\d{1,4})\.?"
    r"(?:\s+(?P<noon1>\uc624\uc804|\uc624\ud6c4)?\s*(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?\s*(?P<noon2>[AaPp][Mm])?)?"
)


def _user_entered(value: object, locale: str) -> object:
    """
    A value written with ``valueInputOption=USER_ENTERED``, parsed as if typed into the sheet (this
    server's own reading, apart from the client's): a leading ``'`` keeps text, ``TRUE``/``FALSE``
    become booleans, numbers numbers (a decimal comma in a comma locale), and a numeric date or
    date-time in the locale's date order a date or date-time. Anything else stays text.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("'"):
        return value.lstrip()[1:]
    if text.upper() in ("TRUE", "FALSE"):
        return text.upper() == "TRUE"
    number = text.replace(",", ".") if locale in _DECIMAL_COMMA else text
    if re.fullmatch(r"-?\d+", number):
        return int(number)
    if re.fullmatch(r"-?\d*\.\d+", number):
        return float(number)
    match = _ENTERED_DATE.fullmatch(text)
    return value if match is None else _entered_moment(match, locale, value)


def _entered_moment(match: re.Match[str], locale: str, text: str) -> object:
    a, b, c = int(match["a"]), int(match["b"]), int(match["c"])
    if len(match["a"]) == 4 or locale == "ko_KR":
        year, month, day = a, b, c
    elif locale == "en_US":
        month, day, year = a, b, c
    else:
        day, month, year = a, b, c
    try:
        if match["h"] is None:
            return date(year, month, day)
        hour, noon = int(match["h"]), match["noon1"] or match["noon2"]
        if noon is not None:
            hour = hour % 12 + (12 if noon.lower() in ("pm", "\uc624\ud6c4") else 0)
        return datetime(year, month, day, hour, int(match["m"]), int(match["s"] or 0))
    except ValueError:
        return text


def _time_text(value: datetime, locale: str) -> str:
    """A time of day as the locale's default date-time format shows it."""
    if locale == "en_US":
        return f"{value.hour}:{value.minute:02d}:{value.second:02d}"
    if locale == "ko_KR":
        noon = "\uc624\ud6c4" if value.hour >= 12 else "\uc624\uc804"  # 오후 / 오전
        return f"{noon} {value.hour % 12 or 12}:{value.minute:02d}:{value.second:02d}"
    return f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"


def _format_value(value: object, time_zone: str, locale: str = "en_US") -> str:
    """
    Render a cell as Google's FORMATTED_VALUE (default "Automatic" number format) in the
    spreadsheet's ``locale`` (one of :data:`LOCALES`): its date order and decimal separator.
    """
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.15g}".upper()
        return text.replace(".", ",") if locale in _DECIMAL_COMMA else text
    if isinstance(value, datetime):
        local = _local(value, time_zone)
        return f"{_date_text(local, locale)} {_time_text(local, locale)}"
    if isinstance(value, date):
        return _date_text(value, locale)
    if isinstance(value, time_of_day):
        return f"{value.hour}:{value.minute:02d}:{value.second:02d}"
    return str(value)


def _serial(value: date | time_of_day, time_zone: str) -> float | int:
    """Days since 1899-12-30 (Google's date-time serial number); a time of day is a fraction of one."""
    if isinstance(value, time_of_day):
        return (value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6) / 86400
    if isinstance(value, datetime):
        return (_local(value, time_zone) - _SERIAL_EPOCH) / timedelta(days=1)
    return (value - _SERIAL_EPOCH.date()).days


def _effective_value(value: object, time_zone: str) -> dict[str, Any]:
    """A cell's ``ExtendedValue``: a number (dates as serial numbers), a string or a boolean."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, (int, float)):
        return {"numberValue": value}
    if isinstance(value, (date, time_of_day)):
        return {"numberValue": _serial(value, time_zone)}
    return {"stringValue": str(value)}


def _format_number(value: float, kind: str) -> str:
    """A number in a column formatted as a percentage, a currency or two decimals (en_US style)."""
    if kind == "PERCENT":
        return f"{value * 100:.2f}%"
    if kind == "CURRENCY":
        return f"${value:,.2f}" if value >= 0 else f"-${-value:,.2f}"
    return f"{value:.2f}"


def _render_as(value: object, kind: str | None, value_render: str, datetime_render: str, book: Any) -> object:
    """A cell of a column with a number format (``kind``): its numbers shown that way."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and kind in ("PERCENT", "CURRENCY", "NUMBER") and value_render == "FORMATTED_VALUE":
        return _format_number(float(value), kind)  # type: ignore[arg-type]
    return _render(value, value_render, datetime_render, book.time_zone, book.locale)


def _render(value: object, value_render: str, datetime_render: str, time_zone: str, locale: str = "en_US") -> object:
    if type(value) is str:  # the common case first: text renders as itself in every mode
        return value
    if _is_empty(value):
        return ""
    if value_render == "FORMATTED_VALUE":
        return _format_value(value, time_zone, locale)
    if isinstance(value, (date, time_of_day)):
        if datetime_render == "FORMATTED_STRING":
            return _format_value(value, time_zone, locale)
        return _serial(value, time_zone)
    return value


# --------------------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One served HTTP request.

    :param path: the URL-decoded path, without the query string.
    :param query: the parsed query string (every parameter maps to the list of its values).
    :param kind: one of :data:`KINDS`.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    response_bytes: int
    kind: str


class _ApiError(ValueError):
    """An API error; raised by the store (also to the Python helpers, as a ``ValueError``)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        self.status = status
        self.message = message or _DEFAULT_MESSAGES.get(status, "Error")
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "status": _STATUS_NAMES.get(self.status, "UNKNOWN"),
        }
        if self.status == 429:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "RATE_LIMIT_EXCEEDED",
                    "domain": "googleapis.com",
                    "metadata": {
                        "service": "sheets.googleapis.com",
                        "quota_metric": "sheets.googleapis.com/read_requests",
                    },
                }
            ]
        return {"error": error}


@dataclass
class _Tab:
    sheet_id: int
    title: str
    rows: list[list[object]]
    row_count: int
    column_count: int
    #: hidden from the spreadsheet's tab bar (Google leaves ``hidden`` out of the properties when false)
    hidden: bool = False
    #: ``GRID``, or ``OBJECT`` for a chart sheet (no cells, no ``gridProperties``)
    sheet_type: str = "GRID"
    #: number formats set on whole columns (1-based): ``(type, pattern)``, e.g. ``("PERCENT", "0.00%")``
    formats: dict[int, tuple[str, str]] = field(default_factory=dict)

    def number_format(self, col: int, value: object) -> tuple[str, str] | None:
        """A cell's effective number format: its column's, else the one its value was entered with."""
        if col in self.formats:
            return self.formats[col]
        if isinstance(value, datetime):
            return ("DATE_TIME", "M/d/yyyy H:mm:ss")
        if isinstance(value, date):
            return ("DATE", "M/d/yyyy")
        if isinstance(value, time_of_day):
            return ("TIME", "H:mm:ss")
        return None

    def properties(self, index: int) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": self.sheet_type,
        }
        if self.sheet_type == "GRID":
            properties["gridProperties"] = {"rowCount": self.row_count, "columnCount": self.column_count}
        if self.hidden:
            properties["hidden"] = True
        return properties

    def last_row(self) -> int:
        """1-based index of the last row holding a value (0 for an empty tab)."""
        for index in range(len(self.rows), 0, -1):
            if any(not _is_empty(cell) for cell in self.rows[index - 1]):
                return index
        return 0

    def put(self, row: int, col: int, value: object) -> None:
        if value is None and (row > len(self.rows) or col > len(self.rows[row - 1])):
            return
        while len(self.rows) < row:
            self.rows.append([])
        cells = self.rows[row - 1]
        while len(cells) < col:
            cells.append(None)
        cells[col - 1] = value

    def write(self, row: int, col: int, values: list[list[object]], *, skip_none: bool) -> None:
        """Write a block; ``None`` skips a cell when ``skip_none`` (API semantics), else clears it."""
        for row_offset, cells in enumerate(values):
            for col_offset, value in enumerate(cells):
                if value is None and skip_none:
                    continue
                self.put(row + row_offset, col + col_offset, None if value == "" and skip_none else value)
        self.grow(row + len(values) - 1, col + max((len(cells) for cells in values), default=0) - 1)

    def grow(self, rows: int, cols: int) -> None:
        self.row_count = max(self.row_count, rows)
        self.column_count = max(self.column_count, cols)

    def delete_dimension(self, dimension: str, start: int, end: int) -> None:
        """Delete 0-based ``[start, end)`` rows or columns; the grid shrinks accordingly."""
        if dimension == "ROWS":
            end = min(end, self.row_count)
            if start < 0 or start >= end:
                raise _ApiError(400, f"Invalid row range [{start}, {end}) for sheet {self.sheet_id}")
            if end - start >= self.row_count:
                raise _ApiError(400, "Invalid requests[0].deleteDimension: You can't delete all the rows on the sheet.")
            del self.rows[start:end]
            self.row_count -= end - start
        elif dimension == "COLUMNS":
            end = min(end, self.column_count)
            if start < 0 or start >= end:
                raise _ApiError(400, f"Invalid column range [{start}, {end}) for sheet {self.sheet_id}")
            if end - start >= self.column_count:
                raise _ApiError(
                    400, "Invalid requests[0].deleteDimension: You can't delete all the columns on the sheet."
                )
            for cells in self.rows:
                del cells[start:end]
            self.column_count -= end - start
        else:
            raise _ApiError(400, f"Unsupported dimension: {dimension}")

    def insert_dimension(self, dimension: str, start: int, end: int) -> None:
        """Insert empty rows or columns at 0-based ``[start, end)``."""
        limit = self.row_count if dimension == "ROWS" else self.column_count
        if start < 0 or end <= start or start > limit:
            raise _ApiError(400, f"Invalid insert range [{start}, {end}) for sheet {self.sheet_id}")
        if dimension == "ROWS":
            if start < len(self.rows):
                self.rows[start:start] = [[] for _ in range(end - start)]
            self.row_count += end - start
        elif dimension == "COLUMNS":
            for cells in self.rows:
                if start < len(cells):
                    cells[start:start] = [None] * (end - start)
            self.column_count += end - start
        else:
            raise _ApiError(400, f"Unsupported dimension: {dimension}")


@dataclass
class _Spreadsheet:
    spreadsheet_id: str
    title: str
    time_zone: str
    tabs: list[_Tab]
    next_gid: int = 0
    locale: str = "en_US"

    def find(self, title: str) -> _Tab | None:
        """Find a tab by title: exact match first, then case-insensitive (as Google does)."""
        for tab in self.tabs:
            if tab.title == title:
                return tab
        folded = title.casefold()
        return next((tab for tab in self.tabs if tab.title.casefold() == folded), None)

    def by_gid(self, sheet_id: object) -> _Tab:
        for tab in self.tabs:
            if tab.sheet_id == sheet_id:
                return tab
        raise _ApiError(400, f"No grid with id: {sheet_id}")

    def add_tab(
        self,
        title: str | None,
        rows: list[list[object]] | None = None,
        *,
        row_count: int | None = None,
        column_count: int | None = None,
        sheet_id: int | None = None,
        index: int | None = None,
        hidden: bool = False,
        sheet_type: str = "GRID",
    ) -> _Tab:
        if title is None:
            number = len(self.tabs) + 1
            while self.find(f"Sheet{number}") is not None:
                number += 1
            title = f"Sheet{number}"
        self.check_title(title)
        if sheet_id is None:
            sheet_id = self.next_gid
        elif any(tab.sheet_id == sheet_id for tab in self.tabs):
            raise _ApiError(400, f"Invalid requests[0].addSheet: Sheet with id {sheet_id} already exists.")
        self.next_gid = max(self.next_gid, sheet_id + _GID_STEP)
        data = [list(cells) for cells in rows or []]
        widest = max((len(cells) for cells in data), default=0)
        tab = _Tab(
            sheet_id=sheet_id,
            title=title,
            rows=data,
            row_count=max(row_count or _DEFAULT_ROWS, len(data)),
            column_count=max(column_count or _DEFAULT_COLUMNS, widest),
            hidden=hidden,
            sheet_type=sheet_type,
        )
        self.tabs.insert(len(self.tabs) if index is None else index, tab)
        return tab

    def check_title(self, title: str, current: _Tab | None = None) -> None:
        if not title:
            raise _ApiError(400, "The sheet name cannot be empty.")
        existing = self.find(title)
        if existing is not None and existing is not current and existing.title.casefold() == title.casefold():
            raise _ApiError(400, f'A sheet with the name "{title}" already exists. Please enter another name.')

    def metadata(self) -> dict[str, Any]:
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {"title": self.title, "locale": self.locale, "timeZone": self.time_zone},
            "sheets": [{"properties": tab.properties(index)} for index, tab in enumerate(self.tabs)],
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id}/edit",
        }


@dataclass
class _Fault:
    status: int
    remaining: int
    pattern: re.Pattern[str] | None
    message: str | None


class Hold:
    """One API request held before it is answered (see :meth:`SheetsServer.hold_next`)."""

    def __init__(self, kind: str | None, timeout: float, skip: int = 0, spreadsheet_id: str | None = None) -> None:
        self.kind = kind
        self.spreadsheet_id = spreadsheet_id
        self.timeout = timeout
        #: matching requests still to let through before the one held
        self.skip = skip
        #: set when the held request has arrived (it then waits for :meth:`release`).
        self.arrived = threading.Event()
        self._released = threading.Event()

    def matches(self, spreadsheet_id: str | None) -> bool:
        return self.spreadsheet_id is None or self.spreadsheet_id == spreadsheet_id

    def release(self) -> None:
        """Let the held request be answered."""
        self._released.set()

    def _wait(self) -> None:
        self.arrived.set()
        self._released.wait(self.timeout)


def busiest_window(times: list[float], window: float) -> int:
    """The most requests of ``times`` (e.g. :attr:`SheetsServer.read_times`) in any ``window`` seconds."""
    return max((sum(1 for t in times if start <= t < start + window) for start in times), default=0)


def _transpose(values: list[list[object]]) -> list[list[object]]:
    width = max((len(cells) for cells in values), default=0)
    return [[cells[i] if i < len(cells) else None for cells in values] for i in range(width)]


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------

_ID = r"/v4/spreadsheets/([^/:]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str, str]] = [
    ("GET", re.compile(_ID), "spreadsheets.get", "_api_get"),
    ("POST", re.compile(_ID + ":batchUpdate"), "batchUpdate", "_api_batch_update"),
    ("GET", re.compile(_ID + "/values:batchGet"), "values.batchGet", "_api_values_batch_get"),
    ("POST", re.compile(_ID + "/values:batchUpdate"), "other", "_api_values_batch_update"),
    ("POST", re.compile(_ID + "/values:batchClear"), "other", "_api_values_batch_clear"),
    ("POST", re.compile(_ID + "/values/(.+):append"), "values.append", "_api_values_append"),
    ("POST", re.compile(_ID + "/values/(.+):clear"), "values.clear", "_api_values_clear"),
    ("GET", re.compile(_ID + "/values/(.+)"), "values.get", "_api_values_get"),
    ("PUT", re.compile(_ID + "/values/(.+)"), "values.update", "_api_values_update"),
]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: SheetsServer) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ESF"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # headers and body are written separately: without this, Nagle + delayed ACK add ~40 ms per response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server: _HTTPServer = self.server  # type: ignore[assignment]
        with server.connections_lock:
            server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            server: _HTTPServer = self.server  # type: ignore[assignment]
            with server.connections_lock:
                server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        app: SheetsServer = self.server.app  # type: ignore[attr-defined]
        headers: dict[str, str] = {}
        status, payload = app._serve(method, self.path, self.headers.get("Authorization"), body, headers)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"')
        self.end_headers()
        self.wfile.write(payload)


class SheetsServer:
    """An in-memory Google Sheets API v4 emulator served over HTTP from a daemon thread.

    :param host: interface to bind.
    :param port: port to bind; 0 picks a free one (see :attr:`url`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        #: every served request, in order (``/_stats`` excluded).
        self.requests: list[RequestRecord] = []
        #: seconds every API response waits before being computed.
        self.latency: float = 0.0
        #: when true, API requests need ``Authorization: Bearer <token issued by /token>``.
        self.require_auth: bool = False
        self._lock = threading.RLock()
        self._books: dict[str, _Spreadsheet] = {}
        self._faults: list[_Fault] = []
        self._holds: list[Hold] = []
        self._accounts: dict[str, Any] = {}
        self._tokens: dict[str, float] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        #: ``(budget, window seconds)`` of read requests (see :meth:`set_read_quota`), or ``None``
        self._read_quota: tuple[int, float] | None = None
        #: when each read request the quota let through was served (``time.monotonic()``)
        self.read_times: list[float] = []
        #: read requests answered 429 because of the quota
        self.quota_rejections = 0
        self._retry_after = False

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> SheetsServer:
        """Bind and serve in a daemon thread (no-op when already running)."""
        if self._httpd is None:
            self._httpd = _HTTPServer((self.host, self.port), self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"sheets-server-{self._httpd.server_port}",
                daemon=True,
            )
            self._thread.start()
            logger.debug("Sheets server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and any kept-alive connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with httpd.connections_lock:
            connections = list(httpd.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SheetsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43123`` (the hook's ``api_endpoint``)."""
        if self._httpd is None:
            raise RuntimeError("The Sheets server is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    # -- data helpers -------------------------------------------------------------------------------

    def create_spreadsheet(
        self,
        spreadsheet_id: str,
        sheets: dict[str, list[list[object]]] | None = None,
        *,
        title: str = "Untitled",
        time_zone: str = "Etc/UTC",
        row_count: int | None = None,
        locale: str = "en_US",
    ) -> None:
        """Create (or replace) a spreadsheet.

        :param sheets: ordered ``{tab title: rows}``; defaults to one empty ``Sheet1``.
        :param row_count: grid rows of every tab (default ``max(1000, len(rows))``).
        :param locale: ``properties.locale``, one of :data:`LOCALES`: how FORMATTED_VALUE shows dates,
            times and decimals (``datetime`` and ``date`` cells are stored as date-times).
        """
        if locale not in LOCALES:
            raise ValueError(f"locale {locale!r} is not one this server formats; use one of {', '.join(LOCALES)}")
        book = _Spreadsheet(spreadsheet_id, title, time_zone, [], locale=locale)
        for tab_title, rows in (sheets or {"Sheet1": []}).items():
            book.add_tab(tab_title, rows, row_count=row_count)
        with self._lock:
            self._books[spreadsheet_id] = book

    def add_sheet(
        self,
        spreadsheet_id: str,
        title: str,
        rows: list[list[object]] | None = None,
        *,
        index: int | None = None,
        hidden: bool = False,
        sheet_type: str = "GRID",
    ) -> int:
        """
        Add a tab (at the end, or at ``index``) and return its sheetId (gid).

        :param hidden: hidden from the tab bar (the API still serves its cells).
        :param sheet_type: ``GRID``, or ``OBJECT`` for a chart sheet: no cells, no grid properties,
            and a values request naming it is a 400.
        """
        with self._lock:
            book = self._book(spreadsheet_id)
            return book.add_tab(title, rows, index=index, hidden=hidden, sheet_type=sheet_type).sheet_id

    def append_rows(self, spreadsheet_id: str, sheet: str | int, rows: list[list[object]]) -> tuple[int, int]:
        """Append rows after the last non-empty row; return the 1-based first and last rows written.

        With no rows, returns ``(next_row, next_row - 1)``.
        """
        with self._lock:
            tab = self._tab(spreadsheet_id, sheet)
            first = tab.last_row() + 1
            tab.write(first, 1, [list(cells) for cells in rows], skip_none=False)
            return first, first + len(rows) - 1

    def set_rows(self, spreadsheet_id: str, sheet: str | int, rows: list[list[object]]) -> None:
        """Replace every cell of a tab (the grid grows if needed, never shrinks)."""
        with self._lock:
            tab = self._tab(spreadsheet_id, sheet)
            tab.rows = [list(cells) for cells in rows]
            tab.grow(len(tab.rows), max((len(cells) for cells in tab.rows), default=0))

    def get_rows(self, spreadsheet_id: str, sheet: str | int) -> list[list[object]]:
        """Return a copy of the stored rows of a tab."""
        with self._lock:
            return [list(cells) for cells in self._tab(spreadsheet_id, sheet).rows]

    def delete_rows(self, spreadsheet_id: str, sheet: str | int, start_row: int, count: int = 1) -> None:
        """Delete ``count`` rows from 1-based ``start_row``; rows below shift up, the grid shrinks."""
        with self._lock:
            self._tab(spreadsheet_id, sheet).delete_dimension("ROWS", start_row - 1, start_row - 1 + count)

    def insert_rows(self, spreadsheet_id: str, sheet: str | int, before_row: int, rows: list[list[object]]) -> None:
        """Insert rows before 1-based ``before_row``; rows below shift down, the grid grows."""
        if not rows:
            return
        with self._lock:
            tab = self._tab(spreadsheet_id, sheet)
            tab.insert_dimension("ROWS", before_row - 1, before_row - 1 + len(rows))
            tab.write(before_row, 1, [list(cells) for cells in rows], skip_none=False)

    def set_cell(self, spreadsheet_id: str, sheet: str | int, row: int, col: int, value: object) -> None:
        """Set one cell (1-based row and column); ``None`` empties it."""
        if row < 1 or col < 1:
            raise ValueError(f"Row and column are 1-based, got ({row}, {col})")
        with self._lock:
            tab = self._tab(spreadsheet_id, sheet)
            tab.put(row, col, value)
            tab.grow(row, col)

    def set_column_format(self, spreadsheet_id: str, sheet: str | int, col: int, kind: str, pattern: str = "") -> None:
        """
        Give a whole column (1-based) a number format (``PERCENT``, ``CURRENCY``, ``NUMBER``, ``DATE``,
        ``TIME``, ``DATE_TIME``, ``TEXT``…), as Format > Number does: its numbers show that way, and
        ``spreadsheets.get`` with grid data reports it for each of its cells.
        """
        with self._lock:
            self._tab(spreadsheet_id, sheet).formats[col] = (kind, pattern)

    def rename_sheet(self, spreadsheet_id: str, old: str | int, new: str) -> None:
        """Rename a tab (``ValueError`` if the new title is taken)."""
        with self._lock:
            book = self._book(spreadsheet_id)
            tab = self._tab(spreadsheet_id, old)
            book.check_title(new, tab)
            tab.title = new

    def _book(self, spreadsheet_id: str) -> _Spreadsheet:
        try:
            return self._books[spreadsheet_id]
        except KeyError:
            raise KeyError(f"No spreadsheet {spreadsheet_id!r}") from None

    def _tab(self, spreadsheet_id: str, sheet: str | int) -> _Tab:
        book = self._book(spreadsheet_id)
        if isinstance(sheet, int):
            tab = next((tab for tab in book.tabs if tab.sheet_id == sheet), None)
        else:
            tab = book.find(sheet)
        if tab is None:
            raise KeyError(f"No tab {sheet!r} in spreadsheet {spreadsheet_id!r}")
        return tab

    # -- faults, auth and accounting ----------------------------------------------------------------

    def fail_next(self, status: int, count: int = 1, path_regex: str | None = None, message: str | None = None) -> None:
        """Answer the next ``count`` matching requests with HTTP ``status`` and a Google-style error.

        :param path_regex: searched in the URL-decoded path; by default every API request (not ``/token``).
        :param message: error message; defaults to Google's usual text for ``status``.
        """
        if status < 400 or count < 1:
            raise ValueError("status must be an HTTP error (>= 400) and count >= 1")
        pattern = re.compile(path_regex) if path_regex is not None else None
        with self._lock:
            self._faults.append(_Fault(status, count, pattern, message))

    def hold_next(
        self, kind: str | None = None, timeout: float = 300.0, skip: int = 0, spreadsheet_id: str | None = None
    ) -> Hold:
        """Hold the next API request (of ``kind``, e.g. ``"values.batchGet"``) unanswered until released.

        The client sees a slow response, as from a stalled network: the way to freeze a caller at a
        known point. The request is answered normally after :meth:`Hold.release` (or ``timeout``).

        :param skip: let this many matching requests through first (hold the second page: ``skip=1``).
        :param spreadsheet_id: hold only a request on this spreadsheet.
        """
        hold = Hold(kind, timeout, skip, spreadsheet_id)
        with self._lock:
            self._holds.append(hold)
        return hold

    def clear_faults(self) -> None:
        """Drop every pending injected fault and release every hold."""
        with self._lock:
            self._faults.clear()
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.release()

    def request_count(self, kind: str | None = None) -> int:
        """Count served API requests, or those of one ``kind`` (``"token"`` counts only when asked)."""
        with self._lock:
            if kind is None:
                return sum(1 for record in self.requests if record.kind != "token")
            return sum(1 for record in self.requests if record.kind == kind)

    def reset_stats(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    def register_service_account(self, client_email: str, public_key_pem: str) -> None:
        """Accept JWT bearer assertions from ``client_email`` signed by this key (PEM key or certificate)."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        data = public_key_pem.encode()
        key: Any
        if b"BEGIN CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
        with self._lock:
            self._accounts[client_email] = key

    # -- request dispatch ---------------------------------------------------------------------------

    def set_read_quota(self, budget: int | None, window: float = 60.0, retry_after: bool = False) -> None:
        """
        Answer read requests (``spreadsheets.get``, ``values.get``, ``values.batchGet``) with Google's
        429 ``RESOURCE_EXHAUSTED`` once ``budget`` of them were served in the last ``window`` seconds
        (Google: 60 a minute per user); ``None`` lifts the quota.

        :param retry_after: also send ``Retry-After`` (whole seconds until a request fits again),
            which Google's front ends send on some 429s and not on others.
        """
        with self._lock:
            self._read_quota = None if budget is None else (budget, window)
            self._retry_after = retry_after
            self.read_times.clear()
            self.quota_rejections = 0

    def _over_quota(self, kind: str) -> bool | int:
        """
        Count a read request against the quota (under the lock): ``False`` when it is served, else
        ``True``, or the seconds of its ``Retry-After``.
        """
        if self._read_quota is None or kind not in _READ_KINDS:
            return False
        budget, window = self._read_quota
        now = time.monotonic()
        recent = [served for served in self.read_times[-budget:] if served > now - window]
        if len(recent) >= budget:
            self.quota_rejections += 1
            return max(1, math.ceil(recent[0] + window - now)) if self._retry_after else True
        self.read_times.append(now)
        return False

    def _serve(
        self,
        method: str,
        target: str,
        authorization: str | None,
        body: bytes,
        reply_headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Answer one request; return the status and the JSON body (recorded before it is sent)."""
        split = urlsplit(target)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        if split.path == "/_stats" and method == "GET":
            with self._lock:
                counts = Counter(record.kind for record in self.requests)
            return 200, json.dumps({"requests": dict(counts)}).encode()

        params: tuple[str, ...] = ()
        kind, handler = "other", None
        if split.path == "/token":
            kind, handler = "token", ("_api_token" if method == "POST" else None)
        else:
            for route_method, pattern, route_kind, name in _ROUTES:
                match = pattern.fullmatch(split.path)
                if match and route_method == method:
                    kind, handler, params = route_kind, name, tuple(unquote(group) for group in match.groups())
                    break
        is_api = kind != "token"

        with self._lock:
            fault = next(
                (f for f in self._faults if (f.pattern.search(path) if f.pattern is not None else is_api)), None
            )
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            elif over := self._over_quota(kind):
                fault = _Fault(429, 1, None, None)  # the quota: Google's 429 body
                if reply_headers is not None and over is not True:
                    reply_headers["Retry-After"] = str(over)
            on = params[0] if params else None
            hold = next((h for h in self._holds if is_api and h.kind in (None, kind) and h.matches(on)), None)
            if hold is not None and hold.skip > 0:
                hold.skip -= 1
                hold = None
            elif hold is not None:
                self._holds.remove(hold)
        if hold is not None:
            hold._wait()
        if is_api and self.latency > 0:
            time.sleep(self.latency)

        try:
            if fault is not None:
                raise _ApiError(fault.status, fault.message)
            if handler is None:
                raise _ApiError(404, f"Method {method} {path} not found.")
            with self._lock:
                if is_api and self.require_auth:
                    self._check_auth(authorization)
                status, payload = getattr(self, handler)(*params, query=query, body=body)
                fields = query.get("fields", [""])[-1]
                if fields:
                    payload = select_fields(payload, parse_fields(fields))
                data = _encode(payload)  # a response may hold the stored rows themselves
        except _ApiError as error:
            status, data = error.status, _encode(error.body())
        except Exception:
            logger.exception("Sheets server failed on %s %s", method, path)
            status, data = 500, _encode(_ApiError(500).body())
        if query.get("prettyPrint", ["true"])[-1].lower() != "false":
            data = msgspec.json.format(data, indent=2)  # Google's default; the client never turns it off
        with self._lock:
            self.requests.append(RequestRecord(method, path, query, status, len(data), kind))
        return status, data

    def _check_auth(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _ApiError(
                401,
                "Request is missing required authentication credential. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
            )
        expiry = self._tokens.get(token.strip())
        if expiry is None or expiry < time.time():
            raise _ApiError(401)

    def _api_token(self, *, query: dict[str, list[str]], body: bytes) -> tuple[int, dict[str, Any]]:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def invalid(description: str, error: str = "invalid_grant") -> tuple[int, dict[str, Any]]:
            return 400, {"error": error, "error_description": description}

        form = parse_qs(body.decode("utf-8", "replace"))
        grant_type = form.get("grant_type", [""])[0]
        if grant_type != _JWT_BEARER:
            return invalid(f"Invalid grant_type: {grant_type}", "unsupported_grant_type")
        assertion = form.get("assertion", [""])[0]
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64url(header_b64))
            claims = json.loads(_b64url(claims_b64))
            signature = _b64url(signature_b64)
        except ValueError:
            return invalid("Invalid JWT: the assertion is not a JWT.")
        key = self._accounts.get(claims.get("iss"))
        if key is None:
            return invalid("Invalid grant: account not found")
        if header.get("alg") != "RS256":
            return invalid("Invalid JWT: only RS256 is supported.")
        try:
            key.verify(signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return invalid("Invalid JWT Signature.")
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] < time.time() - 60:
            return invalid(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim."
            )
        token = "ya29." + secrets.token_urlsafe(32)
        self._tokens[token] = time.time() + _TOKEN_LIFETIME
        return 200, {"access_token": token, "expires_in": _TOKEN_LIFETIME, "token_type": "Bearer"}

    # -- API handlers (called with the lock held) ---------------------------------------------------

    def _api_book(self, spreadsheet_id: str) -> _Spreadsheet:
        book = self._books.get(spreadsheet_id)
        if book is None:
            raise _ApiError(404)
        return book

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        if not body:
            return {}
        try:
            data = json.loads(body)
        except ValueError:
            raise _ApiError(400, "Invalid JSON payload received.") from None
        if not isinstance(data, dict):
            raise _ApiError(400, "Invalid JSON payload received. Expected an object.")
        return data

    @staticmethod
    def _option(query: dict[str, list[str]], name: str, allowed: tuple[str, ...], default: str) -> str:
        values = query.get(name)
        if not values:
            return default
        if values[-1] not in allowed:
            snake = re.sub(r"([A-Z])", r"_\1", name).lower()
            raise _ApiError(400, f"Invalid value at '{snake}', \"{values[-1]}\"")
        return values[-1]

    @staticmethod
    def _entered(book: _Spreadsheet, values: list[list[object]], query: dict[str, list[str]]) -> list[list[object]]:
        """The values as stored: as sent (``RAW``), or parsed as typed in (``USER_ENTERED``); the option is required."""
        option = query.get("valueInputOption")
        if not option:
            raise _ApiError(400, "'valueInputOption' is required but not specified")
        if option[-1] not in ("RAW", "USER_ENTERED"):
            raise _ApiError(400, f"Invalid value at 'value_input_option', \"{option[-1]}\"")
        if option[-1] == "RAW":
            return values
        return [[_user_entered(cell, book.locale) for cell in cells] for cells in values]

    @staticmethod
    def _values(data: dict[str, Any], where: str = "values") -> list[list[object]]:
        values = data.get("values") or []
        if not isinstance(values, list) or not all(isinstance(cells, list) for cells in values):
            raise _ApiError(400, f"Invalid {where}: expected a list of lists.")
        return _transpose(values) if data.get("majorDimension") == "COLUMNS" else values

    def _resolve(self, book: _Spreadsheet, range_: str) -> tuple[_Tab, A1Range]:
        try:
            a1 = parse_a1(range_)
        except ValueError:
            raise _ApiError(400, f"Unable to parse range: {range_}") from None
        if a1.sheet is None:
            literal = book.find(range_.strip())
            if literal is not None and literal.sheet_type == "GRID":
                return literal, A1Range(literal.title)
            first = next((tab for tab in book.tabs if tab.sheet_type == "GRID" and not tab.hidden), None)
            if first is None or literal is not None:
                raise _ApiError(400, f"Unable to parse range: {range_}")
            return first, a1
        tab = book.find(a1.sheet)
        if tab is None or tab.sheet_type != "GRID":  # a chart sheet has no cells to name
            raise _ApiError(400, f"Unable to parse range: {range_}")
        return tab, a1

    @staticmethod
    def _bounds(tab: _Tab, a1: A1Range) -> tuple[int, int, int, int]:
        """Bounds of ``a1`` clipped to the grid; a start outside the grid is an error, as in Google."""
        row1, col1 = a1.start_row or 1, a1.start_col or 1
        if row1 > tab.row_count or col1 > tab.column_count:
            requested = format_a1(tab.title, row1, col1, a1.end_row or row1, a1.end_col or col1)
            raise _ApiError(
                400,
                f"Range ({requested}) exceeds grid limits. Max rows: {tab.row_count}, max columns: {tab.column_count}",
            )
        row2 = min(a1.end_row or tab.row_count, tab.row_count)
        col2 = min(a1.end_col or tab.column_count, tab.column_count)
        return row1, col1, row2, col2

    @staticmethod
    def _value_range(
        book: _Spreadsheet,
        tab: _Tab,
        bounds: tuple[int, int, int, int],
        major_dimension: str,
        value_render: str,
        datetime_render: str,
        shared: bool = False,
    ) -> dict[str, Any]:
        """
        :param shared: the response may hold the stored rows themselves (no copy per row), for a
            handler that writes nothing before its response is encoded (under the server's lock,
            so no other request writes meanwhile either); a write's ``updatedData`` is copied,
            since a later range of the same request may change those rows.
        """
        row1, col1, row2, col2 = bounds
        rows = tab.rows[row1 - 1 : min(row2, len(tab.rows))]
        if shared and col1 == 1 and all(len(cells) <= col2 for cells in rows):
            matrix = rows
        else:
            matrix = [cells[col1 - 1 : col2] for cells in rows]
        dimension = "COLUMNS" if major_dimension == "COLUMNS" else "ROWS"
        if dimension == "COLUMNS":
            matrix = _transpose(matrix)
        text = _TEXT.issuperset
        lines: list[list[object]] = []
        rendered: list[bool] = []  # whether a line is text that renders as itself
        for cells in matrix:
            # a row of text ending in a non-empty cell (most rows) renders as itself in every mode
            if cells and cells[-1] and text(map(type, cells)):
                lines.append(cells)
                rendered.append(True)
            else:
                cells = _rstrip(cells)
                lines.append(cells)
                rendered.append(text(map(type, cells)))
        while lines and not lines[-1]:
            lines.pop()
            rendered.pop()
        result: dict[str, Any] = {"range": format_a1(tab.title, *bounds), "majorDimension": dimension}
        if lines:
            zone, locale = book.time_zone, book.locale
            if tab.formats and dimension == "ROWS":
                kinds = [tab.formats.get(col, ("", ""))[0] or None for col in range(col1, col2 + 1)]
                result["values"] = [
                    [
                        _render_as(value, kinds[i] if i < len(kinds) else None, value_render, datetime_render, book)
                        for i, value in enumerate(cells)
                    ]
                    for cells in lines
                ]
                return result
            result["values"] = [
                cells if as_is else [_render(value, value_render, datetime_render, zone, locale) for value in cells]
                for cells, as_is in zip(lines, rendered, strict=True)
            ]
        return result

    def _read_options(self, query: dict[str, list[str]], prefix: str = "") -> tuple[str, str, str]:
        def name(option: str) -> str:
            return prefix + option[0].upper() + option[1:] if prefix else option

        return (
            self._option(query, name("majorDimension"), _DIMENSIONS, "ROWS"),
            self._option(query, name("valueRenderOption"), _VALUE_RENDER, "FORMATTED_VALUE"),
            self._option(query, name("dateTimeRenderOption"), _DATETIME_RENDER, "SERIAL_NUMBER"),
        )

    def _api_get(self, spreadsheet_id: str, *, query: dict[str, list[str]], body: bytes) -> tuple[int, dict[str, Any]]:
        book = self._api_book(spreadsheet_id)
        meta = book.metadata()
        if query.get("includeGridData", ["false"])[0].lower() != "true" or not query.get("ranges"):
            return 200, meta
        # grid data of the requested ranges: the sheets they are on, each with its cells' values and formats
        sheets = []
        for range_ in query["ranges"]:
            tab, a1 = self._resolve(book, range_)
            row1, col1, row2, col2 = self._bounds(tab, a1)
            entry = {
                "properties": tab.properties(book.tabs.index(tab)),
                "data": [self._grid_data(book, tab, row1, col1, row2, col2)],
            }
            sheets.append(entry)
        meta["sheets"] = sheets
        return 200, meta

    @staticmethod
    def _grid_data(book: _Spreadsheet, tab: _Tab, row1: int, col1: int, row2: int, col2: int) -> dict[str, Any]:
        """``GridData`` of a block: per cell its effective value, formatted value and number format."""
        row_data = []
        for row in range(row1, min(row2, len(tab.rows)) + 1):
            cells = tab.rows[row - 1]
            values = []
            for col in range(col1, min(col2, len(cells)) + 1):
                value = cells[col - 1]
                cell: dict[str, Any] = {}
                if not _is_empty(value):
                    cell["effectiveValue"] = _effective_value(value, book.time_zone)
                    shown = _render_as(
                        value, (tab.formats.get(col) or ("", ""))[0] or None, "FORMATTED_VALUE", "", book
                    )
                    cell["formattedValue"] = shown
                    number_format = tab.number_format(col, value)
                    if number_format is not None:
                        cell["effectiveFormat"] = {
                            "numberFormat": {"type": number_format[0], "pattern": number_format[1]}
                        }
                values.append(cell)
            row_data.append({"values": values} if values else {})
        return {"startRow": row1 - 1, "startColumn": col1 - 1, "rowData": row_data}

    def _api_values_get(
        self, spreadsheet_id: str, range_: str, *, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        book = self._api_book(spreadsheet_id)
        options = self._read_options(query)
        tab, a1 = self._resolve(book, range_)
        return 200, self._value_range(book, tab, self._bounds(tab, a1), *options, shared=True)

    def _api_values_batch_get(
        self, spreadsheet_id: str, *, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        book = self._api_book(spreadsheet_id)
        options = self._read_options(query)
        value_ranges = []
        for range_ in query.get("ranges", []):
            tab, a1 = self._resolve(book, range_)
            value_ranges.append(self._value_range(book, tab, self._bounds(tab, a1), *options, shared=True))
        return 200, {"spreadsheetId": spreadsheet_id, "valueRanges": value_ranges}

    def _update_response(
        self,
        book: _Spreadsheet,
        tab: _Tab,
        row: int,
        col: int,
        values: list[list[object]],
        query: dict[str, list[str]],
    ) -> dict[str, Any]:
        width = max((len(cells) for cells in values), default=0)
        response: dict[str, Any] = {"spreadsheetId": book.spreadsheet_id}
        if not values or not width:
            return response
        bounds = (row, col, row + len(values) - 1, col + width - 1)
        response.update(
            updatedRange=format_a1(tab.title, *bounds),
            updatedRows=sum(1 for cells in values if cells),
            updatedColumns=width,
            updatedCells=sum(len(cells) for cells in values),
        )
        if query.get("includeValuesInResponse", ["false"])[-1].lower() == "true":
            _, value_render, datetime_render = self._read_options(query, prefix="response")
            response["updatedData"] = self._value_range(book, tab, bounds, "ROWS", value_render, datetime_render)
        return response

    def _write_range(
        self, book: _Spreadsheet, range_: str, data: dict[str, Any], query: dict[str, list[str]]
    ) -> dict[str, Any]:
        tab, a1 = self._resolve(book, range_)
        values = self._entered(book, self._values(data), query)
        row, col = a1.start_row or 1, a1.start_col or 1
        last_row = row + len(values) - 1
        last_col = col + max((len(cells) for cells in values), default=0) - 1
        if a1.end_row is not None and last_row > a1.end_row:
            raise _ApiError(400, f"Requested writing within range [{range_}], but tried writing to row [{last_row}]")
        if a1.end_col is not None and last_col > a1.end_col:
            raise _ApiError(
                400,
                f"Requested writing within range [{range_}], but tried writing to column [{index_to_column(last_col)}]",
            )
        tab.write(row, col, values, skip_none=True)
        return self._update_response(book, tab, row, col, values, query)

    def _api_values_update(
        self, spreadsheet_id: str, range_: str, *, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        book = self._api_book(spreadsheet_id)
        return 200, self._write_range(book, range_, self._json(body), query)

    def _api_values_append(
        self, spreadsheet_id: str, range_: str, *, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        book = self._api_book(spreadsheet_id)
        tab, a1 = self._resolve(book, range_)
        values = self._entered(book, self._values(self._json(body)), query)
        insert = self._option(query, "insertDataOption", ("OVERWRITE", "INSERT_ROWS"), "OVERWRITE")
        table_end = tab.last_row()
        response: dict[str, Any] = {"spreadsheetId": spreadsheet_id}
        if table_end:
            table_start = next(i for i in range(1, table_end + 1) if any(not _is_empty(v) for v in tab.rows[i - 1]))
            width = max(len(_rstrip(cells)) for cells in tab.rows[:table_end])
            response["tableRange"] = format_a1(tab.title, table_start, 1, table_end, max(width, 1))
        row, col = table_end + 1, a1.start_col or 1
        if insert == "INSERT_ROWS" and values:
            tab.row_count += len(values)
        tab.write(row, col, values, skip_none=True)
        response["updates"] = self._update_response(book, tab, row, col, values, query)
        return 200, response

    def _clear(self, book: _Spreadsheet, range_: str) -> str:
        tab, a1 = self._resolve(book, range_)
        bounds = self._bounds(tab, a1)
        row1, col1, row2, col2 = bounds
        for row in range(row1, min(row2, len(tab.rows)) + 1):
            cells = tab.rows[row - 1]
            for col in range(col1, min(col2, len(cells)) + 1):
                cells[col - 1] = None
        return format_a1(tab.title, *bounds)

    def _api_values_clear(
        self, spreadsheet_id: str, range_: str, *, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        book = self._api_book(spreadsheet_id)
        return 200, {"spreadsheetId": spreadsheet_id, "clearedRange": self._clear(book, range_)}

    def _api_values_batch_clear(
        self, spreadsheet_id: str, *, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        book = self._api_book(spreadsheet_id)
        ranges = self._json(body).get("ranges") or []
        scratch = copy.deepcopy(book)
        cleared = [self._clear(scratch, range_) for range_ in ranges]
        self._books[spreadsheet_id] = scratch
        return 200, {"spreadsheetId": spreadsheet_id, "clearedRanges": cleared}

    def _api_values_batch_update(
        self, spreadsheet_id: str, *, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        book = self._api_book(spreadsheet_id)
        data = self._json(body)
        options = {
            "includeValuesInResponse": [str(data.get("includeValuesInResponse", False)).lower()],
            "responseValueRenderOption": [data.get("responseValueRenderOption", "FORMATTED_VALUE")],
            "responseDateTimeRenderOption": [data.get("responseDateTimeRenderOption", "SERIAL_NUMBER")],
            **({"valueInputOption": [data["valueInputOption"]]} if data.get("valueInputOption") else {}),
        }
        scratch = copy.deepcopy(book)
        responses = []
        for item in data.get("data") or []:
            if not isinstance(item, dict) or "range" not in item:
                raise _ApiError(400, "Invalid data: every item needs a range.")
            responses.append(self._write_range(scratch, item["range"], item, options))
        self._books[spreadsheet_id] = scratch
        touched = [r for r in responses if "updatedRange" in r]
        return 200, {
            "spreadsheetId": spreadsheet_id,
            "totalUpdatedRows": sum(r["updatedRows"] for r in touched),
            "totalUpdatedColumns": sum(r["updatedColumns"] for r in touched),
            "totalUpdatedCells": sum(r["updatedCells"] for r in touched),
            "totalUpdatedSheets": len({r["updatedRange"].rpartition("!")[0] for r in touched}),
            "responses": responses,
        }

    def _api_batch_update(
        self, spreadsheet_id: str, *, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        scratch = copy.deepcopy(self._api_book(spreadsheet_id))
        replies = []
        for position, request in enumerate(self._json(body).get("requests") or []):
            if not isinstance(request, dict) or len(request) != 1:
                raise _ApiError(400, f"Invalid requests[{position}]: exactly one kind of request is required.")
            ((name, spec),) = request.items()
            replies.append(self._apply(scratch, position, name, spec or {}))
        self._books[spreadsheet_id] = scratch
        return 200, {"spreadsheetId": spreadsheet_id, "replies": replies}

    @staticmethod
    def _apply(book: _Spreadsheet, position: int, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Apply one ``spreadsheets.batchUpdate`` request to ``book``; return its reply."""
        if name in ("deleteDimension", "insertDimension"):
            grid = spec.get("range") or {}
            tab = book.by_gid(grid.get("sheetId", 0))
            start, end = int(grid.get("startIndex", 0)), grid.get("endIndex")
            if end is None:
                raise _ApiError(400, f"Invalid requests[{position}].{name}: endIndex is required.")
            method = tab.delete_dimension if name == "deleteDimension" else tab.insert_dimension
            method(grid.get("dimension", "ROWS"), start, int(end))
            return {}
        if name == "updateSheetProperties":
            properties = spec.get("properties") or {}
            tab = book.by_gid(properties.get("sheetId", 0))
            fields = {field.strip() for field in str(spec.get("fields", "")).split(",")}
            grid = properties.get("gridProperties") or {}
            if "*" in fields or "title" in fields:
                book.check_title(properties.get("title", ""), tab)
                tab.title = properties["title"]
            if "*" in fields or "hidden" in fields:
                tab.hidden = bool(properties.get("hidden", False))
            if fields & {"*", "gridProperties", "gridProperties.rowCount"} and "rowCount" in grid:
                tab.row_count = int(grid["rowCount"])
                del tab.rows[tab.row_count :]
            if fields & {"*", "gridProperties", "gridProperties.columnCount"} and "columnCount" in grid:
                tab.column_count = int(grid["columnCount"])
                for cells in tab.rows:
                    del cells[tab.column_count :]
            return {}
        if name == "updateSpreadsheetProperties":
            properties = spec.get("properties") or {}
            fields = {field.strip() for field in str(spec.get("fields", "")).split(",")}
            for key, attribute in (("title", "title"), ("locale", "locale"), ("timeZone", "time_zone")):
                if ("*" in fields or key in fields) and key in properties:
                    setattr(book, attribute, str(properties[key]))
            return {}
        if name == "addSheet":
            properties = spec.get("properties") or {}
            grid = properties.get("gridProperties") or {}
            tab = book.add_tab(
                properties.get("title"),
                row_count=grid.get("rowCount"),
                column_count=grid.get("columnCount"),
                sheet_id=properties.get("sheetId"),
                index=properties.get("index"),
            )
            return {"addSheet": {"properties": tab.properties(book.tabs.index(tab))}}
        if name == "deleteSheet":
            tab = book.by_gid(spec.get("sheetId"))
            if len(book.tabs) == 1:
                raise _ApiError(400, "You can't remove all the visible sheets in a document.")
            book.tabs.remove(tab)
            return {}
        raise _ApiError(
            400, f"Invalid JSON payload received. Unknown name \"{name}\" at 'requests[{position}]': Cannot find field."
        )


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def seed_forms(server: SheetsServer, spreadsheet_id: str) -> None:
    """Create a Google Forms style spreadsheet: a ``Form Responses 1`` tab with a few responses."""
    start = datetime(2026, 11, 24, 9, 5, 3)
    rows: list[list[object]] = [
        [*FORMS_HEADER],
        [start, "Ada Lovelace", "ada@example.com", 5, "Loved the workshop."],
        [start + timedelta(minutes=7, seconds=41), "Alan Turing", "alan@example.com", 4, ""],
        [start + timedelta(hours=1, seconds=12), "Grace Hopper", "grace@example.com", 5, 'Great, "more" please, soon'],
        [start + timedelta(hours=3, minutes=30), "Edsger Dijkstra", "edsger@example.com", 3],
        [start + timedelta(days=1, hours=-8), "Barbara Liskov", "barbara@example.com", 4, "Très bien 👍"],
    ]
    server.create_spreadsheet(spreadsheet_id, {"Form Responses 1": rows}, title="Customer Feedback (Responses)")


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="Local Google Sheets API v4 emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--seed-forms", metavar="SPREADSHEET_ID", action="append", default=[], help="create a Forms response sheet"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Block the stop signals before any thread exists (threads inherit the mask) and wait for them
    # synchronously: no Python-level signal handler runs, so nothing can interrupt a lock holder.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    for signum in stop_signals:
        signal.signal(signum, signal.SIG_DFL)  # a shell may start background jobs with SIGINT ignored
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = SheetsServer(args.host, args.port)
    for spreadsheet_id in args.seed_forms:
        seed_forms(server, spreadsheet_id)
    with server:
        logger.info("Google Sheets API emulator listening on %s", server.url)
        received = signal.sigwait(stop_signals)
        logger.debug("Stopping on %s", signal.Signals(received).name)


if __name__ == "__main__":
    main()
