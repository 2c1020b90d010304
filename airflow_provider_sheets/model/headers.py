"""
Provenance headers (pure): what every record says about where it came from.

The one ``sheets.row`` rule lives here: the header holds the record's sheet row number as a
decimal string, on data records and dead letters alike, and :func:`published_row` reads it back
(the watermark tools rebuild a watermark from it). Consumers de-duplicate on
``(sheets.spreadsheet_id, sheets.sheet_id, sheets.row)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_sheets.model.mapping import Record, RowMappingError
from airflow_provider_sheets.model.sheet import SheetInfo

Headers = list[tuple[str, bytes]]
#: what the publisher produces: ``(key, value, headers, timestamp)``, the timestamp in epoch ms (0: now)
Message = tuple[bytes, bytes, Headers, int]

SPREADSHEET_ID = "sheets.spreadsheet_id"
SHEET_NAME = "sheets.sheet_name"
SHEET_ID = "sheets.sheet_id"
HEADER_HASH = "sheets.header_hash"
ROW = "sheets.row"
#: the reason a dead letter could not be mapped
ERROR = "sheets.error"
#: ``hostname/pid`` of the stream runner that published a record
STREAM_RUNNER = "stream.runner"
#: what a record is: ``insert`` (a row not published before), ``update`` (a row published again, its
#: key the same) or ``delete`` (a tombstone: the row no longer exists)
CHANGE = "sheets.change"
INSERT, UPDATE, DELETE = b"insert", b"update", b"delete"


def row_number(row: int) -> bytes:
    """The ``sheets.row`` header's value for sheet row ``row``."""
    return str(row).encode()


def published_row(headers: Mapping[str, bytes | None]) -> int | None:
    """The sheet row a record's headers name, or ``None`` (no or an unreadable ``sheets.row``)."""
    value = headers.get(ROW)
    if not value or not value.isdigit() or not int(value):
        return None
    return int(value)


def provenance(spreadsheet_id: str, info: SheetInfo, header_hash: str) -> Headers:
    """The ``sheets.*`` headers every record of a run carries (``sheets.row`` is added per record)."""
    return [
        (SPREADSHEET_ID, spreadsheet_id.encode()),
        (SHEET_NAME, info.title.encode()),
        (SHEET_ID, str(info.sheet_id).encode()),
        (HEADER_HASH, header_hash.encode()),
    ]


#: the CloudEvents ``type`` of a record, by its ``sheets.change``
EVENT_TYPES = {INSERT: b"com.google.sheets.row.inserted", UPDATE: b"com.google.sheets.row.updated"}


def cloudevents(spreadsheet_id: str, info: SheetInfo) -> Headers:
    """
    The headers of the CloudEvents Kafka protocol binding, binary mode, that every record of a tab
    shares (``ce_id``, ``ce_type`` and ``ce_time`` are added per record): the value is the event's
    JSON data.
    """
    source = f"//sheets.googleapis.com/spreadsheets/{spreadsheet_id}/sheets/{info.sheet_id}"
    return [("ce_specversion", b"1.0"), ("ce_source", source.encode()), ("content-type", b"application/json")]


def event_time(stamp: int) -> bytes:
    """``ce_time``: the record's event time (epoch ms; 0: now), RFC 3339 in UTC."""
    moment = datetime.fromtimestamp(stamp / 1000, timezone.utc) if stamp else datetime.now(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()


def airflow_run(dag_id: str, run_id: str, run_type: str, task_id: str, try_number: object) -> Headers:
    """The ``airflow.*`` headers: the task attempt that published a record."""
    return [
        ("airflow.dag_id", dag_id.encode()),
        ("airflow.run_id", run_id.encode()),
        ("airflow.run_type", run_type.encode()),
        ("airflow.task_id", task_id.encode()),
        ("airflow.try_number", str(try_number or "").encode()),
    ]


@dataclass(frozen=True)
class RecordHeaders:
    """
    The headers of each record of one run: ``static`` (provenance and run headers) plus its
    ``sheets.row``.

    :param keys_by_row: records are keyed by their row number, so a key is its ``sheets.row``
        value already (reused: no second encoding per record).
    """

    static: Headers
    keys_by_row: bool = True
    #: rows up to this one were published before: their records are updates, the others inserts
    published_through: int = 0
    #: CloudEvents: each record also gets ``ce_id`` (this prefix and its row), ``ce_type`` and ``ce_time``
    event_ids: bytes | None = None

    def messages(self, records: Iterable[Record]) -> list[Message]:
        """``(key, value, headers, timestamp)`` of each record: what the publisher produces for a page."""
        static, by_row, through = self.static, self.keys_by_row, self.published_through
        if self.event_ids is not None:
            return [self.message(record, UPDATE if record[0] <= through else INSERT) for record in records]
        return [
            (
                key,
                value,
                [*static, (ROW, key if by_row else row_number(row)), (CHANGE, UPDATE if row <= through else INSERT)],
                stamp,
            )
            for row, key, value, stamp in records
        ]

    def message(self, record: Record, change: bytes) -> Message:
        """One record's ``(key, value, headers, timestamp)``, saying it is ``change`` (a reconcile run's decision)."""
        row, key, value, stamp = record
        number = key if self.keys_by_row else row_number(row)
        headers = [*self.static, (ROW, number), (CHANGE, change)]
        if self.event_ids is not None:
            headers += [
                ("ce_id", self.event_ids + number),
                ("ce_type", EVENT_TYPES[change]),
                ("ce_time", event_time(stamp)),
            ]
        return key, value, headers, stamp

    def tombstone(self, key: bytes, row: int) -> tuple[bytes, None, Headers]:
        """The tombstone of ``key``, last published from sheet row ``row``: that row no longer exists."""
        return key, None, [*self.static, (ROW, row_number(row)), (CHANGE, DELETE)]

    def dead_letter(self, error: RowMappingError, cells: Sequence[Any]) -> tuple[bytes, bytes, Headers]:
        """A row that cannot be mapped, as ``(key, value, headers)``: its cells and the reason."""
        value = json.dumps(
            {"row": error.row, "cells": list(cells), "error": error.reason}, ensure_ascii=False, default=str
        )
        headers = [*self.static, (ROW, row_number(error.row)), (ERROR, error.reason.encode())]
        return row_number(error.row), value.encode("utf-8"), headers
