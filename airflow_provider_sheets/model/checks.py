"""
Checks of a stored position against the tab as it is now (pure). Each returns a finding, the fact
in words, or ``None``; the caller says where the position is stored and how to fix it, and decides
(``on_drift``) what to do about a drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_sheets.model.mapping import Record, RowMapper, fingerprint
from airflow_provider_sheets.model.position import RECENT_ROWS, Watermark
from airflow_provider_sheets.model.sheet import SheetInfo

#: What ``on_drift`` may say: stop, publish the rows after the position as they are now, publish
#: every row again, or reconcile (publish what makes the topic match the tab, and tombstones).
DRIFT_POLICIES = FAIL, CONTINUE, REPUBLISH, RECONCILE = ("fail", "continue", "republish", "reconcile")


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


def header_change(previous: Watermark, mapper: RowMapper, title: str) -> str | None:
    """How the header row changed since ``previous`` was written, or ``None`` (also for columns added at the right)."""
    if not previous.header_hash or previous.header_hash == mapper.header_hash or added_fields(previous, mapper):
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


def added_fields(previous: Watermark, mapper: RowMapper) -> list[str] | None:
    """
    The fields added at the right of the header since ``previous`` (a new question, a helper
    column): an additive change; ``None`` when the header is the same or changed otherwise.
    """
    before = previous.fields
    if not previous.header_hash or previous.header_hash == mapper.header_hash or not before:
        return None
    now = mapper.fields
    return list(now[len(before) :]) if len(now) > len(before) and now[: len(before)] == before else None


def hashes(mapper: RowMapper, rows: Iterable[tuple[int, list[Any]]], width: int | None = None) -> dict[int, str]:
    """
    The fingerprint of each row's record (:func:`row_hash`), for rows that map to one; with
    ``width``, of its first ``width`` cells only (the columns the position's header had).
    """
    found = {}
    for row, cells in rows:
        if width is not None:  # as the API returned the row then: its trailing blanks dropped
            cells = cells[:width]
            while cells and cells[-1] in ("", None):
                cells = cells[:-1]
        digest = row_hash(mapper, row, cells)
        if digest is not None:
            found[row] = digest
    return found


@dataclass(frozen=True)
class RowsFinding:
    """
    How the last published rows changed (:func:`recent_change`).

    :param edited: rows rewritten in place (same position, other cells): to publish again.
    :param cleared: rows emptied in place (no record to publish; a reconcile sends their tombstones).
    :param shift: rows moved by this many (negative: rows above were deleted), found with ``drift``.
    :param drift: the finding when rows were deleted, inserted or changed past telling: ``on_drift`` decides.
    """

    edited: tuple[int, ...] = ()
    cleared: tuple[int, ...] = ()
    shift: int = 0
    drift: str | None = None


def _matches(old: Mapping[int, str], now: Mapping[int, str], shift: int) -> int:
    return sum(1 for row, digest in old.items() if now.get(row + shift) == digest)


def recent_change(
    old: Mapping[int, str], now: Mapping[int, str], last_row: int, title: str, mark: str = "watermark"
) -> RowsFinding:
    """
    Compare the fingerprints a position kept of its last rows (``old``: row -> hash) with the rows
    at and around those positions now (``now``: the same rows and the ones after them).

    When rows above were deleted or inserted, the old fingerprints turn up a few rows up or down:
    the best such shift that explains more rows than none does is a drift. Otherwise the rows that
    differ in place were edited (or cleared), which is benign.
    """
    same = _matches(old, now, 0)
    if same == len(old):
        return RowsFinding()
    shifts = sorted((d for d in range(-RECENT_ROWS + 1, RECENT_ROWS) if d), key=abs)
    best = max(shifts, key=lambda d: _matches(old, now, d))
    explained = _matches(old, now, best)
    if explained > same and explained >= min(2, len(old)):
        return RowsFinding(shift=best, drift=_shift_text(best, last_row, title, mark))
    changed = sorted(row for row, digest in old.items() if now.get(row) != digest)
    return RowsFinding(
        edited=tuple(row for row in changed if row in now), cleared=tuple(row for row in changed if row not in now)
    )


def _shift_text(shift: int, last_row: int, title: str, mark: str) -> str:
    count = abs(shift)
    rows = "1 row was" if count == 1 else f"{count} rows were"
    what, way = ("deleted", "up") if shift < 0 else ("inserted", "down")
    return (
        f"{rows} {what} above the {mark} of tab {title!r}: the last row already published, row {last_row}, is "
        f"now row {last_row + shift}, and every row after it moved {way} by {count}."
    )


@dataclass(frozen=True)
class Comparison:
    """
    The header now against a position's (:func:`comparison`): ``added`` fields at the right (benign),
    or a ``drift`` finding; and how to fingerprint rows now as the position did.
    """

    mapper: RowMapper
    width: int | None = None
    added: tuple[str, ...] = ()
    drift: str | None = None

    def hashes(self, rows: Iterable[tuple[int, list[Any]]]) -> dict[int, str]:
        """Fingerprints of ``rows`` comparable with the position's (:func:`hashes`, on its columns only)."""
        return hashes(self.mapper, rows, self.width)


def comparison(previous: Watermark, mapper: RowMapper, title: str) -> Comparison:
    """How the header changed since ``previous``: not at all, by columns added at the right, or otherwise (a drift)."""
    added = added_fields(previous, mapper)
    if added:
        width = len(previous.fields or [])
        old = RowMapper(previous.fields or [])
        if mapper.types is not None:  # typed values: the old columns as they were typed
            old.use_types(mapper.types.narrowed(width))
        return Comparison(old, width, tuple(added))
    return Comparison(mapper, drift=header_change(previous, mapper, title))


@dataclass(frozen=True)
class EditedAndNew:
    """A row filter (a loop selector): the rows ``edited`` at or before ``last_row``, and every row after it."""

    edited: frozenset[int]
    last_row: int

    def __call__(self, cells: list[Any], row: int) -> bool:
        return row > self.last_row or row in self.edited
