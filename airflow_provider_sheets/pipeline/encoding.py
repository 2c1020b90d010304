"""
How a tab's records are encoded, for the batch run and the stream runner alike (one implementation):
typed values or the cells as shown, the value format (JSON, CloudEvents, Kafka Connect JSON, Avro
or JSON Schema through a Schema Registry), the key format, the event time, and the record headers
that go with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_sheets import accel
from airflow_provider_sheets.accel import avro as accel_avro
from airflow_provider_sheets.errors import SchemaRegistryAccessError, SchemaRegistryRefusal, SheetsConfigError, with_fix
from airflow_provider_sheets.model import headers
from airflow_provider_sheets.model.connect import ConnectTypes, envelope, key_envelope, struct_schema
from airflow_provider_sheets.model.formats import (
    AVRO,
    CLOUDEVENTS,
    CONNECT_JSON,
    JSON,
    KEY_CONNECT_JSON,
    KEY_TEXT,
    REGISTRY_FORMATS,
)
from airflow_provider_sheets.model.mapping import RowMapper
from airflow_provider_sheets.model.schemas import avro_names, avro_schema, json_schema
from airflow_provider_sheets.model.sheet import SheetInfo
from airflow_provider_sheets.model.timestamps import sheet_zone, timestamp_field
from airflow_provider_sheets.model.typed import ColumnTypes, column_kinds
from airflow_provider_sheets.settings import BatchSettings

REFUSAL_FIX = (
    "Nothing was published and the watermark did not move. A column's number format or a question's type "
    "changed: restore it, or publish the new shape to a new topic (a new subject), or change the subject's "
    "compatibility level in the registry if its consumers can read both."
)


class FormatReader(Protocol):
    def number_formats(self, info: SheetInfo, first_row: int) -> list[list[str | None]]:
        """The number format type of each cell of the first data rows (``SheetsReader.number_formats``)."""


class SchemaPort(Protocol):
    """A topic's value schemas in a Schema Registry (``hooks.registry.TopicSchemas``)."""

    def check(self, schema_format: str, schema: dict[str, Any]) -> None:
        """Raise when the registry would refuse ``schema`` (a dry run registers nothing)."""

    def register(self, schema_format: str, schema: dict[str, Any]) -> int:
        """Register ``schema`` (raise when refused)."""

    def encoder(
        self, schema_format: str, schema: dict[str, Any], names: Sequence[str]
    ) -> Callable[[Sequence[Any]], bytes]:
        """What makes a record's value from a row's typed cells."""


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
    key_format: str = KEY_TEXT

    @classmethod
    def of(cls, s: BatchSettings) -> Encoding:
        """The encoding an operator's settings ask for."""
        typed = bool(s.typed_values)  # checked: never None
        return cls(s.value_format, typed, s.timestamp_column, s.event_time_column, s.header_row, s.key_format)

    @property
    def typed(self) -> bool:
        """Whether cells are read unformatted (typed values, which Connect JSON and the registry formats need)."""
        return self.typed_values or self.value_format == CONNECT_JSON or self.value_format in REGISTRY_FORMATS

    @property
    def registry(self) -> bool:
        """Whether the value's schema lives in a Schema Registry (``avro``, ``json_schema``)."""
        return self.value_format in REGISTRY_FORMATS

    def check(self, event_time_setting: str = "event_time_column") -> None:
        """:class:`SheetsConfigError` when the settings contradict each other."""
        if self.event_time_column and not self.typed:
            raise SheetsConfigError(
                f"{event_time_setting} reads the column's date-times as serial numbers: it needs typed values"
            )

    def apply(
        self,
        mapper: RowMapper,
        info: SheetInfo,
        reader: FormatReader,
        known: Sequence[str | None] | None = None,
        schemas: SchemaPort | None = None,
        register: bool = True,
    ) -> list[str | None] | None:
        """
        Make ``mapper`` encode its records this way: keys in their format; with typed values, each
        column typed by ``known`` kinds (as a position kept them while the header is the same: no
        request), else by the number formats of the first data rows (one request); for a registry
        format, the tab's schema registered in ``schemas`` first (only checked when not ``register``:
        a dry run, whose preview shows the typed values as JSON).

        :return: the columns' kinds (``None`` when values are not typed).
        """
        if self.key_format == KEY_CONNECT_JSON:
            mapper.use_key_envelope(key_envelope(numeric=mapper.keys_by_row))
        if not self.typed:
            return None
        # a registry format reads the formats every run: a retyped column is a new schema, for the registry to judge
        reuse = known is not None and len(known) == len(mapper.fields) and not self.registry
        kinds = list(known) if known is not None and reuse else None
        if kinds is None:
            kinds = list(column_kinds(reader.number_formats(info, self.header_row + 1), len(mapper.fields)))
        zone, event = sheet_zone(info.time_zone), self.event_index(info, mapper)
        if self.registry:
            types, encode = self._registered(mapper, info, kinds, schemas, register)
            mapper.use_types(types, event, encode=encode)
        elif self.value_format == CONNECT_JSON:
            wrap = envelope(struct_schema(mapper.fields, kinds, info.title))
            mapper.use_types(ConnectTypes(tuple(kinds), zone), event, wrap)
        else:
            mapper.use_types(ColumnTypes(tuple(kinds), zone), event)
        return kinds

    def _registered(
        self, mapper: RowMapper, info: SheetInfo, kinds: list[str | None], schemas: SchemaPort | None, register: bool
    ) -> tuple[ColumnTypes, Callable[[Sequence[Any]], bytes] | None]:
        """A registry format's column types and encoder, once its schema is registered."""
        if schemas is None:
            raise SheetsConfigError(f"value_format {self.value_format!r} needs a Schema Registry connection")
        schema, names, types = self._schema(mapper.fields, kinds, info)
        if not register:
            schemas.check(self.value_format, schema)
            return types, None
        try:
            schema_id = schemas.register(self.value_format, schema)
        except SchemaRegistryRefusal as err:
            raise with_fix(err, REFUSAL_FIX).with_traceback(err.__traceback__) from None
        encode = schemas.encoder(self.value_format, schema, names)
        if self.value_format == AVRO and accel.Switches.from_env().avro:
            encode = accel_avro.avro_rows(encode, schema, schema_id, kinds)
        return types, encode

    def _schema(
        self, fields: list[str], kinds: Sequence[str | None], info: SheetInfo
    ) -> tuple[dict[str, Any], list[str], ColumnTypes]:
        """A registry format's schema of a header, its field names, and how cells are typed for it."""
        zone = sheet_zone(info.time_zone)
        if self.value_format == AVRO:  # epoch millis, days and millis of the day: Avro's logical types
            return avro_schema(fields, kinds, info.title), avro_names(fields), ConnectTypes(tuple(kinds), zone)
        return json_schema(fields, kinds, info.title), list(fields), ColumnTypes(tuple(kinds), zone, True)

    def as_before(self, old: RowMapper, info: SheetInfo, schemas: SchemaPort | None) -> None:
        """
        Make ``old`` (a mapper of a position's narrower header, typed as then) encode records as they
        were published then (the Connect envelope, the registered schema of that header), so that
        its fingerprints compare with the position's.
        """
        if old.types is None:
            return
        kinds = list(old.types.kinds)
        if self.value_format == CONNECT_JSON:
            old.use_types(old.types, None, envelope(struct_schema(old.fields, kinds, info.title)))
        elif self.registry and schemas is not None:
            schema, names, _ = self._schema(old.fields, kinds, info)
            try:
                old.use_types(old.types, None, encode=schemas.encoder(self.value_format, schema, names))
            except SchemaRegistryAccessError:
                return  # not found as it was (the tab renamed since?): its rows compare as edited, published again

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
