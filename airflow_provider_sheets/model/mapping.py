"""Rows to records (pure): field names, ragged rows, keys and JSON values.

Nothing in this module does I/O, so every rule here is covered by table-driven tests.

Field naming rules (stable across runs, documented in the README):

* a header cell's text, with surrounding white space removed, is the field name;
* a blank header cell at column ``C`` becomes ``column_C``;
* the second, third… occurrence of a name becomes ``<name>_2``, ``<name>_3``… (skipping any
  suffix that is already taken by another header);
* cells to the right of the last header cell get ``column_<LETTER>`` names the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from airflow_provider_sheets.model.a1 import column_letter

try:
    import msgspec
except ImportError:  # pragma: no cover - Airflow 3 itself depends on msgspec
    msgspec = None  # type: ignore[assignment]

#: Cell types that the fast encoder (msgspec) writes byte for byte as ``json`` does with the
#: options used here (``ensure_ascii=False``, compact separators); any other type takes ``json``.
_PLAIN_TYPES = frozenset((str, int, bool, type(None)))
#: The same plus ``float``, whose text is handed to the fast encoder as ``json`` writes it.
_FLOAT_TYPES = _PLAIN_TYPES | {float}


class RowMappingError(ValueError):
    """A row cannot be turned into a record; ``row`` is the 1-based sheet row."""

    #: set by the publish loop: what it did before the row (a :class:`~.loop.LoopResult`)
    result: Any = None

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(f"row {row}: {reason}")
        self.row = row
        self.reason = reason

    def __reduce__(self):  # pickled by the mapping process (the message alone would not rebuild it)
        return type(self), (self.row, self.reason)


def field_names(header: Sequence[Any], width: int | None = None) -> list[str]:
    """
    Turn a header row into unique, stable field names (see the module docstring).

    :param header: the header row's cells as the API returned them (trailing blanks dropped).
    :param width: pad the result to this many columns (for data wider than the header).
    """
    total = max(len(header), width or 0)
    raw = [str(header[i]).strip() if i < len(header) and header[i] is not None else "" for i in range(total)]
    named = {name for name in raw if name}
    names: list[str] = []
    seen: set[str] = set()
    for index, name in enumerate(raw, start=1):
        if not name:
            name = f"column_{column_letter(index)}"
        if name in seen:
            suffix = 2
            while f"{name}_{suffix}" in seen or f"{name}_{suffix}" in named:
                suffix += 1
            name = f"{name}_{suffix}"
        seen.add(name)
        names.append(name)
    return names


def fingerprint(values: Iterable[Any]) -> str:
    """A short, stable hash of a list of cells or names (trailing empty cells ignored)."""
    cells = list(values)
    while cells and cells[-1] in ("", None):
        cells.pop()
    blob = json.dumps(cells, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def is_empty_row(row: Sequence[Any]) -> bool:
    """A row the API returned as ``[]``, or whose cells are all blank."""
    return all(cell in ("", None) for cell in row)


class Record(NamedTuple):
    """One Kafka record for one sheet row; ``timestamp``: its event time in ms (0: the publish time)."""

    row: int
    key: bytes
    value: bytes
    timestamp: int = 0


class RowMapper:
    """
    Map sheet rows to records with a fixed header.

    :param header: the header row's cells.
    :param key_column: a field name whose cell becomes the record key; ``None`` keys by row number.
    """

    def __init__(self, header: Sequence[Any], key_column: str | None = None) -> None:
        #: typed values (:meth:`use_types`): each row's cells converted before it is encoded
        self.types: Any = None
        #: cells kept as their text because they disagree with their column's number format
        self.fallbacks = 0
        #: typed values: the column whose date-time is each record's event time (:meth:`use_types`)
        self.event_index: int | None = None
        #: what goes before and after each value's JSON (a Connect envelope), or ``None``
        self.wrap: tuple[bytes, bytes] | None = None
        #: a value's bytes from its typed cells (a Schema Registry serializer), instead of JSON
        self.encode: Callable[[Sequence[Any]], bytes] | None = None
        #: what goes before and after each key (the Connect envelope of a string or a row number)
        self.key_wrap: tuple[bytes, bytes] | None = None
        self.fields = field_names(header)
        self.header_hash = fingerprint(self.fields)
        self._width = len(self.fields)
        self._key_index: int | None = None
        if key_column is not None:
            if key_column not in self.fields:
                raise ValueError(
                    f"key_column {key_column!r} is not a header of this tab; the headers are: "
                    + ", ".join(repr(f) for f in self.fields)
                )
            self._key_index = self.fields.index(key_column)
        self._encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
        self._fast = msgspec.json.Encoder().encode if msgspec is not None else None
        self._row_type = self._struct()

    def use_types(
        self,
        types: Any,
        event_index: int | None = None,
        wrap: tuple[bytes, bytes] | None = None,
        encode: Callable[[Sequence[Any]], bytes] | None = None,
    ) -> None:
        """
        Convert each row with ``types`` (a :class:`~.typed.ColumnTypes`: cells read as unformatted
        values become typed JSON values) before it is keyed and encoded; with ``event_index``, the
        date-time in that column is the record's timestamp; with ``wrap``, each value's JSON goes
        between those bytes (the Kafka Connect envelope, :mod:`~.connect`); with ``encode``, each
        value is what it makes of the row's cells (one per field, ``None`` past a short row).
        """
        self.types = types
        self.event_index = event_index
        self.wrap = wrap
        self.encode = encode

    def cells_as_json(self, cells: list[Any]) -> list[Any]:
        """A row's cells as a dead letter shows them: typed JSON values when values are typed, else as read."""
        return cells if self.types is None else self.types.json_row(cells)

    def use_key_envelope(self, wrap: tuple[bytes, bytes]) -> None:
        """Put each key between those bytes: a key column's cell as a JSON string, a row number as a number."""
        self.key_wrap = wrap

    @property
    def keys_by_row(self) -> bool:
        """Whether a record's key is its row number as text (no ``key_column``, no key envelope)."""
        return self._key_index is None and self.key_wrap is None

    def _struct(self) -> Any:
        """
        A msgspec struct type with one field per column, encoded under the column's field name:
        ``encode(RowType(*cells))`` gives the same bytes as ``json`` on the padded ``{field: cell}``
        dict, about three times faster. ``None`` without msgspec, or when a field name has a
        character msgspec does not accept in a struct (a quote, a backslash, a control character).
        """
        if msgspec is None:
            return None
        attrs = [f"f{index}" for index in range(self._width)]
        try:
            return msgspec.defstruct(
                "SheetRow", [(attr, object, None) for attr in attrs], rename=dict(zip(attrs, self.fields, strict=True))
            )
        except (ValueError, TypeError):
            return None

    def adopt_fields(self, fields: list[str]) -> None:
        """Take the fields another copy of this mapper (the mapping process's) widened to."""
        self.fields = list(fields)
        self._width = len(self.fields)
        self._row_type = self._struct()

    def _fields_for(self, length: int) -> list[str]:
        if length > self._width:
            self.fields = field_names(self.fields, length)
            self._width = length
            self._row_type = self._struct()
        return self.fields

    def _encode(self, cells: Sequence[Any]) -> bytes:
        """The JSON object ``{field: cell}`` of a row no wider than the fields, padded with null."""
        kinds = set(map(type, cells))
        fast = self._fast is not None and kinds <= _FLOAT_TYPES
        if fast and float in kinds:
            cells = [_json_float(cell) if type(cell) is float else cell for cell in cells]
        if fast and self._row_type is not None:
            return self._fast(self._row_type(*cells))
        value = dict(zip(self.fields, cells, strict=False))
        for name in self.fields[len(cells) :]:
            value[name] = None
        return self._fast(value) if fast else self._encoder.encode(value).encode("utf-8")

    def map_rows(
        self, first_row: int, rows: Sequence[Sequence[Any]], errors: str = "raise", all_text: bool = False
    ) -> Iterator[Record | int | RowMappingError]:
        """
        Yield a :class:`Record` for each non-empty row, and the row number (an ``int``) for each
        fully empty one, so that callers can count what they skipped.

        :param first_row: the sheet row number of ``rows[0]``.
        :param errors: ``"raise"`` raises :class:`RowMappingError` for a row that cannot be mapped;
            ``"yield"`` yields the error instead and goes on with the next row.
        :param all_text: every cell of ``rows`` is known to be a ``str`` (the reader checked it while
            decoding): the per-row check of the cells' types is skipped.
        """
        key_index = self._key_index
        plain = _PLAIN_TYPES.issuperset
        types = self.types
        text = all_text and types is None
        fast = self._fast
        new_record = tuple.__new__
        row_number = first_row - 1
        event, wrap, encode, key_wrap = self.event_index, self.wrap, self.encode, self.key_wrap
        for cells in rows:
            row_number += 1
            stamp = 0
            if types is not None:
                if event is not None:
                    stamp = types.event_ms(cells, event)
                cells, fell_back = types.row(cells)
                self.fallbacks += fell_back
            # any() is a quick "not empty" for almost every row; is_empty_row() decides the rest
            if not any(cells) and is_empty_row(cells):
                yield row_number
                continue
            if len(cells) > self._width:
                if encode is None:
                    self._fields_for(len(cells))
                elif is_empty_row(cells[self._width :]):
                    cells = cells[: self._width]
                else:  # a schema's fields are the header's: nowhere to put the cell
                    error = RowMappingError(row_number, self._past_the_header(cells))
                    if errors == "raise":
                        raise error
                    yield error
                    continue
            if key_index is None:
                key = str(row_number).encode()
            else:
                cell = cells[key_index] if key_index < len(cells) else None
                if cell in ("", None):
                    error = RowMappingError(row_number, f"the key column {self.fields[key_index]!r} is empty")
                    if errors == "raise":
                        raise error
                    yield error
                    continue
                key = str(cell).encode("utf-8") if key_wrap is None else _json_text(cell)
            if key_wrap is not None:
                key = key_wrap[0] + key + key_wrap[1]
            if encode is not None:
                yield new_record(Record, (row_number, key, encode(cells), stamp))
                continue
            row_type = self._row_type
            simple = row_type is not None and (text or plain(map(type, cells)))
            value = fast(row_type(*cells)) if simple else self._encode(cells)
            if wrap is not None:
                value = wrap[0] + value + wrap[1]
            yield new_record(Record, (row_number, key, value, stamp))

    def _past_the_header(self, cells: Sequence[Any]) -> str:
        last = max(i for i, cell in enumerate(cells) if cell not in ("", None)) + 1
        return (
            f"it has a value in column {column_letter(last)}, right of the header (which ends at column "
            f"{column_letter(self._width)}), and the registered schema has no field for it: give the column a header "
            f"(the next run registers it as a new field)"
        )


def _json_text(cell: Any) -> bytes:
    return json.dumps(str(cell), ensure_ascii=False).encode("utf-8")


def _json_float(value: float) -> Any:
    """A float as ``json`` writes it (``1e+16``, ``NaN``…; msgspec would write ``1e16``, ``null``)."""
    if value != value:
        text = "NaN"
    elif value in (math.inf, -math.inf):
        text = "Infinity" if value > 0 else "-Infinity"
    else:
        text = float.__repr__(value)
    return msgspec.Raw(text.encode())
