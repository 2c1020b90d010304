"""
The read → map → publish core shared by :class:`SheetToKafkaOperator` (batch layer) and
:class:`~airflow_provider_sheets.streaming.SheetStream` (speed layer).

Both read pages with :class:`~airflow_provider_sheets.hooks.sheets.SheetsReader`, name fields with
:func:`mapper_for`, tag records with :func:`provenance_headers`, run :func:`publish_pages`, and
describe their position with :func:`watermark_for`; they differ only in where the position lives
(an Airflow Variable or a compacted topic) and when they run.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from airflow_provider_sheets.errors import HeaderError, SheetsConfigError
from airflow_provider_sheets.hooks.sheets import Page, SheetInfo
from airflow_provider_sheets.kafka import Publisher
from airflow_provider_sheets.mapping_process import MappingProcessHooks, publish_from_child
from airflow_provider_sheets.rows import Record, RowMapper, RowMappingError, fingerprint
from airflow_provider_sheets.watermark import Watermark


def mapper_for(header: list[Any], header_row: int, info: SheetInfo, key_column: str | None, setting: str) -> RowMapper:
    """
    The tab's :class:`RowMapper`, or an error naming the fix.

    :param setting: how the user sets the header row (``header_row`` or ``--header-row``).
    """
    if not any(cell not in ("", None) for cell in header):
        raise HeaderError(
            f"the header row {header_row} of tab {info.title!r} is empty. Put the field names (for a "
            f"Google Form: the question titles) in row {header_row}, or set {setting}."
        )
    try:
        return RowMapper(header, key_column)
    except ValueError as err:
        raise SheetsConfigError(f"tab {info.title!r}: {err}") from None


def provenance_headers(spreadsheet_id: str, info: SheetInfo, mapper: RowMapper) -> list[tuple[str, bytes]]:
    """The ``sheets.*`` headers every record of a run carries (``sheets.row`` is added per record)."""
    return [
        ("sheets.spreadsheet_id", spreadsheet_id.encode()),
        ("sheets.sheet_name", info.title.encode()),
        ("sheets.sheet_id", str(info.sheet_id).encode()),
        ("sheets.header_hash", mapper.header_hash.encode()),
    ]


def watermark_for(
    spreadsheet_id: str, info: SheetInfo, topic: str, mapper: RowMapper | None, row: int, value: bytes, **extra: Any
) -> Watermark:
    """The position after ``row`` (whose record value was ``value``), with the hashes drift checks need."""
    fields: dict[str, Any] = {
        "header_hash": mapper.header_hash if mapper else None,
        "fields": list(mapper.fields) if mapper else None,
        "last_row_hash": fingerprint([value]) if value else None,
        **extra,
    }
    return Watermark(
        last_row=row,
        spreadsheet_id=spreadsheet_id,
        sheet_id=info.sheet_id,
        sheet_name=info.title,
        topic=topic,
        **fields,
    )


@dataclass
class PublishResult:
    """What :func:`publish_pages` did."""

    first_row: int | None = None
    last_row: int | None = None
    last_value: bytes = b""
    rows_seen: int = 0
    selected: int = 0
    dead_lettered: int = 0
    pages: int = 0
    last_page: Page | None = None
    widest: int = 0

    def counts(self) -> tuple[Any, ...]:
        """Everything but :attr:`last_page`, as a tuple (what the mapping process sends)."""
        return tuple(getattr(self, name) for name in _COUNTS)

    def adopt_counts(self, counts: tuple[Any, ...]) -> None:
        """Take the values :meth:`counts` gave (in the task process)."""
        for name, value in zip(_COUNTS, counts, strict=True):
            setattr(self, name, value)


_COUNTS = tuple(name for name in PublishResult.__dataclass_fields__ if name != "last_page")


def publish_pages(
    pages: Iterable[Page],
    mapper: RowMapper,
    headers: list[tuple[str, bytes]],
    emit: Callable[[Record, list[tuple[str, bytes]]], None],
    *,
    select: Callable[[list[Any], int], bool] | None = None,
    dead_letter: Callable[[RowMappingError, list[Any]], None] | None = None,
    after_page: Callable[[Page, PublishResult], None] | None = None,
    mapping_process: MappingProcessHooks | None = None,
) -> PublishResult:
    """
    Map every non-empty row of ``pages`` and hand each record to ``emit`` with its headers.

    :param emit: sends a record (``Publisher.send``), or collects it (a dry run).
    :param select: keeps a row or not, from its cells and row number (a backfill's interval).
    :param dead_letter: takes a row that cannot be mapped; without it the
        :class:`RowMappingError` propagates.
    :param after_page: called after each page with the result so far.
    :param mapping_process: read and map the pages in a forked process (see
        :mod:`airflow_provider_sheets.mapping_process`), while this one only emits: ``pages`` must
        not have been started yet. ``select`` then runs in that process; ``emit``, ``dead_letter``
        and ``after_page`` run here, in the same order as without it, and
        :attr:`PublishResult.last_page` keeps the page's row numbers but not its rows.
    :raises RowMappingError: without ``dead_letter``; its ``result`` attribute tells what was
        emitted before the row.
    """
    result = PublishResult()
    try:
        with bulk_gc(), bulk_malloc():
            if mapping_process is not None:
                args = (pages, mapper, headers, emit, select, dead_letter, after_page, result)
                publish_from_child(*args, mapping_process)
            else:
                _publish(pages, mapper, headers, emit, select, dead_letter, after_page, result)
    except RowMappingError as err:
        err.result = result  # type: ignore[attr-defined]
        raise
    return result


def _publish(pages, mapper, headers, emit, select, dead_letter, after_page, result) -> None:
    # the per-row path keeps its state in locals (folded into ``result`` after each page, and
    # when a row fails it): it runs for every row of a 10M-cell sheet
    errors = "yield" if dead_letter is not None else "raise"
    row_is_key = mapper.keys_by_row
    for page in pages:
        result.pages += 1
        result.last_page = page
        rows, first = page.rows, page.first_row
        result.widest = max(result.widest, max(map(len, rows), default=0))
        page_first = page_last = None
        seen = selected = 0
        try:
            for record in mapper.map_rows(first, rows, errors=errors):
                if type(record) is not Record:
                    if isinstance(record, RowMappingError):
                        result.dead_lettered += 1
                        dead_letter(record, rows[record.row - first])
                    continue
                seen += 1
                if select is not None and not select(rows[record.row - first], record.row):
                    continue
                selected += 1
                if headers is None:  # the mapping process: the task process adds them
                    emit(record, None)
                else:
                    emit(record, [*headers, ("sheets.row", record.key if row_is_key else str(record.row).encode())])
                if page_first is None:
                    page_first = record
                page_last = record
        finally:
            result.rows_seen += seen
            result.selected += selected
            if page_first is not None and page_last is not None:
                if result.first_row is None:
                    result.first_row = page_first.row
                result.last_row, result.last_value = page_last.row, page_last.value
        if not result.pages % GC_PAGES:
            gc.collect()  # only what was created since bulk_gc() began: cyclic garbage stays bounded
        if after_page is not None:
            after_page(page, result)


#: The cyclic garbage collector's first threshold while pages are published (Python's default: 700).
GC_THRESHOLD = 50_000
#: Pages between full collections inside :func:`bulk_gc`.
GC_PAGES = 16


@contextmanager
def bulk_gc() -> Iterator[None]:
    """
    Keep Python's cyclic garbage collector from rescanning the process while rows stream through.

    Every page allocates tens of thousands of lists and tuples that reference counting frees, but
    each 700 allocations trigger a collection, and the older generations hold all of Airflow
    and its providers (about 200,000 objects): measured on 500,000 rows, collections took a
    quarter of the run. Inside this block the objects alive at its start are frozen (left out
    of collections, :func:`gc.freeze`) and collections run every :data:`GC_THRESHOLD`
    allocations. Cycles are still collected: :func:`publish_pages` runs a full collection every
    :data:`GC_PAGES` pages and this block one at its end, each looking only at what was created
    since the block began, so the peak memory does not grow with the number of pages. At the end
    the threshold is restored and the objects are unfrozen, unless some were frozen before the
    block (Airflow freezes its objects before it forks workers): those, and the ones frozen here,
    then stay frozen.
    """
    thresholds = gc.get_threshold()
    thaw = gc.get_freeze_count() == 0  # objects someone else froze (Airflow, before forking) stay frozen
    gc.freeze()
    if thresholds[0]:  # 0: collections are off, and stay off
        gc.set_threshold(max(thresholds[0], GC_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.collect()  # the cyclic garbage made inside the block (frozen objects are not scanned)
        if thaw:
            gc.unfreeze()


#: glibc's ``mallopt`` parameter for the fastbin size limit, and that limit's default
#: (``64 * sizeof(size_t) / 4``).
_M_MXFAST = 1
_DEFAULT_MXFAST = 64 * ctypes.sizeof(ctypes.c_size_t) // 4
_malloc_lock = threading.Lock()
_malloc_depth = 0


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or ``None`` (another C library, or the user tuned the fastbins)."""
    if not sys.platform.startswith("linux") or "mxfast" in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):  # musl's mallopt does nothing
            return None
        return ctypes.CDLL(None).mallopt
    except (OSError, ValueError, AttributeError):
        return None


@contextmanager
def bulk_malloc() -> Iterator[None]:
    """
    Turn glibc's fastbins off while rows stream through; elsewhere (or when ``GLIBC_TUNABLES``
    sets ``glibc.malloc.mxfast``) nothing changes.

    librdkafka allocates each record and each of its headers as a block of its own (13 blocks for a
    record with the ten provenance headers) and frees them in the producing thread once the broker
    acknowledged them. Freed blocks that small go to glibc's fastbins, and the next larger
    allocation walks all of them to merge them (``malloc_consolidate``): producing 500,000 such
    records to the local broker took the producing thread 2.0 s with fastbins and 1.3 s without.
    Small blocks still come from glibc's per-thread cache. The default limit is restored when the
    outermost block ends (fastbins are a per-process setting, shared by every thread).
    """
    global _malloc_depth
    mallopt = _mallopt()
    if mallopt is None:
        yield
        return
    with _malloc_lock:
        _malloc_depth += 1
        if _malloc_depth == 1:
            mallopt(_M_MXFAST, 0)
    try:
        yield
    finally:
        with _malloc_lock:
            _malloc_depth -= 1
            if _malloc_depth == 0:
                mallopt(_M_MXFAST, _DEFAULT_MXFAST)


def sender(publisher: Publisher) -> Callable[[Record, list[tuple[str, bytes]]], None]:
    """An ``emit`` for :func:`publish_pages` that produces to the publisher's topic."""

    def emit(record: Record, headers: list[tuple[str, bytes]]) -> None:
        publisher.send(record.key, record.value, headers)

    emit.rows = publisher.send_rows  # type: ignore[attr-defined] # a whole page from the mapping process
    return emit


def row_hash(mapper: RowMapper, row: int, cells: list[Any]) -> str | None:
    """The hash a position keeps of its last row's record (``None``: the row maps to no record)."""
    mapped = next(iter(mapper.map_rows(row, [cells], errors="yield")), None)
    return fingerprint([mapped.value]) if isinstance(mapped, Record) else None


def row_drift(
    mapper: RowMapper, row: int, cells: list[Any], expected_hash: str, title: str, mark: str = "watermark"
) -> str | None:
    """
    Explain how ``row`` (the last row already published, whose record hashed to ``expected_hash``)
    changed, or ``None`` when it maps to the same record: the check that rows above a position
    were not inserted, deleted or edited, which would shift the rows after it.
    """
    now = row_hash(mapper, row, cells)
    if now == expected_hash:
        return None
    state = "is now empty" if now is None else "holds different cells"
    return (
        f"row {row} of tab {title!r}, the last row already published, {state}: rows above the {mark} were "
        f"inserted, deleted or edited, so the rows after it may be shifted."
    )
