"""
The Kafka Connect ``JsonConverter`` envelope (pure): ``{"schema": …, "payload": …}`` with
``schemas.enable=true``, so that a Connect sink reads each record as a ``Struct`` with typed fields.

Each column's Connect type comes from its number format (:mod:`~.typed`): ``DATE_TIME`` ->
``org.apache.kafka.connect.data.Timestamp`` (int64 ms), ``DATE`` -> ``…data.Date`` (int32 days),
``TIME`` -> ``…data.Time`` (int32 ms of the day), a number format -> ``double``, checkboxes ->
``boolean``, anything else -> ``string``. Every field is optional. A cell that does not fit its
column's type (text in a number column) is ``null`` in the payload and counted as a fallback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from airflow_provider_sheets.model.typed import BOOLEAN, DATE, DATE_TIME, NUMBERS, TIME, ColumnTypes, serial_moment

#: Connect's logical types, by the number format type they stand for
_LOGICAL = {
    DATE_TIME: ("int64", "org.apache.kafka.connect.data.Timestamp"),
    DATE: ("int32", "org.apache.kafka.connect.data.Date"),
    TIME: ("int32", "org.apache.kafka.connect.data.Time"),
}
#: serial day number of 1970-01-01
_UNIX_EPOCH_SERIAL = 25569


def field_schema(name: str, kind: str | None) -> dict[str, Any]:
    """The schema of one optional field of the struct."""
    if kind in _LOGICAL:
        connect_type, logical = _LOGICAL[kind]
        return {"field": name, "type": connect_type, "optional": True, "name": logical, "version": 1}
    connect_type = "double" if kind in NUMBERS else "boolean" if kind == BOOLEAN else "string"
    return {"field": name, "type": connect_type, "optional": True}


def struct_schema(fields: Sequence[str], kinds: Sequence[str | None], name: str) -> dict[str, Any]:
    """The struct schema of a tab's records (fields past ``kinds`` are strings)."""
    return {
        "type": "struct",
        "fields": [field_schema(f, kinds[i] if i < len(kinds) else None) for i, f in enumerate(fields)],
        "optional": False,
        "name": name,
    }


def envelope(schema: dict[str, Any]) -> tuple[bytes, bytes]:
    """What goes before and after a payload's JSON object: ``{"schema":…,"payload":`` and ``}``."""
    return b'{"schema":' + json.dumps(schema, ensure_ascii=False, separators=(",", ":")).encode() + b',"payload":', b"}"


def connect_cell(cell: object, kind: str | None, zone: ZoneInfo) -> tuple[object, bool]:
    """The payload value of one unformatted cell in a column of ``kind``, and whether it did not fit."""
    if cell is None or cell == "":
        return None, False
    number = isinstance(cell, (int, float)) and not isinstance(cell, bool)
    if kind == DATE_TIME:
        return (round(serial_moment(float(cell), zone).timestamp() * 1000), False) if number else (None, True)  # type: ignore[arg-type]
    if kind == DATE:
        return (int(float(cell)) - _UNIX_EPOCH_SERIAL, False) if number else (None, True)  # type: ignore[arg-type]
    if kind == TIME:
        return (round((float(cell) % 1) * 86_400_000), False) if number else (None, True)  # type: ignore[arg-type]
    if kind in NUMBERS:
        return (float(cell), False) if number else (None, True)  # type: ignore[arg-type]
    if kind == BOOLEAN:
        return (cell, False) if isinstance(cell, bool) else (None, True)
    if isinstance(cell, bool):
        return ("TRUE" if cell else "FALSE"), False
    if isinstance(cell, (int, float)):
        return str(int(cell) if float(cell).is_integer() else cell), False
    return cell, False


class ConnectTypes(ColumnTypes):
    """:class:`ColumnTypes` whose rows are Connect payload values (see :func:`connect_cell`)."""

    def row(self, cells: Sequence[object]) -> tuple[list[object], int]:
        if self._loose and "" not in cells and all(type(cell) is str for cell in cells):
            return list(cells), 0  # text in text columns: as it is
        kinds, strict, zone, fallbacks = self.kinds, self._strict, self.zone, 0
        width = len(kinds)
        out: list[object] = []
        for index, cell in enumerate(cells):
            if type(cell) is str and cell and (index >= width or not strict[index]):
                out.append(cell)  # most cells: text in a text column stays text
                continue
            value, misfit = connect_cell(cell, kinds[index] if index < width else None, zone)
            out.append(value)
            fallbacks += misfit
        return out, fallbacks

    def narrowed(self, width: int) -> ConnectTypes:
        return ConnectTypes(self.kinds[:width], self.zone)


def key_envelope(numeric: bool) -> tuple[bytes, bytes]:
    """What goes before and after a key: a row number as Connect's ``int64``, a key column's cell as ``string``."""
    schema = {"type": "int64" if numeric else "string", "optional": False}
    return envelope(schema)
