"""
Memory tuning while rows stream through: the cyclic garbage collector kept off the process's old
objects (:func:`bulk_gc`, :func:`collect_every`) and glibc's fastbins off (:func:`bulk_malloc`).
:func:`bulk` is both; each is a no-op where it does not apply.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


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
    allocations. Cycles are still collected: :func:`collect_every` runs a full collection every
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


@contextmanager
def bulk() -> Iterator[None]:
    """:func:`bulk_gc` and :func:`bulk_malloc` together."""
    with bulk_gc(), bulk_malloc():
        yield


def collect_every(pages: Iterable[T], every: int = GC_PAGES) -> Iterator[T]:
    """
    Yield ``pages``, running a collection after each ``every`` of them: inside :func:`bulk_gc` it
    looks only at what was created since the block began, so cyclic garbage stays bounded.
    """
    for count, page in enumerate(pages, start=1):
        yield page
        if not count % every:
            gc.collect()
