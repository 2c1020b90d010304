"""Pages read and mapped in a forked process: the same records, results and errors as in one process.

Every test forks for real: through the one entry point, :func:`accel.publish_pages` with
``Switches(forked=True)``, or :func:`forked.publish_from_child` itself. The pages come from plain
lists or generators, so what is compared is the hand-over, not the reading. What the task process
gets is recorded by :class:`Recorder`, a sink that adds the headers as the publisher's does.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import psutil
import pytest

from airflow_provider_sheets.accel import Switches, publish_pages
from airflow_provider_sheets.accel.forked import (
    DoneMessage,
    ErrorMessage,
    PageMessage,
    _Receiver,
    _Sender,
    available,
    from_wire,
    publish_from_child,
)
from airflow_provider_sheets.errors import SheetsAccessError, SheetsToKafkaError
from airflow_provider_sheets.model.headers import RecordHeaders
from airflow_provider_sheets.model.loop import LoopOptions, LoopResult, PageSpan
from airflow_provider_sheets.model.mapping import RowMapper, RowMappingError
from airflow_provider_sheets.model.sheet import Page
from tests.unit.accel.fakes import CountingReader, PidReader

pytestmark = pytest.mark.skipif(not available(), reason="the mapping process needs fork (Linux)")

HEADERS = [("sheets.spreadsheet_id", b"s1"), ("sheets.sheet_id", b"0")]


class Recorder:
    """
    A sink that keeps, in order, every call the loop made: dead letters, each record with the
    headers the publisher gives it (:meth:`RecordHeaders.messages`), and each ``page_done``.
    """

    def __init__(self, keys_by_row: bool, fail: BaseException | None = None) -> None:
        self.headers = RecordHeaders(HEADERS, keys_by_row)
        self.fail = fail
        self.events: list[tuple] = []

    def dead_letter(self, error, cells) -> None:
        self.events.append(("dead", error.row, error.reason, cells))

    def records(self, records) -> None:
        if self.fail is not None:
            raise self.fail
        messages = self.headers.messages(records)
        for record, (key, value, headers, _) in zip(records, messages, strict=True):
            assert (key, value) == (record[1], record[2])
            self.events.append(("record", tuple(record), headers))

    def page_done(self, result) -> None:
        self.events.append(("page_done", result.last_page.first_row, result.last_page.last_row, result.last_row))

    @property
    def emitted(self) -> list[tuple]:
        """``(record, headers)`` of each record, in order."""
        return [event[1:] for event in self.events if event[0] == "record"]

    @property
    def rows(self) -> list[int]:
        return [record[0] for record, _ in self.emitted]

    @property
    def after(self) -> list[tuple]:
        """``(first_row, last_row, result.last_row)`` after each complete page."""
        return [event[1:] for event in self.events if event[0] == "page_done"]

    @property
    def dead(self) -> list[tuple]:
        return [event[1:] for event in self.events if event[0] == "dead"]


class _PidSide:
    """A ``ChildSide`` of :mod:`.accel.forked`: the child's pid, and whether it was prepared, travel back."""

    def __init__(self) -> None:
        self.prepared = False
        self.states: list = []

    def after_fork(self) -> None:
        self.prepared = True

    def child_state(self):
        return (os.getpid(), self.prepared)

    def adopt_state(self, state) -> None:
        self.states.append(state)


def _pages() -> list[Page]:
    return [
        Page(2, 4, [["1", "a"], [], ["3", "c", "wider"]]),
        Page(5, 6, [["5", "e"], ["6", "f"]]),
        Page(7, 9, []),
        Page(10, 10, [["10", 1.5]]),
    ]


def _publish(pages, mapper, *, forked=False, sink=None, **options):
    """Publish through the entry point; with ``forked``, check the pages were mapped in a child."""
    sink = sink if sink is not None else Recorder(mapper.keys_by_row)
    reader = PidReader()
    result = publish_pages(pages, mapper, sink, LoopOptions(**options), Switches(forked=forked), sheets_reader=reader)
    if forked:
        assert reader.requests not in (0, os.getpid()), "the pages were read and mapped in a forked child"
    else:
        assert reader.requests == 0, "no child"
    return sink, result


@pytest.mark.parametrize("key_column", [None, "id"])
def test_the_child_emits_what_one_process_emits(key_column):
    here, here_result = _publish(_pages(), RowMapper(["id", "name"], key_column))
    mapper = RowMapper(["id", "name"], key_column)
    there, there_result = _publish(_pages(), mapper, forked=True)
    assert there.emitted == here.emitted, "the same records with the same headers, in the same order"
    assert there.after == here.after, "page_done runs after each page, with the result so far"
    assert there.events == here.events, "the same calls, interleaved the same way"
    assert there_result.as_dict() == here_result.as_dict()
    assert (len(there.emitted), there_result.pages) == (5, 4)
    assert mapper.fields == ["id", "name", "column_C"], "fields the child widened reach the task process's mapper"
    assert there_result.last_page == PageSpan(10, 10, 1)
    assert there.after == [(2, 4, 4), (5, 6, 6), (7, 9, 6), (10, 10, 10)]
    first_record, first_headers = there.emitted[0]
    assert first_record[0] == 2
    assert first_headers == [*HEADERS, ("sheets.row", b"2"), ("sheets.change", b"insert")], (
        "sheets.row is the row number, keyed or not"
    )


def test_select_runs_in_the_child_and_state_travels_back():
    side = _PidSide()
    sink, result = Recorder(True), LoopResult()
    options = LoopOptions(select=lambda cells, row: row % 2 == 0 and cells[0] != "6")
    assert publish_from_child(_pages(), RowMapper(["id", "name"]), sink, options, result, side), "the child ran"
    assert sink.rows == [2, 4, 10]
    assert (result.rows_seen, result.selected) == (5, 3)
    assert len(side.states) == 4, "each page carries the child's state"
    assert os.getpid() not in [pid for pid, _ in side.states], "the state is the child's"
    assert all(prepared for _, prepared in side.states), "after_fork ran in the child first"
    assert not side.prepared, "after_fork ran in the child only"


def test_the_childs_request_count_is_adopted_by_the_task_process():
    reader = CountingReader()

    def read(count):
        for row in range(2, 2 + count):
            reader.requests += 1  # a Sheets request, counted by the process that reads
            yield Page(row, row, [[str(row), str(os.getpid())]])

    sink = Recorder(True)
    publish_pages(read(3), RowMapper(["id", "pid"]), sink, LoopOptions(), Switches(forked=True), sheets_reader=reader)
    readers = {json.loads(record[2])["pid"] for record, _ in sink.emitted}
    assert readers
    assert str(os.getpid()) not in readers, "the pages were read in the child"
    assert reader.requests == 3, "the child's request count reaches the task process's reader"


def test_a_row_that_cannot_be_mapped_fails_in_the_task_process_after_the_rows_before_it():
    def pages():
        return [Page(2, 3, [["1", "a"], ["2", "b"]]), Page(4, 6, [["4", "d"], ["", "e"], ["6", "f"]])]

    sink = Recorder(False)
    with pytest.raises(RowMappingError) as caught:
        _publish(pages(), RowMapper(["id", "name"], "id"), forked=True, sink=sink)
    assert (caught.value.row, caught.value.reason) == (5, "the key column 'id' is empty")
    assert sink.rows == [2, 3, 4], "the rows before the bad one, also those of its own page"
    assert sink.after == [(2, 3, 3)], "the failing page is not done"
    assert (caught.value.result.last_row, caught.value.result.rows_seen) == (4, 3)

    here = Recorder(False)
    with pytest.raises(RowMappingError) as in_process:
        _publish(pages(), RowMapper(["id", "name"], "id"), sink=here)
    assert here.events == sink.events
    assert in_process.value.result.as_dict() == caught.value.result.as_dict()


def test_dead_letters_are_handled_in_the_task_process_with_their_cells():
    sink, result = _publish(
        [Page(2, 4, [["1", "a"], ["", bytearray(b"b")], ["3", "c"]])],
        RowMapper(["id", "name"], "id"),
        forked=True,
        dead_letters=True,
    )
    assert sink.dead == [(3, "the key column 'id' is empty", ["", bytearray(b"b")])]
    assert type(sink.dead[0][2][1]) is bytearray, "a dead letter's cells keep their types through the pipe"
    assert sink.rows == [2, 4]
    assert result.dead_lettered == 1


def _failing_pages(error: BaseException):
    yield Page(2, 2, [["1", "a"]])
    raise error


def test_a_reading_error_in_the_child_is_raised_as_is():
    error = SheetsAccessError("Sheets API error HTTP 500 while trying to read values on spreadsheet 's1'")
    error.status = 500
    sink = Recorder(True)
    with pytest.raises(SheetsAccessError) as caught:
        _publish(_failing_pages(error), RowMapper(["id", "name"]), forked=True, sink=sink)
    assert (str(caught.value), caught.value.status) == (str(error), 500)
    assert (sink.rows, [last for _, last, _ in sink.after]) == ([2], [2])


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not picklable")


def test_an_error_that_cannot_be_pickled_keeps_its_type_and_text():
    with pytest.raises(SheetsToKafkaError, match=r"reading the sheet failed: _Unpicklable: socket closed"):
        _publish(_failing_pages(_Unpicklable("socket closed")), RowMapper(["id", "name"]), forked=True)


def _dying_pages():
    yield Page(2, 2, [["1", "a"]])
    os.kill(os.getpid(), signal.SIGKILL)  # runs in the child: the mapping process dies here
    yield Page(3, 3, [["2", "b"]])


def test_a_child_that_dies_fails_the_run_after_the_pages_it_handed_over():
    sink = Recorder(True)
    with pytest.raises(SheetsToKafkaError, match=r"ended unexpectedly \(killed by signal SIGKILL\)") as caught:
        _publish(_dying_pages(), RowMapper(["id", "name"]), forked=True, sink=sink)
    assert sink.rows == [2]
    assert "watermark was not moved" in str(caught.value)


def _slow_pages():
    yield Page(2, 2, [["1", "a"]])
    time.sleep(60)  # in the child: a long Sheets request, say, that never looks at the pipe
    yield Page(3, 3, [["2", "b"]])


def test_a_failure_in_the_task_process_stops_and_reaps_the_child():
    reader = PidReader()
    sink = Recorder(True, fail=SheetsToKafkaError("the broker refused the record"))
    started = time.monotonic()
    with pytest.raises(SheetsToKafkaError, match="refused"):
        publish_pages(
            _slow_pages(), RowMapper(["id", "name"]), sink, LoopOptions(), Switches(forked=True), sheets_reader=reader
        )
    assert time.monotonic() - started < 30, "the child was stopped, not waited for"
    child = reader.requests
    assert child not in (0, os.getpid()), "the child's state arrived with the first page"
    assert not psutil.pid_exists(child), "the child was killed and reaped (no zombie left)"


def test_when_fork_fails_the_pages_are_mapped_in_the_task_process(monkeypatch, caplog):
    # a stand-in, for a failure this machine cannot produce on demand (no memory or processes left)
    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    untouched = Recorder(True)
    started = publish_from_child(
        _pages(), RowMapper(["id", "name"]), untouched, LoopOptions(), LoopResult(), _PidSide()
    )
    assert started is False
    assert untouched.events == [], "nothing was read or handed over: the caller runs the plain loop"

    here, here_result = _publish(_pages(), RowMapper(["id", "name"]))
    fallback, reader = Recorder(True), PidReader()
    switches = Switches(forked=True)
    fallback_result = publish_pages(
        _pages(), RowMapper(["id", "name"]), fallback, LoopOptions(), switches, sheets_reader=reader
    )
    assert fallback.events == here.events
    assert fallback_result.as_dict() == here_result.as_dict()
    assert reader.requests == 0, "mapped in the task process"
    assert "Could not start the mapping process ([Errno 11] Resource temporarily unavailable)" in caplog.text


class _KeywordOnly(Exception):
    def __init__(self, *, detail: str) -> None:
        super().__init__(detail)


def test_an_error_that_pickles_but_cannot_be_rebuilt_keeps_its_type_and_text():
    error = _KeywordOnly(detail="token endpoint said no")
    with pytest.raises(SheetsToKafkaError, match=r"reading the sheet failed: _KeywordOnly: token endpoint said no"):
        _publish(_failing_pages(error), RowMapper(["id", "name"]), forked=True)


def test_the_childs_traceback_travels_with_its_error():
    error = SheetsAccessError("Sheets API error HTTP 502")
    with pytest.raises(SheetsAccessError) as caught:
        _publish(_failing_pages(error), RowMapper(["id", "name"]), forked=True)
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
    sink, result = _publish(_signalled_pages(), RowMapper(["id", "name"]), forked=True)
    assert sink.rows == [2, 3]
    assert result.last_row == 3


@pytest.mark.timeout(60)
def test_the_pipe_carries_messages_larger_than_its_buffers_and_errors_in_order():
    """Pages go with marshal, anything else with pickle; a message outgrows the 64 KB receive buffer
    and the 1 MB pipe; a message cut short by the child's end is an EOFError, not a short read."""
    records = [(row, str(row).encode(), str(row).encode() * 200) for row in range(5_000)]
    big = PageMessage(records, [], {"pages": 1, "last_row": 5_000}, None, None, True)
    small = PageMessage([], [], {"pages": None}, None, None, False)
    error = ErrorMessage(SheetsAccessError("quota"))
    messages = [big.to_wire(), small.to_wire(), error.to_wire(), DoneMessage().to_wire()]
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
    assert got[0] == messages[0]
    assert len(receiver.buffer) > 3_000_000  # grown once for the big page
    assert got[1] == messages[1]
    typed = [from_wire(message) for message in got]
    assert typed[0] == big
    assert typed[1] == small
    assert type(typed[2]) is ErrorMessage
    assert type(typed[2].error) is SheetsAccessError
    assert str(typed[2].error) == "quota"
    assert typed[3] == DoneMessage()


def test_pages_go_with_marshal_and_anything_else_with_pickle():
    """The one-byte kind after each message's length: ``m`` (marshal) for plain pages, ``p`` (pickle) otherwise."""
    page = PageMessage([(2, b"2", b"{}")], [], {"pages": 1}, None, None, True).to_wire()
    sent = [
        (page, True, b"m"),
        (page, False, b"p"),  # what the child does for a page with dead letters (their cells keep their types)
        (ErrorMessage(SheetsAccessError("quota")).to_wire(), True, b"p"),  # marshal refuses an exception
        (DoneMessage().to_wire(), True, b"m"),
    ]
    for message, plain, kind in sent:
        read_fd, write_fd = os.pipe()
        receiver = _Receiver(read_fd)
        try:
            _Sender(write_fd).send(message, plain=plain)
            os.close(write_fd)
            header = os.read(read_fd, 9)
            assert header[8:9] == kind, (message["kind"], plain)
        finally:
            receiver.close()
