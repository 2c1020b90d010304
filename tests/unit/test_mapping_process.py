"""Pages read and mapped in a forked process: the same records, results and errors as in one process.

Every test forks for real (the mapping process runs :func:`publish_pages`' own loop); the pages
come from plain lists or generators, so what is compared is the hand-over, not the reading.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import psutil
import pytest

from airflow_provider_sheets.core import publish_pages
from airflow_provider_sheets.errors import SheetsAccessError, SheetsToKafkaError
from airflow_provider_sheets.hooks.sheets import Page
from airflow_provider_sheets.mapping_process import MappingProcessHooks, available
from airflow_provider_sheets.rows import RowMapper, RowMappingError

pytestmark = pytest.mark.skipif(not available(), reason="the mapping process needs fork (Linux)")

HEADERS = [("sheets.spreadsheet_id", b"s1"), ("sheets.sheet_id", b"0")]


def _pages() -> list[Page]:
    return [
        Page(2, 4, [["1", "a"], [], ["3", "c", "wider"]]),
        Page(5, 6, [["5", "e"], ["6", "f"]]),
        Page(7, 9, []),
        Page(10, 10, [["10", 1.5]]),
    ]


def _publish(pages, mapper, *, hooks=None, **kwargs):
    emitted, after = [], []
    result = publish_pages(
        pages,
        mapper,
        HEADERS,
        lambda record, headers: emitted.append((tuple(record), headers)),
        after_page=lambda page, progress: after.append((page.first_row, page.last_row, progress.last_row)),
        mapping_process=hooks,
        **kwargs,
    )
    return emitted, after, result


def _summary(result):
    """Everything the result tells but the last page (whose rows the mapping process does not send)."""
    return {name: value for name, value in dataclasses.asdict(result).items() if name != "last_page"}


@pytest.mark.parametrize("key_column", [None, "id"])
def test_the_child_emits_what_one_process_emits(key_column):
    here = _publish(_pages(), RowMapper(["id", "name"], key_column))
    mapper = RowMapper(["id", "name"], key_column)
    forked = _publish(_pages(), mapper, hooks=MappingProcessHooks())
    assert forked[0] == here[0], "the same records with the same headers, in the same order"
    assert forked[1] == here[1], "after_page runs after each page, with the result so far"
    assert _summary(forked[2]) == _summary(here[2])
    assert (len(forked[0]), forked[2].pages) == (5, 4)
    assert mapper.fields == ["id", "name", "column_C"], "fields the child widened reach the task process's mapper"
    assert (forked[2].last_page.rows, forked[2].last_page.last_row) == ([], 10)


def test_select_runs_in_the_child_and_state_travels_back():
    states = []
    hooks = MappingProcessHooks(child_state=os.getpid, adopt_state=states.append)
    emitted, _, result = _publish(
        _pages(), RowMapper(["id", "name"]), hooks=hooks, select=lambda cells, row: row % 2 == 0 and cells[0] != "6"
    )
    assert [record[0] for record, _ in emitted] == [2, 4, 10]
    assert (result.rows_seen, result.selected) == (5, 3)
    assert len(states) == 4, "each page carries the child's state"
    assert os.getpid() not in states, "the state is the child's"


def test_a_row_that_cannot_be_mapped_fails_in_the_task_process_after_the_rows_before_it():
    pages = [Page(2, 3, [["1", "a"], ["2", "b"]]), Page(4, 6, [["4", "d"], ["", "e"], ["6", "f"]])]
    emitted = []
    with pytest.raises(RowMappingError) as caught:
        publish_pages(
            pages,
            RowMapper(["id", "name"], "id"),
            HEADERS,
            lambda record, headers: emitted.append(record.row),
            mapping_process=MappingProcessHooks(),
        )
    assert (caught.value.row, caught.value.reason) == (5, "the key column 'id' is empty")
    assert emitted == [2, 3, 4], "the rows before the bad one, also those of its own page"
    assert (caught.value.result.last_row, caught.value.result.rows_seen) == (4, 3)


def test_dead_letters_are_handled_in_the_task_process_with_their_cells():
    dead = []
    emitted, _, result = _publish(
        [Page(2, 4, [["1", "a"], ["", bytearray(b"b")], ["3", "c"]])],
        RowMapper(["id", "name"], "id"),
        hooks=MappingProcessHooks(),
        dead_letter=lambda error, cells: dead.append((error.row, error.reason, cells)),
    )
    assert dead == [(3, "the key column 'id' is empty", ["", bytearray(b"b")])]
    assert type(dead[0][2][1]) is bytearray, "a dead letter's cells keep their types through the pipe"
    assert [record[0] for record, _ in emitted] == [2, 4]
    assert result.dead_lettered == 1


def _failing_pages(error: BaseException):
    yield Page(2, 2, [["1", "a"]])
    raise error


def test_a_reading_error_in_the_child_is_raised_as_is():
    error = SheetsAccessError("Sheets API error HTTP 500 while trying to read values on spreadsheet 's1'")
    error.status = 500
    emitted, after = [], []
    with pytest.raises(SheetsAccessError) as caught:
        publish_pages(
            _failing_pages(error),
            RowMapper(["id", "name"]),
            HEADERS,
            lambda record, headers: emitted.append(record.row),
            after_page=lambda page, progress: after.append(page.last_row),
            mapping_process=MappingProcessHooks(),
        )
    assert (str(caught.value), caught.value.status) == (str(error), 500)
    assert (emitted, after) == ([2], [2])


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not picklable")


def test_an_error_that_cannot_be_pickled_keeps_its_type_and_text():
    with pytest.raises(SheetsToKafkaError, match=r"reading the sheet failed: _Unpicklable: socket closed"):
        _publish(_failing_pages(_Unpicklable("socket closed")), RowMapper(["id", "name"]), hooks=MappingProcessHooks())


def _dying_pages():
    yield Page(2, 2, [["1", "a"]])
    os.kill(os.getpid(), signal.SIGKILL)  # runs in the child: the mapping process dies here
    yield Page(3, 3, [["2", "b"]])


def test_a_child_that_dies_fails_the_run_after_the_pages_it_handed_over():
    emitted = []
    with pytest.raises(SheetsToKafkaError, match=r"ended unexpectedly \(killed by signal SIGKILL\)") as caught:
        publish_pages(
            _dying_pages(),
            RowMapper(["id", "name"]),
            HEADERS,
            lambda record, headers: emitted.append(record.row),
            mapping_process=MappingProcessHooks(),
        )
    assert emitted == [2]
    assert "watermark was not moved" in str(caught.value)


def _slow_pages():
    yield Page(2, 2, [["1", "a"]])
    time.sleep(60)  # in the child: a long Sheets request, say, that never looks at the pipe
    yield Page(3, 3, [["2", "b"]])


def test_a_failure_in_the_task_process_stops_and_reaps_the_child():
    children = []

    def emit(record, headers):
        raise SheetsToKafkaError("the broker refused the record")

    hooks = MappingProcessHooks(child_state=os.getpid, adopt_state=children.append)
    started = time.monotonic()
    with pytest.raises(SheetsToKafkaError, match="refused"):
        publish_pages(_slow_pages(), RowMapper(["id", "name"]), HEADERS, emit, mapping_process=hooks)
    assert time.monotonic() - started < 30, "the child was stopped, not waited for"
    assert children, "the child's state arrived with the first page"
    assert not psutil.pid_exists(children[0]), "the child was killed and reaped (no zombie left)"


def test_when_fork_fails_the_pages_are_mapped_in_the_task_process(monkeypatch, caplog):
    # a mock, for a failure this machine cannot produce on demand (no memory or processes left)
    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    here = _publish(_pages(), RowMapper(["id", "name"]))
    fallback = _publish(_pages(), RowMapper(["id", "name"]), hooks=MappingProcessHooks())
    assert fallback[0] == here[0]
    assert _summary(fallback[2]) == _summary(here[2])
    assert "Could not start the mapping process ([Errno 11] Resource temporarily unavailable)" in caplog.text


class _KeywordOnly(Exception):
    def __init__(self, *, detail: str) -> None:
        super().__init__(detail)


def test_an_error_that_pickles_but_cannot_be_rebuilt_keeps_its_type_and_text():
    error = _KeywordOnly(detail="token endpoint said no")
    with pytest.raises(SheetsToKafkaError, match=r"reading the sheet failed: _KeywordOnly: token endpoint said no"):
        _publish(_failing_pages(error), RowMapper(["id", "name"]), hooks=MappingProcessHooks())


def test_the_childs_traceback_travels_with_its_error():
    error = SheetsAccessError("Sheets API error HTTP 502")
    with pytest.raises(SheetsAccessError) as caught:
        _publish(_failing_pages(error), RowMapper(["id", "name"]), hooks=MappingProcessHooks())
    notes = getattr(caught.value, "__notes__", None)
    if hasattr(error, "add_note"):  # Python 3.11+
        assert notes
        assert "Raised in the mapping process" in notes[0]
        assert "_failing_pages" in notes[0]


def _signalled_pages():
    yield Page(2, 2, [["1", "a"]])
    os.kill(os.getpid(), signal.SIGTERM)  # in the child: Airflow's supervisor signals the whole process group
    os.kill(os.getpid(), signal.SIGINT)
    yield Page(3, 3, [["2", "b"]])


def test_signals_for_the_task_leave_the_child_to_the_task_process():
    emitted, _, result = _publish(_signalled_pages(), RowMapper(["id", "name"]), hooks=MappingProcessHooks())
    assert [record[0] for record, _ in emitted] == [2, 3]
    assert result.last_row == 3


@pytest.mark.timeout(60)
def test_the_pipe_carries_messages_larger_than_its_buffers_and_errors_in_order():
    """Pages go with marshal, anything else with pickle; a message outgrows the 64 KB receive buffer
    and the 1 MB pipe; a message cut short by the child's end is an EOFError, not a short read."""
    import threading

    from airflow_provider_sheets.mapping_process import _Receiver, _Sender

    big = ("page", [(row, str(row).encode(), str(row).encode() * 200) for row in range(5_000)], [], 1, 5_000)
    messages = [big, ("page", [], [], None, None), ("error", SheetsAccessError("quota")), ("done",)]
    read_fd, write_fd = os.pipe()

    def write() -> None:
        sender = _Sender(write_fd)
        for message in messages:
            sender.send(message)
        os.write(write_fd, b"\0\0\0\0\0\0\1\0m" + b"x" * 10)  # announces 256 bytes, sends 10
        os.close(write_fd)

    writer = threading.Thread(target=write)
    writer.start()
    receiver = _Receiver(read_fd)
    try:
        got = [receiver.recv() for _ in messages]
        with pytest.raises(EOFError):
            receiver.recv()
    finally:
        writer.join()
        receiver.close()
    assert got[0] == big
    assert len(receiver.buffer) > 3_000_000  # grown once for the big page
    assert got[1] == messages[1]
    assert type(got[2][1]) is SheetsAccessError
    assert str(got[2][1]) == "quota"
    assert got[3] == ("done",)


def test_bulk_malloc_turns_glibc_fastbins_off_and_back_on():
    """Measured in a fresh process: small blocks freed inside the block land in no fastbin
    (mallinfo2's fsmblks), and do again after it; GLIBC_TUNABLES' own mxfast is left alone."""
    import json
    import subprocess
    import sys

    from airflow_provider_sheets.core import _mallopt

    if _mallopt() is None and not os.environ.get("CI"):
        pytest.skip("glibc's mallopt is not available here")
    script = """
import ctypes, json
from airflow_provider_sheets.core import bulk_malloc
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
