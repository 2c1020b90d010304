"""
Reconcile (pure): make the topic match the sheet now, from the fingerprints of what was published.

Every publishing run with a ``fingerprint_topic`` also writes, per record, its key and
``{"row", "hash"}`` (the hash of the record's value) to that compacted topic. A reconcile run reads
them back, reads every row of the tab, and publishes only what differs: a key it has no fingerprint
of (``insert``), a key whose value changed (``update``), and a tombstone for each key it has a
fingerprint of that no row holds any more (``delete``). With row-number keys a deleted row shifts
the rows below it, so their keys change value and go again; with ``key_column`` only changed keys do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from airflow_provider_sheets.model.headers import INSERT, UPDATE
from airflow_provider_sheets.model.mapping import Record, fingerprint


def fingerprint_value(row: int, value: bytes) -> bytes:
    """The fingerprint record's value for a record of sheet row ``row`` whose value was ``value``."""
    return json.dumps({"row": row, "hash": fingerprint([value])}, separators=(",", ":")).encode()


def parse_fingerprint(raw: bytes | None) -> tuple[int, str] | None:
    """``(row, hash)`` of a fingerprint record's value; ``None`` for a tombstone or anything else."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    row, digest = (data.get("row"), data.get("hash")) if isinstance(data, dict) else (None, None)
    if not isinstance(row, int) or isinstance(row, bool) or not isinstance(digest, str):
        return None
    return row, digest


def known_fingerprints(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[bytes, tuple[int, str]]:
    """The latest fingerprint of each key from a fingerprint topic's ``(key, value)`` records, in offset order."""
    known: dict[bytes, tuple[int, str]] = {}
    for key, raw in records:
        if key is None:
            continue
        parsed = parse_fingerprint(raw)
        if parsed is None:
            known.pop(key, None)
        else:
            known[key] = parsed
    return known


@dataclass
class Reconciliation:
    """
    One reconcile run's comparison: ``known`` (key -> ``(row, hash)``) from the fingerprint topic;
    :meth:`change` for each record read, :meth:`gone` at the end.
    """

    known: dict[bytes, tuple[int, str]]
    seen: set[bytes] = field(default_factory=set)
    unchanged: int = 0

    def change(self, record: Record) -> bytes | None:
        """
        ``INSERT``, ``UPDATE``, or ``None`` when the topic already holds this value under this key.

        :param record: a :class:`Record` or a plain ``(row, key, value, timestamp)`` tuple (the forked path's).
        """
        key, value = record[1], record[2]
        self.seen.add(key)
        before = self.known.get(key)
        if before is None:
            return INSERT
        if before[1] == fingerprint([value]):
            self.unchanged += 1
            return None
        return UPDATE

    def gone(self) -> list[tuple[bytes, int]]:
        """``(key, row)`` of every key with a fingerprint that no row read holds now, in row order."""
        return sorted(((key, row) for key, (row, _) in self.known.items() if key not in self.seen), key=lambda k: k[1])
