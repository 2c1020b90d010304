"""
Typed values (pure): a cell read as ``UNFORMATTED_VALUE`` with ``SERIAL_NUMBER`` date-times, and its
column's number format, become the JSON value a consumer can use without knowing the locale.

============================  ===========================================================
cell (unformatted)             JSON value
============================  ===========================================================
empty                          ``null``
``true`` / ``false``           a boolean (a checkbox)
a number, column ``DATE``      ``"2026-11-05"``
a number, column ``TIME``      ``"09:05:03"`` (the fraction of the day)
a number, ``DATE_TIME``        ``"2026-11-05T09:05:03+01:00"``: the serial number read in the
                               spreadsheet's time zone, with that zone's offset at that moment
another number                 an integer when it is whole (any size), else a float
                               (``NUMBER``, ``PERCENT`` (0.5 for 50 %), ``CURRENCY``, ``SCIENTIFIC``)
text                           the text; in a ``DATE``/``TIME``/``DATE_TIME``/number column it is
                               kept and counted as a *fallback* (the cell disagrees with its column)
============================  ===========================================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from airflow_provider_sheets.model.timestamps import SERIAL_EPOCH

#: ``CellFormat.numberFormat.type`` values of the Sheets API.
DATE, TIME, DATE_TIME = "DATE", "TIME", "DATE_TIME"
NUMBERS = frozenset({"NUMBER", "PERCENT", "CURRENCY", "SCIENTIFIC"})
TEMPORAL = frozenset({DATE, TIME, DATE_TIME})
TEXT = "TEXT"
#: not a number format: an "Automatic" column whose first cells are checkboxes
BOOLEAN = "BOOLEAN"


def column_kinds(format_rows: Iterable[Sequence[str | None]], width: int) -> tuple[str | None, ...]:
    """
    Each column's number format type: the most common one among the cells of the first data rows
    that have one (``None``: no format, the "Automatic" one, which numbers and text keep as they are).
    """
    counts = [Counter[str]() for _ in range(width)]
    for row in format_rows:
        for index, kind in enumerate(row[:width]):
            if kind:
                counts[index][kind] += 1
    return tuple(count.most_common(1)[0][0] if count else None for count in counts)


def _number(value: float | int) -> float | int:
    if isinstance(value, int):
        return value
    return int(value) if value.is_integer() else value


def serial_moment(serial: float, zone: ZoneInfo) -> datetime:
    # to the millisecond: a serial number's double carries about that much of a second
    moment = SERIAL_EPOCH + timedelta(milliseconds=round(serial * 86_400_000))
    return moment.replace(tzinfo=zone)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")


def typed_cell(cell: object, kind: str | None, zone: ZoneInfo) -> tuple[object, bool]:
    """
    The JSON value of one cell (see the module's table), and whether it fell back to its text
    because it disagrees with its column's format.
    """
    if cell is None or cell == "":
        return None, False
    if isinstance(cell, bool):
        return cell, False
    if isinstance(cell, (int, float)):
        if kind == DATE_TIME:
            return _iso(serial_moment(float(cell), zone)), False
        if kind == DATE:
            return serial_moment(float(cell), zone).date().isoformat(), False
        if kind == TIME:
            time = serial_moment(float(cell) % 1, zone).time()
            return time.isoformat(timespec="milliseconds" if time.microsecond else "seconds"), False
        return _number(cell), False
    return cell, kind in TEMPORAL or kind in NUMBERS or kind == BOOLEAN


class ColumnTypes:
    """
    The number format type of each column of a tab, and the spreadsheet's time zone.

    :param null_misfits: a cell that disagrees with its column is ``null`` (still counted), not its
        text: for a schema that gives the column one type.
    """

    def __init__(self, kinds: tuple[str | None, ...], zone: ZoneInfo, null_misfits: bool = False) -> None:
        self.kinds = kinds
        self.zone = zone
        self.null_misfits = null_misfits
        #: per column: whether text in it disagrees with its format (a number or date column)
        self._strict = tuple(kind in TEMPORAL or kind in NUMBERS or kind == BOOLEAN for kind in kinds)
        self._loose = not any(self._strict)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColumnTypes) and (self.kinds, self.zone, self.null_misfits) == (
            other.kinds,
            other.zone,
            other.null_misfits,
        )

    def __repr__(self) -> str:
        return f"ColumnTypes({self.kinds!r}, {self.zone.key!r}, null_misfits={self.null_misfits})"

    def narrowed(self, width: int) -> ColumnTypes:
        """The types of the first ``width`` columns (the header of an older position)."""
        return ColumnTypes(self.kinds[:width], self.zone, self.null_misfits)

    def event_ms(self, cells: Sequence[object], index: int) -> int:
        """The date-time in column ``index`` of a row (unformatted) as epoch milliseconds; 0 when it has none."""
        cell = cells[index] if index < len(cells) else None
        if type(cell) not in (int, float) or index >= len(self.kinds) or self.kinds[index] != DATE_TIME:
            return 0
        return round(serial_moment(float(cell), self.zone).timestamp() * 1000)  # type: ignore[arg-type]

    def json_row(self, cells: Sequence[object]) -> list[object]:
        """A row's cells as typed JSON values, text kept where it disagrees with its column (a dead letter's)."""
        kinds, zone, width = self.kinds, self.zone, len(self.kinds)
        return [typed_cell(cell, kinds[i] if i < width else None, zone)[0] for i, cell in enumerate(cells)]

    def row(self, cells: Sequence[object]) -> tuple[list[object], int]:
        """A row's typed cells (as many as it has), and how many fell back to their text."""
        if self._loose and "" not in cells and all(type(cell) is str for cell in cells):
            return list(cells), 0  # text in columns without a number format: as it is
        kinds, strict, zone, fallbacks, null = self.kinds, self._strict, self.zone, 0, self.null_misfits
        width = len(kinds)
        out: list[object] = []
        for index, cell in enumerate(cells):
            if type(cell) is str and cell:  # most cells: text stays text
                misfit = index < width and strict[index]
                out.append(None if misfit and null else cell)
                fallbacks += misfit
                continue
            value, fell_back = typed_cell(cell, kinds[index] if index < width else None, zone)
            out.append(None if fell_back and null else value)
            fallbacks += fell_back
        return out, fallbacks
