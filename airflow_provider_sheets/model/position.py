"""
The position (pure): "every row up to and including ``last_row`` is in Kafka", with what the drift
checks need (the header's and the last row's hashes). The batch layer keeps it in an Airflow
Variable (:mod:`~airflow_provider_sheets.adapters.variable_store`), the stream runner in a compacted
topic (:mod:`~airflow_provider_sheets.adapters.state_topic`); both store the same JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_sheets.model.mapping import RowMapper, fingerprint
from airflow_provider_sheets.model.sheet import SheetInfo

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

#: How many of the last published rows a position keeps the fingerprints of: enough to tell a row
#: edited in place from rows deleted or inserted above it (a shift of up to this many rows less one).
RECENT_ROWS = 16


class PositionFormatError(ValueError):
    """A stored position is not a JSON object with a non-negative integer ``last_row`` (the fact only)."""


def position_key(spreadsheet_id: str, sheet_id: int) -> str:
    """The stream runner's position key: ``<spreadsheet_id>:<gid>`` (renaming the tab keeps it)."""
    return f"{spreadsheet_id}:{sheet_id}"


def default_watermark_key(spreadsheet_id: str, sheet_id: int, topic: str) -> str:
    """
    The Variable key used when ``watermark_key`` is not given.

    It names the tab by its numeric id (``gid``), so renaming the tab keeps the watermark.
    """
    return "sheets_to_kafka." + ".".join(
        _UNSAFE.sub("_", str(part)) for part in (spreadsheet_id, f"gid{sheet_id}", topic)
    )


@dataclass
class Watermark:
    """The JSON document stored in the Variable."""

    last_row: int
    spreadsheet_id: str = ""
    sheet_id: int | None = None
    sheet_name: str = ""
    topic: str = ""
    header_hash: str | None = None
    fields: list[str] | None = None
    last_row_hash: str | None = None
    updated_at: str = ""
    dag_id: str | None = None
    run_id: str | None = None
    #: ``[row, hash]`` of the last published rows' records (up to :data:`RECENT_ROWS`, ending at ``last_row``)
    recent_rows: list[list[Any]] | None = None
    #: typed values: the number format type of each field's column (as read once, kept while the header is)
    column_types: list[str | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    def recent(self) -> dict[int, str]:
        """The fingerprints of the last published rows (row -> hash); the last row's alone in an older position."""
        pairs = self.recent_rows or []
        found = {int(row): str(digest) for row, digest in pairs if isinstance(row, int) and isinstance(digest, str)}
        if not found and self.last_row_hash:
            found[self.last_row] = self.last_row_hash
        return found

    @classmethod
    def after(
        cls,
        spreadsheet_id: str,
        info: SheetInfo,
        topic: str,
        mapper: RowMapper | None,
        row: int,
        value: bytes,
        recent: Mapping[int, str] | None = None,
        **extra: Any,
    ) -> Watermark:
        """
        The position after ``row`` (whose record value was ``value``), with the hashes drift checks
        need: ``recent``, the fingerprints of the last published rows (those up to :data:`RECENT_ROWS`
        rows before ``row`` are kept); without ``value``, the last row's hash is taken from them.
        """
        kept = sorted((r, h) for r, h in (recent or {}).items() if row - RECENT_ROWS < r <= row)
        last_hash = fingerprint([value]) if value else dict(kept).get(row)
        fields: dict[str, Any] = {
            "header_hash": mapper.header_hash if mapper else None,
            "fields": list(mapper.fields) if mapper else None,
            "last_row_hash": last_hash,
            "recent_rows": [[r, h] for r, h in kept] or None,
            "column_types": list(mapper.types.kinds) if mapper is not None and mapper.types is not None else None,
            **extra,
        }
        return cls(
            last_row=row,
            spreadsheet_id=spreadsheet_id,
            sheet_id=info.sheet_id,
            sheet_name=info.title,
            topic=topic,
            **fields,
        )

    @classmethod
    def from_json(cls, text: str) -> Watermark:
        """
        Parse a stored position (an object, or a bare row number).

        :raises PositionFormatError: not JSON, or no non-negative integer ``last_row``; the caller
            says where it is stored and how to fix it.
        """
        try:
            data = json.loads(text)
        except ValueError as err:
            raise PositionFormatError(f"does not hold valid JSON ({err})") from None
        if isinstance(data, int) and not isinstance(data, bool):
            data = {"last_row": data}
        last_row = data.get("last_row") if isinstance(data, dict) else None
        if not isinstance(last_row, int) or isinstance(last_row, bool) or last_row < 0:
            raise PositionFormatError(
                f'must be a JSON object with a non-negative integer "last_row", got {text[:200]!r}'
            )
        if not isinstance(data.get("extra") or {}, dict):
            raise PositionFormatError(f'has an "extra" that is not a JSON object: {text[:200]!r}')
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        extra = {k: v for k, v in data.items() if k not in known and k != "extra"}
        extra.update(data.get("extra") or {})
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)


@dataclass(frozen=True)
class PositionOf:
    """Where a run's positions point (a spreadsheet's tab, a topic, the mapper's header): :meth:`at` a row."""

    spreadsheet_id: str
    info: SheetInfo
    topic: str
    mapper: RowMapper | None
    extra: dict[str, Any] = field(default_factory=dict)

    def at(self, row: int, value: bytes, recent: Mapping[int, str] | None = None) -> Watermark:
        """The position after ``row``, whose record value was ``value`` (``recent``: see :meth:`Watermark.after`)."""
        return Watermark.after(
            self.spreadsheet_id, self.info, self.topic, self.mapper, row, value, recent, **self.extra
        )
