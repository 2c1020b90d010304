"""
A backfill's rows, chosen before they are read: the timestamp column alone, as serial numbers (so
no locale's date format can mislead it), then only the span of the rows whose time is in the interval.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from airflow_provider_sheets.errors import SheetsConfigError
from airflow_provider_sheets.model.mapping import RowMapper
from airflow_provider_sheets.model.sheet import SheetInfo
from airflow_provider_sheets.model.timestamps import (
    RowSelection,
    TimestampColumn,
    TimestampError,
    select_rows,
    sheet_zone,
    timestamp_field,
)


class ColumnReader(Protocol):
    def column(self, info: SheetInfo, col: int, first_row: int, last_row: int) -> object:
        """``(row, cell)`` pairs of one column, as serial numbers (:meth:`~.hooks.sheets.SheetsReader.column`)."""


def timestamp_column(info: SheetInfo, mapper: RowMapper, name: str, fmt: str | None) -> TimestampColumn:
    """The backfill's timestamp column on this tab, or an error listing the headers."""
    found = timestamp_field(mapper.fields, name)
    if found is None:
        raise SheetsConfigError(
            f"timestamp_column {name!r} is not a header of tab {info.title!r}; the headers are: "
            f"{', '.join(repr(f) for f in mapper.fields)}. Backfills select rows by this column: set "
            f"timestamp_column to the header of the submission times."
        )
    return TimestampColumn(found, mapper.fields.index(found), sheet_zone(info.time_zone), info.locale, fmt)


def select_interval(
    reader: ColumnReader,
    info: SheetInfo,
    column: TimestampColumn,
    first_row: int,
    interval: tuple[datetime, datetime],
) -> RowSelection:
    """The rows from ``first_row`` on whose timestamp falls in ``interval``, from the column read alone."""
    if first_row > info.row_count:
        return RowSelection(frozenset())
    cells = reader.column(info, column.index + 1, first_row, info.row_count)
    try:
        return select_rows(cells, column, *interval)  # type: ignore[arg-type]
    except TimestampError as err:
        raise SheetsConfigError(
            f"{err}. Nothing was published. Format the column as a date-time (Format > Number > Date time), "
            f"clear the cell, or set timestamp_format to the strptime format of the cells' text."
        ) from None
