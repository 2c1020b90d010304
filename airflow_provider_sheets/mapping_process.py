"""
Read and map a tab's pages in a forked process, while the task process only produces.

In one process the page reader (HTTP and JSON decoding), the row mapper (JSON encoding) and the
produce loop share one interpreter lock, and producing a record with its provenance headers is the
largest single cost per row. With :func:`publish_from_child`, a child forked from the task process
reads, decodes, selects and maps the rows, and sends each page's records (row number, key and value
bytes) through a pipe; the task process adds the headers, produces, handles dead letters and
checkpoints, so both cores work.

The child is a fork: it inherits the Google client with its credentials (nothing is passed or
written anywhere) and never touches the Kafka producer, the Airflow supervisor connection or the
watermark. It leaves with :func:`os._exit`, so no exit handler of the task process runs twice.
Backpressure is the pipe: the child blocks while the task process has not taken the previous
page, so at most a few pages are in memory. Errors of the child (a Sheets request that failed, a
row that cannot be mapped) are raised in the task process as they would have been without it; if
the child dies, the task fails with an error that says so, and nothing after the last page the
task process received is published.
"""

from __future__ import annotations

import contextlib
import io
import logging
import marshal
import os
import pickle
import signal
import struct
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Pipe capacity asked for (Linux); a page of 5,000 records is ~2 MB.
PIPE_BYTES = 1 << 20


@dataclass
class MappingProcessHooks:
    """
    What the caller of :func:`~airflow_provider_sheets.core.publish_pages` lets the child do.

    :param after_fork: runs first in the child (e.g. drop the HTTP connections it shares with the
        task process).
    :param child_state: runs in the child after each page; its result travels with the page …
    :param adopt_state: … and is handed to this in the task process (e.g. the request count).
    """

    after_fork: Callable[[], None] | None = None
    child_state: Callable[[], Any] | None = None
    adopt_state: Callable[[Any], None] | None = None


def available() -> bool:
    """Whether pages can be mapped in a forked process here (Linux: ``fork`` is safe for this use)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def publish_from_child(pages, mapper, headers, emit, select, dead_letter, after_page, result, hooks) -> None:
    """The task-process side of :func:`~airflow_provider_sheets.core.publish_pages` with a mapping process."""
    from airflow_provider_sheets.core import Page, _publish
    from airflow_provider_sheets.rows import Record, RowMappingError

    try:
        child = _Child(lambda send: _child_main(send, pages, mapper, select, dead_letter is not None, hooks))
    except OSError as err:  # no process or memory left to fork: one process is slower, not wrong
        log.warning("Could not start the mapping process (%s); reading and mapping in the task process.", err)
        _publish(pages, mapper, headers, emit, select, dead_letter, after_page, result)
        return
    new_record = tuple.__new__
    row_is_key = mapper.keys_by_row
    emit_rows = getattr(emit, "rows", None)  # sender()'s: the page's records in one call
    try:
        while True:
            message = child.recv()
            kind = message[0]
            if kind == "page":
                _, records, dead, first, last, counts, fields, state, complete = message
                if fields is not None:
                    mapper.adopt_fields(fields)
                if state is not None and hooks.adopt_state is not None:
                    hooks.adopt_state(state)
                for row, reason, cells in dead:
                    dead_letter(RowMappingError(row, reason), cells)
                if emit_rows is not None:
                    emit_rows(records, headers, row_is_key)
                else:
                    for record in records:
                        emit(
                            new_record(Record, record),
                            [*headers, ("sheets.row", record[1] if row_is_key else str(record[0]).encode())],
                        )
                result.adopt_counts(counts)
                result.last_page = Page(first, last, [])
                if complete and after_page is not None:
                    after_page(result.last_page, result)
            elif kind == "error":
                raise message[1]
            else:  # "done"
                return
    finally:
        child.close()


def _child_main(send, pages: Iterable[Any], mapper, select, dead_letters: bool, hooks: MappingProcessHooks) -> None:
    from airflow_provider_sheets.core import PublishResult, _publish
    from airflow_provider_sheets.errors import SheetsToKafkaError

    if hooks.after_fork is not None:
        hooks.after_fork()
    batch: list[tuple[int, bytes, bytes]] = []
    dead: list[tuple[int, str, list[Any]]] = []
    result = PublishResult()
    width = len(mapper.fields)
    append = batch.append

    def emit(record, _headers) -> None:
        append(record[:])  # a plain tuple: marshal takes no named tuple

    def dead_letter(error, cells) -> None:
        dead.append((error.row, error.reason, cells))

    def flush(page, complete: bool) -> None:
        nonlocal width
        fields = None
        if len(mapper.fields) != width:  # rows wider than the header gave new column_<letter> fields
            fields, width = list(mapper.fields), len(mapper.fields)
        counts = result.counts()
        state = hooks.child_state() if hooks.child_state is not None else None
        first, last = (page.first_row, page.last_row) if page is not None else (None, None)
        # a dead letter's cells are the page's own: marshal would turn a bytearray or any other
        # buffer in them into bytes without a word, pickle keeps their types
        send(("page", batch, dead, first, last, counts, fields, state, complete), plain=not dead)
        batch.clear()
        dead.clear()

    try:
        _publish(
            pages,
            mapper,
            None,
            emit,
            select,
            dead_letter if dead_letters else None,
            lambda page, _result: flush(page, True),
            result,
        )
    except Exception as err:  # noqa: BLE001 - raised in the task process instead
        flush(result.last_page, False)  # the rows of the failing page before the failure
        send(("error", _portable(err, SheetsToKafkaError)))
        return
    send(("done",))


def _portable(err: Exception, fallback: type[Exception]) -> Exception:
    """
    ``err`` if it survives the pipe (pickled and rebuilt), else a ``fallback`` with its type name
    and text; with the child's traceback as a note, since the task process raises it anew.
    """
    import traceback

    trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    try:
        pickle.loads(pickle.dumps(err))
        portable = err
    except Exception:  # noqa: BLE001 - any failure to pickle or rebuild
        portable = fallback(f"reading the sheet failed: {type(err).__name__}: {err}")
    if hasattr(portable, "add_note"):  # Python 3.11+
        portable.add_note(f"Raised in the mapping process:\n{trace}")
    return portable


class _Child:
    """A forked child running ``target(send)``; :meth:`recv` returns what it sent."""

    def __init__(self, target: Callable[[Callable[[Any], None]], None]) -> None:
        read_fd, write_fd = os.pipe()
        _widen_pipe(write_fd)
        parent = os.getpid()
        for stream in (sys.stdout, sys.stderr):  # or the child would write their buffers a second time
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns that a multi-threaded process forks: the child only runs this
                # module's loop, the reader and the mapper, never the producer's or Airflow's locks
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # the child
            code = 1
            try:
                os.close(read_fd)
                _child_signals(parent)
                target(_Sender(write_fd).send)
                code = 0
            except BrokenPipeError:  # the task process stopped listening: nothing to tell
                pass
            except BaseException:  # noqa: BLE001 - the task process only sees the exit status: say why here
                with contextlib.suppress(Exception):
                    import traceback

                    os.write(2, f"The mapping process failed:\n{traceback.format_exc()}".encode(errors="replace"))
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid: int | None = pid
        self.conn = _Receiver(read_fd)

    def recv(self) -> Any:
        from airflow_provider_sheets.errors import SheetsToKafkaError

        try:
            return self.conn.recv()
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):
            status = self._stop()
            raise SheetsToKafkaError(
                f"the process that reads and maps the sheet's rows ended unexpectedly ({status}). Rows "
                f"after the last page it handed over were not published and the watermark was not moved "
                f"past them; the task can be retried, or set mapping_process=False to read in the task "
                f"process itself."
            ) from None

    def _stop(self) -> str:
        """Kill the child if it still runs, reap it, and say how it ended."""
        if self.pid is None:
            return "already reaped"
        pid, self.pid = self.pid, None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # a child that already ended is a zombie: this does nothing
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored)
            return "status unknown"
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            try:
                return f"killed by signal {signal.Signals(number).name}"
            except ValueError:
                return f"killed by signal {number}"
        return f"exit status {os.WEXITSTATUS(status)}"

    def close(self) -> None:
        """Stop the child (if still running) and reap it."""
        self.conn.close()
        self._stop()


#: A message's length and how it is serialised (``marshal`` or ``pickle``), ahead of it.
_HEADER = struct.Struct("!Qc")
_MARSHAL, _PICKLE = b"m", b"p"


class _Sender:
    """
    The child's end of the pipe. A page's records (ints, bytes, strings in lists and tuples) go
    with :mod:`marshal`, which writes and reads them in 60% of :mod:`pickle`'s time (both
    ends are the same interpreter); anything else, such as an error, with :mod:`pickle`.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: Any, plain: bool = True) -> None:
        """
        :param plain: ``message`` holds nothing but exact ``int``, ``bytes``, ``str``, lists and
            tuples and the like, which marshal gives back as they were (it refuses subclasses, but
            writes any buffer, such as a ``bytearray``, as ``bytes``); otherwise it goes with pickle.
        """
        data, kind = None, _MARSHAL
        if plain:
            with contextlib.suppress(ValueError):  # not made of marshal's types only
                data = marshal.dumps(message)
        if data is None:
            data, kind = pickle.dumps(message, pickle.HIGHEST_PROTOCOL), _PICKLE
        self._write(_HEADER.pack(len(data), kind))
        self._write(data)

    def _write(self, data: bytes) -> None:
        view, written = memoryview(data), 0
        while written < len(view):
            written += os.write(self.fd, view[written:])


class _Receiver:
    """
    The task process's end of the pipe. Each message is read into one buffer kept from message to
    message: reading a page of 2 MB into new bytes objects (as ``multiprocessing``'s connections
    do) made the allocator consolidate its free lists at every read, a fifth of the task
    process's time on 1M rows.
    """

    def __init__(self, fd: int) -> None:
        self.file = io.FileIO(fd, "rb")
        self.buffer = bytearray(1 << 16)

    def recv(self) -> Any:
        with memoryview(self.buffer) as view:
            self._fill(view[: _HEADER.size])
            size, kind = _HEADER.unpack_from(view)
        if size > len(self.buffer):
            self.buffer = bytearray(size)
        with memoryview(self.buffer) as view, view[:size] as message:
            self._fill(message)
            return marshal.loads(message) if kind == _MARSHAL else pickle.loads(message)

    def _fill(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            with view[done:] as rest:
                read = self.file.readinto(rest)
            if not read:
                raise EOFError("the mapping process closed the pipe")
            done += read

    def close(self) -> None:
        self.file.close()


def _widen_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (ImportError, OSError):  # a smaller pipe only means more, smaller writes
        pass


def _child_signals(parent: int) -> None:
    """
    Signals meant for the task (Airflow's supervisor sends them to its process group) are left to
    the task process, which stops the child itself; the child dies with the task process.
    """
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the task process dies
    except (OSError, AttributeError):  # without it, the next send to a dead task process ends the child
        pass
    if os.getppid() != parent:  # the task process died before the line above took effect
        os._exit(1)
