"""
The plain reference publish loop (pure): pages in, records out to a :class:`Sink`.

Every way of publishing (in the task process, or with the rows read and mapped in a forked
process: :mod:`airflow_provider_sheets.accel`) maps a page with :func:`map_page` and hands the
sink the same calls in the same order, so both give byte-identical records (the parity test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from airflow_provider_sheets.model.mapping import Record, RowMapper, RowMappingError, fingerprint
from airflow_provider_sheets.model.position import RECENT_ROWS
from airflow_provider_sheets.model.sheet import Page

#: Keeps a row or not, from its cells and row number (a backfill's interval).
Selector = Callable[[list[Any], int], bool]


@dataclass(frozen=True)
class LoopOptions:
    """
    :param select: keeps a row or not (a backfill's interval); ``None`` keeps every row.
    :param dead_letters: hand rows that cannot be mapped to :meth:`Sink.dead_letter` and go on;
        otherwise the first one raises :class:`RowMappingError`.
    """

    select: Selector | None = None
    dead_letters: bool = False


@dataclass(frozen=True)
class PageSpan:
    """The rows a page asked for (``first_row`` .. ``last_row``) and how many came back."""

    first_row: int
    last_row: int
    returned: int

    @property
    def full(self) -> bool:
        """Every row of the span came back: the tab may go on right after it."""
        return self.returned > 0 and self.returned == self.last_row - self.first_row + 1


@dataclass
class LoopResult:
    """What the loop did so far (updated after each page, and when a row fails)."""

    first_row: int | None = None
    last_row: int | None = None
    last_value: bytes = b""
    rows_seen: int = 0
    selected: int = 0
    dead_lettered: int = 0
    #: the last row handed to :meth:`Sink.dead_letter`
    last_dead_letter: int | None = None
    pages: int = 0
    widest: int = 0
    last_page: PageSpan | None = None
    #: the fingerprints of the last :data:`~.position.RECENT_ROWS` records' values (row -> hash)
    recent: dict[int, str] = field(default_factory=dict)
    #: typed values: cells kept as their text, disagreeing with their column's number format
    typed_fallbacks: int = 0

    @property
    def handled_row(self) -> int | None:
        """The last row handed on, as a record or a dead letter (every row up to it is done)."""
        rows = [row for row in (self.last_row, self.last_dead_letter) if row is not None]
        return max(rows) if rows else None

    def as_dict(self) -> dict[str, Any]:
        """Plain values by name (what a forked mapping process sends after a page)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        span = self.last_page
        values["last_page"] = None if span is None else (span.first_row, span.last_row, span.returned)
        values["recent"] = dict(self.recent)
        return values

    def update(self, values: dict[str, Any]) -> None:
        """Take the values :meth:`as_dict` gave."""
        for name, value in values.items():
            setattr(self, name, PageSpan(*value) if name == "last_page" and value is not None else value)


class Sink(Protocol):
    """Where the loop's output goes: a publisher, a dry run's preview, a test's recorder."""

    def dead_letter(self, error: RowMappingError, cells: list[Any]) -> None:
        """A row that cannot be mapped (only with ``dead_letters``)."""

    def records(self, records: list[Record]) -> None:
        """A page's records, in row order (after the page's dead letters)."""

    def page_done(self, result: LoopResult) -> None:
        """After each complete page."""


def map_page(
    page: Page,
    mapper: RowMapper,
    result: LoopResult,
    records: list[Record],
    dead: list[tuple[RowMappingError, list[Any]]],
    select: Selector | None = None,
    dead_letters: bool = False,
) -> None:
    """
    Map one page into ``records`` (selected, in row order) and ``dead`` (rows that cannot be
    mapped, with their cells), and count it in ``result``; also when a row fails half-way, so that
    the caller can hand on what came before it.

    :raises RowMappingError: a row cannot be mapped and ``dead_letters`` is off.
    """
    # the per-row path keeps its state in locals: it runs for every row of a 10M-cell sheet
    result.pages += 1
    rows, first = page.rows, page.first_row
    result.last_page = PageSpan(first, page.last_row, len(rows))
    result.widest = max(result.widest, max(map(len, rows), default=0))
    append = records.append
    seen = 0
    try:
        for record in mapper.map_rows(first, rows, "yield" if dead_letters else "raise", page.all_text):
            if type(record) is not Record:
                if isinstance(record, RowMappingError):
                    dead.append((record, mapper.cells_as_json(rows[record.row - first])))
                continue
            seen += 1
            if select is None or select(rows[record.row - first], record.row):
                append(record)
    finally:
        result.typed_fallbacks = mapper.fallbacks
        result.rows_seen += seen
        result.selected += len(records)
        result.dead_lettered += len(dead)
        if dead:
            result.last_dead_letter = dead[-1][0].row
        if records:
            if result.first_row is None:
                result.first_row = records[0].row
            last = records[-1]
            result.last_row, result.last_value = last.row, last.value
            remember(result.recent, records[-RECENT_ROWS:])


def remember(recent: dict[int, str], records: list[Record]) -> None:
    """Add the fingerprints of ``records`` (in row order, after those already in ``recent``), keeping the last ones."""
    for record in records:
        recent[record.row] = fingerprint([record.value])
    for row in sorted(recent)[:-RECENT_ROWS]:
        del recent[row]


def hand_over(sink: Sink, records: list[Record], dead: list[tuple[RowMappingError, list[Any]]]) -> None:
    """Give the sink a page's output: its dead letters, then its records."""
    for error, cells in dead:
        sink.dead_letter(error, cells)
    if records:
        sink.records(records)


def run_pages(
    pages: Iterable[Page], mapper: RowMapper, sink: Sink, options: LoopOptions, result: LoopResult | None = None
) -> LoopResult:
    """
    Map every non-empty row of ``pages`` and hand the records to ``sink``, page by page.

    :raises RowMappingError: without ``dead_letters``; the records before the row are handed over
        first, and :attr:`RowMappingError.result` tells what the loop did.
    """
    result = result if result is not None else LoopResult()
    try:
        for page in pages:
            records: list[Record] = []
            dead: list[tuple[RowMappingError, list[Any]]] = []
            try:
                map_page(page, mapper, result, records, dead, options.select, options.dead_letters)
            finally:
                hand_over(sink, records, dead)
            sink.page_done(result)
    except RowMappingError as err:
        err.result = result
        raise
    return result


def leading_rows(page: Page | None, count: int) -> list[tuple[int, list[Any]]]:
    """``(row, cells)`` of the first ``count`` rows of ``page`` (none without a page)."""
    return [] if page is None else [(page.first_row + i, cells) for i, cells in enumerate(page.rows[:count])]
