"""
The schemas of a tab's records for a Schema Registry (pure): Avro and JSON Schema, from the tab's
field names and each column's number format type (:mod:`~.typed`).

============================  ==========================================  =========================
column (number format)         Avro field type (optional, default null)    JSON Schema property
============================  ==========================================  =========================
``DATE_TIME``                  ``long``, ``timestamp-millis``               string, ``date-time``
``DATE``                       ``int``, ``date`` (days since 1970-01-01)    string, ``date``
``TIME``                       ``int``, ``time-millis``                     string, ``time``
a number format                ``double``                                   number
checkboxes                     ``boolean``                                  boolean
anything else                  ``string``                                   string
============================  ==========================================  =========================

Avro names allow only ``[A-Za-z0-9_]``, so each field's name is its header with every other run of
characters made ``_`` (a header of none of them is ``column_<LETTER>``; a name starting with a digit
gets a leading ``_``; repeats get ``_2``, ``_3``…), and the header itself is the field's ``doc``.
JSON Schema properties keep the field names of the ``json`` format. Both are closed (no other field),
so a question added at the right is a new optional field: a backward-compatible version.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow_provider_sheets.model.a1 import column_letter
from airflow_provider_sheets.model.formats import AVRO
from airflow_provider_sheets.model.typed import BOOLEAN, DATE, DATE_TIME, NUMBERS, TIME

#: the namespace of every record schema
NAMESPACE = "sheets"

_AVRO_LOGICAL: dict[str | None, dict[str, str]] = {
    DATE_TIME: {"type": "long", "logicalType": "timestamp-millis"},
    DATE: {"type": "int", "logicalType": "date"},
    TIME: {"type": "int", "logicalType": "time-millis"},
}
_JSON_FORMATS = {DATE_TIME: "date-time", DATE: "date", TIME: "time"}
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_]+")


def avro_name(text: str, fallback: str) -> str:
    """An Avro name for ``text``: other characters made ``_``, ``fallback`` when none is left."""
    name = _NOT_A_NAME.sub("_", text).strip("_") or fallback
    return f"_{name}" if name[0].isdigit() else name


def avro_names(fields: Sequence[str]) -> list[str]:
    """Unique Avro field names for a tab's fields, in order (stable while the header is)."""
    names: list[str] = []
    taken: set[str] = set()
    for index, field in enumerate(fields, start=1):
        base = avro_name(field, f"column_{column_letter(index)}")
        name, suffix = base, 2
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        names.append(name)
    return names


def _kind(kinds: Sequence[str | None], index: int) -> str | None:
    return kinds[index] if index < len(kinds) else None


def avro_type(kind: str | None) -> Any:
    """The (non-null) Avro type of a column of ``kind``."""
    if kind in _AVRO_LOGICAL:
        return dict(_AVRO_LOGICAL[kind])
    return "double" if kind in NUMBERS else "boolean" if kind == BOOLEAN else "string"


def avro_schema(fields: Sequence[str], kinds: Sequence[str | None], title: str) -> dict[str, Any]:
    """The Avro record schema of a tab's records: every field optional with a ``null`` default."""
    return {
        "type": "record",
        "name": avro_name(title, "Tab"),
        "namespace": NAMESPACE,
        "doc": f"A row of the tab {title!r}",
        "fields": [
            {"name": name, "type": ["null", avro_type(_kind(kinds, i))], "default": None, "doc": fields[i]}
            for i, name in enumerate(avro_names(fields))
        ],
    }


def json_property(kind: str | None, field: str) -> dict[str, Any]:
    """The JSON Schema of one field: its type or ``null``."""
    if kind in _JSON_FORMATS:
        return {"type": ["string", "null"], "format": _JSON_FORMATS[kind]}
    kind_type = "number" if kind in NUMBERS else "boolean" if kind == BOOLEAN else "string"
    return {"type": [kind_type, "null"]}


def json_schema(fields: Sequence[str], kinds: Sequence[str | None], title: str) -> dict[str, Any]:
    """The JSON Schema (draft-07) of a tab's records: an object of optional fields, no others."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": title,
        "type": "object",
        "properties": {field: json_property(_kind(kinds, i), field) for i, field in enumerate(fields)},
        "additionalProperties": False,
    }


def _field_types(schema_format: str, schema: dict[str, Any]) -> dict[str, str]:
    """Each field of a schema with the text of its type (``{"doc" or name: type}``)."""
    if schema_format == AVRO:
        out = {}
        for field in schema.get("fields", []):
            kinds = [t for t in field.get("type", []) if t != "null"] if isinstance(field.get("type"), list) else []
            kind = kinds[0] if kinds else field.get("type")
            shown = kind.get("logicalType", kind.get("type")) if isinstance(kind, dict) else kind
            out[str(field.get("name"))] = str(shown)
        return out
    out = {}
    for name, prop in (schema.get("properties") or {}).items():
        types = prop.get("type", [])
        kinds = [t for t in (types if isinstance(types, list) else [types]) if t != "null"]
        out[name] = prop.get("format") or (kinds[0] if kinds else "any")
    return out


def schema_changes(schema_format: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two schemas of a tab, field by field, in words (added, removed, retyped)."""
    before, after = _field_types(schema_format, old), _field_types(schema_format, new)
    changes = [
        f"field {name!r} changed from {before[name]} to {kind}"
        for name, kind in after.items()
        if name in before and before[name] != kind
    ]
    changes += [f"field {name!r} is gone (a question renamed or removed)" for name in before if name not in after]
    changes += [f"field {name!r} is new ({kind})" for name, kind in after.items() if name not in before]
    return changes
