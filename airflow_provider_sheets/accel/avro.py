"""
Avro values as confluent-kafka's ``AvroSerializer`` writes them, without its per-record bookkeeping
(subject lookup, rule execution, context tracking: about 40% of its time): the same 5-byte framing
(magic byte 0, the schema id big-endian) and fastavro's ``schemaless_writer`` on the same schema.
The serializer stays the reference: the first row of every encoder is written both ways and the
fast path is used only when the bytes are the same (else the serializer, with a warning), and the
parity test compares them over a table of rows.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)


class FastAvroRows:
    """A row's cells (one per field, or fewer) as an Avro value with the registry's framing."""

    def __init__(self, schema: dict[str, Any], schema_id: int, names: Sequence[str]) -> None:
        import fastavro

        self.write = fastavro.schemaless_writer
        self.parsed = fastavro.parse_schema(schema)
        self.prefix = b"\x00" + schema_id.to_bytes(4, "big")
        self.names = tuple(names)

    def __call__(self, cells: Sequence[Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self.prefix)
        self.write(buffer, self.parsed, dict(zip(self.names, cells, strict=False)))
        return buffer.getvalue()


#: a cell of each kind, as ``ConnectTypes`` gives it (the check's row)
_SAMPLE = {"DATE_TIME": 1793615052000, "DATE": 20759, "TIME": 34200000, "BOOLEAN": True}


def sample_rows(kinds: Sequence[str | None]) -> list[list[Any]]:
    """Rows that exercise every field of a tab: a value of each column's kind, a short row, and nulls."""
    full = [
        _SAMPLE.get(kind or "", 4.5 if kind in ("NUMBER", "PERCENT", "CURRENCY", "SCIENTIFIC") else "é ∑ 🙏")
        for kind in kinds
    ]
    return [full, full[: len(full) // 2], [None] * len(full)]


def avro_rows(
    reference: Callable[[Sequence[Any]], bytes], schema: dict[str, Any], schema_id: int, kinds: Sequence[str | None]
) -> Callable[[Sequence[Any]], bytes]:
    """The fast encoder when it writes the tab's sample rows as ``reference`` does, else ``reference``."""
    names = [field["name"] for field in schema["fields"]]
    fast = FastAvroRows(schema, schema_id, names)
    if all(fast(row) == reference(row) for row in sample_rows(kinds)):
        return fast
    log.warning("The fast Avro encoder disagrees with confluent-kafka's AvroSerializer; using the serializer.")
    return reference
