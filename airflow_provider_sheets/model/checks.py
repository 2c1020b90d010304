"""
Checks of a stored position against the tab as it is now (pure). Each returns a finding, the fact
in words, or ``None``; the caller says where the position is stored and how to fix it, and decides
(``on_drift``) what to do about a drift.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_sheets.model.mapping import Record, RowMapper, fingerprint
from airflow_provider_sheets.model.position import Watermark
from airflow_provider_sheets.model.sheet import SheetInfo

#: What ``on_drift`` may say: stop, publish the rows after the position as they are now, or
#: publish every row again.
DRIFT_POLICIES = FAIL, CONTINUE, REPUBLISH = ("fail", "continue", "republish")


def above_header(last_row: int, header_row: int) -> str | None:
    """A position that names a row above the header (so the header would be published as data)."""
    if last_row >= header_row:
        return None
    return f"says last_row={last_row}, above the header row {header_row}"


def beyond_tab(last_row: int, info: SheetInfo) -> str | None:
    """A position past the tab's last row: rows were deleted since it was written."""
    if last_row <= info.row_count:
        return None
    return (
        f"says rows up to {last_row} are done, but tab {info.title!r} now has only {info.row_count} rows: rows "
        f"were deleted"
    )


def row_hash(mapper: RowMapper, row: int, cells: list[Any]) -> str | None:
    """The hash a position keeps of its last row's record (``None``: the row maps to no record)."""
    mapped = next(iter(mapper.map_rows(row, [cells], errors="yield")), None)
    return fingerprint([mapped.value]) if isinstance(mapped, Record) else None


def row_change(
    mapper: RowMapper, row: int, cells: list[Any], expected_hash: str, title: str, mark: str = "watermark"
) -> str | None:
    """
    How ``row`` (the last row already published, whose record hashed to ``expected_hash``) changed,
    or ``None`` when it maps to the same record: rows above the position were inserted, deleted or
    edited, which would shift the rows after it.
    """
    now = row_hash(mapper, row, cells)
    if now == expected_hash:
        return None
    state = "is now empty" if now is None else "holds different cells"
    return (
        f"row {row} of tab {title!r}, the last row already published, {state}: rows above the {mark} were "
        f"inserted, deleted or edited, so the rows after it may be shifted."
    )


def header_change(previous: Watermark, mapper: RowMapper, title: str) -> str | None:
    """How the header row changed since ``previous`` was written, or ``None``."""
    if not previous.header_hash or previous.header_hash == mapper.header_hash:
        return None
    before = previous.fields or []
    added = [f for f in mapper.fields if f not in before]
    removed = [f for f in before if f not in mapper.fields]
    detail = []
    if added:
        detail.append("added " + ", ".join(repr(f) for f in added))
    if removed:
        detail.append("removed or renamed " + ", ".join(repr(f) for f in removed))
    if not detail:
        detail.append("same names in another order")
    return (
        f"the header row of tab {title!r} changed since the last run ({'; '.join(detail)}): a form "
        f"question was added, renamed or moved, so records would change shape."
    )


def drift(previous: Watermark, mapper: RowMapper, cells: list[Any], title: str) -> str | None:
    """The header's change, else the last published row's, since ``previous``; ``None``: no drift."""
    changed = header_change(previous, mapper, title)
    if changed is None and previous.last_row_hash:
        changed = row_change(mapper, previous.last_row, cells, previous.last_row_hash, title)
    return changed
