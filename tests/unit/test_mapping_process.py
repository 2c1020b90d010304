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
        [Page(2, 4, [["1", "a"], ["", "b"], ["3", "c"]])],
        RowMapper(["id", "name"], "id"),
        hooks=MappingProcessHooks(),
        dead_letter=lambda error, cells: dead.append((error.row, error.reason, cells)),
    )
    assert dead == [(3, "the key column 'id' is empty", ["", "b"])]
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
