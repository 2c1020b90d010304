"""Memory tuning: glibc's fastbins off while rows stream through (:func:`bulk_malloc`), and back on
after; the periodic collection of the pages' cyclic garbage (:func:`collect_every`)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref

import pytest

from airflow_provider_sheets.accel.memory import _mallopt, collect_every


def test_bulk_malloc_turns_glibc_fastbins_off_and_back_on():
    """Measured in a fresh process: small blocks freed inside the block land in no fastbin
    (mallinfo2's fsmblks), and do again after it; GLIBC_TUNABLES' own mxfast is left alone."""
    if _mallopt() is None and not os.environ.get("CI"):
        pytest.skip("glibc's mallopt is not available here")
    script = """
import ctypes, json
from airflow_provider_sheets.accel.memory import bulk_malloc
libc = ctypes.CDLL(None)
NAMES = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in NAMES.split()]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def churn():
    blocks = [libc.malloc(40) for _ in range(500)]
    for block in blocks:
        libc.free(block)
    return libc.mallinfo2().fsmblks
before = churn()
with bulk_malloc():
    with bulk_malloc():
        inside = churn()
    nested = churn()
after = churn()
print(json.dumps([before, inside, nested, after]))
"""

    def run(**env):
        out = subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)

    before, inside, nested, after = run()
    assert before > 0, "fastbins are on before the block"
    assert inside == 0, "no small block goes to a fastbin inside it"
    assert nested == 0, "nor after an inner block ends"
    assert after > 0, "fastbins are on again after the block"
    tuned = run(GLIBC_TUNABLES="glibc.malloc.mxfast=64")
    assert all(value > 0 for value in tuned), "a user's mxfast tunable is not overridden"


def test_a_users_mxfast_tunable_leaves_mallopt_alone(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mxfast=64")
    assert _mallopt() is None


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_collect_every_collects_after_each_n_pages():
    made: list[weakref.ref] = []
    alive, pages = [], []
    enabled = gc.isenabled()
    gc.disable()  # only the collections collect_every runs
    try:
        for page in collect_every(range(7), every=3):
            pages.append(page)
            made.append(weakref.ref(_Cycle()))  # garbage that only the cyclic collector frees
            alive.append(sum(ref() is not None for ref in made))
    finally:
        if enabled:
            gc.enable()
    assert pages == list(range(7))
    assert alive == [1, 2, 3, 1, 2, 3, 1], "a collection after every third page"
