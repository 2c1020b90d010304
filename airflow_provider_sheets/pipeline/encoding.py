"""
How a tab's records are encoded, for the batch run and the stream runner alike (one implementation):
typed values or the cells as shown, the value format (JSON, CloudEvents, Kafka Connect JSON), the
event time, and the record headers that go with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from airflow_provider_sheets.errors import SheetsConfigError
from airflow_provider_sheets.model import headers
from airflow_provider_sheets.model.connect import ConnectTypes, envelope, struct_schema
from airflow_provider_sheets.model.formats import CLOUDEVENTS, CONNECT_JSON, JSON
from airflow_provider_sheets.model.mapping import RowMapper
from airflow_provider_sheets.model.sheet import SheetInfo
from airflow_provider_sheets.model.timestamps import sheet_zone, timestamp_field
from airflow_provider_sheets.model.typed import ColumnTypes, column_kinds
from airflow_provider_sheets.settings import BatchSettings


class FormatReader(Protocol):
    def number_formats(self, info: SheetInfo, first_row: int) -> list[list[str | None]]:
        """The number format type of each cell of the first data rows (``SheetsReader.number_formats``)."""


@dataclass(frozen=True)
class Encoding:
    """
    :param typed_values: cells read as unformatted values and typed by their columns' number formats.
    :param event_time_column: the column whose date-time is each record's timestamp; ``None``: the
        ``timestamp_column`` when the tab has it.
    """

    value_format: str = JSON
    typed_values: bool = False
    timestamp_column: str = "Timestamp"
    event_time_column: str | None = None
    header_row: int = 1

    @classmethod
    def of(cls, s: BatchSettings) -> Encoding:
        """The encoding an operator's settings ask for."""
        return cls(s.value_format, s.typed_values, s.timestamp_column, s.event_time_column, s.header_row)

    @property
    def typed(self) -> bool:
        """Whether cells are read as unformatted values (typed values; Connect JSON needs them)."""
        return self.typed_values or self.value_format == CONNECT_JSON

    def check(self, event_time_setting: str = "event_time_column") -> None:
        """:class:`SheetsConfigError` when the settings contradict each other."""
        if self.event_time_column and not self.typed:
            raise SheetsConfigError(
                f"{event_time_setting} reads the column's date-times as serial numbers: it needs typed values"
            )

    def type_columns(
        self, mapper: RowMapper, info: SheetInfo, reader: FormatReader, known: Sequence[str | None] | None = None
    ) -> list[str | None] | None:
        """
        Make ``mapper`` type its rows: with ``known`` kinds (as a position kept them while the header
        is the same: no request), else the number formats of the first data rows (one request).

        :return: the columns' kinds (``None`` when values are not typed).
        """
        if not self.typed:
            return None
        kinds = list(known) if known is not None and len(known) == len(mapper.fields) else None
        if kinds is None:
            kinds = list(column_kinds(reader.number_formats(info, self.header_row + 1), len(mapper.fields)))
        zone, event = sheet_zone(info.time_zone), self.event_index(info, mapper)
        if self.value_format == CONNECT_JSON:
            wrap = envelope(struct_schema(mapper.fields, kinds, info.title))
            mapper.use_types(ConnectTypes(tuple(kinds), zone), event, wrap)
        else:
            mapper.use_types(ColumnTypes(tuple(kinds), zone), event)
        return kinds

    def event_index(self, info: SheetInfo, mapper: RowMapper) -> int | None:
        """The column whose date-time is each record's Kafka timestamp: ``event_time_column``, else Forms' timestamp."""
        name = self.event_time_column or timestamp_field(mapper.fields, self.timestamp_column)
        if name is None:
            return None
        if name not in mapper.fields:
            raise SheetsConfigError(
                f"event_time_column {name!r} is not a header of tab {info.title!r}; the headers are: "
                f"{', '.join(repr(f) for f in mapper.fields)}."
            )
        return mapper.fields.index(name)

    def record_headers(
        self, spreadsheet_id: str, info: SheetInfo, static: headers.Headers, keys_by_row: bool, published_through: int
    ) -> headers.RecordHeaders:
        """The record headers: ``static`` (provenance and the run's), and CloudEvents' when that is the format."""
        if self.value_format == CLOUDEVENTS:
            ids = f"{spreadsheet_id}/{info.sheet_id}/".encode()
            static = static + headers.cloudevents(spreadsheet_id, info)
            return headers.RecordHeaders(static, keys_by_row, published_through, ids)
        return headers.RecordHeaders(static, keys_by_row, published_through)
