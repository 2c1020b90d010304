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
import dataclasses
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
from typing import Any, Protocol, cast

from airflow_provider_sheets.errors import SheetsToKafkaError
from airflow_provider_sheets.model.loop import LoopOptions, LoopResult, Sink, hand_over, map_page
from airflow_provider_sheets.model.mapping import Record, RowMapper, RowMappingError
from airflow_provider_sheets.model.sheet import Page

log = logging.getLogger(__name__)

#: Pipe capacity asked for (Linux); a page of 5,000 records is ~2 MB.
PIPE_BYTES = 1 << 20


class ChildSide(Protocol):
    """What the caller lets the child do, and what it hands back to the task process after each page."""

    def after_fork(self) -> None:
        """Runs first in the child (e.g. drop the HTTP connections it shares with the task process)."""

    def child_state(self) -> Any:
        """Runs in the child after each page; the result travels with the page (plain values) …"""

    def adopt_state(self, state: Any) -> None:
        """… and is handed to this in the task process (e.g. the request count)."""


@dataclass
class PageMessage:
    """
    One page, mapped in the child: its records (:class:`Record`'s fields, as plain tuples: marshal
    takes no named tuple), its dead letters ``(row, reason, cells)``, the loop's result so far, the
    mapper's fields when rows wider than the header widened them, the child's state, and whether
    the page is complete (``False``: the rows before a failure).
    """

    records: list[tuple[int, bytes, bytes, int]]
    dead: list[tuple[int, str, list[Any]]]
    result: dict[str, Any]
    fields: list[str] | None
    state: Any
    complete: bool

    def to_wire(self) -> dict[str, Any]:
        return {"kind": "page", **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


@dataclass
class ErrorMessage:
    """The child failed: the error, raised in the task process as it would have been without the child."""

    error: BaseException

    def to_wire(self) -> dict[str, Any]:
        return {"kind": "error", "error": self.error}


@dataclass
class DoneMessage:
    """Every page was handed over."""

    def to_wire(self) -> dict[str, Any]:
        return {"kind": "done"}


Message = PageMessage | ErrorMessage | DoneMessage


def from_wire(wire: dict[str, Any]) -> Message:
    kind = wire.pop("kind")
    if kind == "page":
        return PageMessage(**wire)
    if kind == "error":
        return ErrorMessage(**wire)
    return DoneMessage()


def available() -> bool:
    """Whether pages can be mapped in a forked process here (Linux: ``fork`` is safe for this use)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def publish_from_child(
    pages: Iterable[Page], mapper: RowMapper, sink: Sink, options: LoopOptions, result: LoopResult, side: ChildSide
) -> bool:
    """
    The task-process side of a forked publish: the child maps, this process hands on to ``sink``,
    with the same calls in the same order as :func:`~airflow_provider_sheets.model.loop.run_pages`.

    :return: ``False`` when no child could be started (nothing was read; the caller runs the plain loop).
    """
    try:
        child = _Child(lambda send: _child_main(send, pages, mapper, options, side))
    except OSError as err:  # no process or memory left to fork: one process is slower, not wrong
        log.warning("Could not start the mapping process (%s); reading and mapping in the task process.", err)
        return False
    try:
        while True:
            message = child.recv()
            if isinstance(message, DoneMessage):
                return True
            if isinstance(message, ErrorMessage):
                raise message.error
            _hand_on(message, mapper, sink, result, side)
    finally:
        child.close()


def _hand_on(message: PageMessage, mapper: RowMapper, sink: Sink, result: LoopResult, side: ChildSide) -> None:
    if message.fields is not None:
        mapper.adopt_fields(message.fields)
    if message.state is not None:
        side.adopt_state(message.state)
    dead = [(RowMappingError(row, reason), cells) for row, reason, cells in message.dead]
    # the records are Record's fields as plain tuples, which sinks only unpack: rebuilding a Record
    # of each would cost the task process, the pipeline's bottleneck, a call per row
    hand_over(sink, cast("list[Record]", message.records), dead)
    result.update(message.result)
    if message.complete:
        sink.page_done(result)


def _child_main(
    send: Callable[..., None], pages: Iterable[Page], mapper, options: LoopOptions, side: ChildSide
) -> None:
    side.after_fork()
    loop = _ChildLoop(send, mapper, side)
    try:
        for page in pages:
            loop.page(page, options)
    except Exception as err:  # noqa: BLE001 - raised in the task process instead
        send(ErrorMessage(_portable(err, SheetsToKafkaError)).to_wire(), plain=False)
        return
    send(DoneMessage().to_wire())


class _ChildLoop:
    """The child's state between pages: the loop's result and the mapper's width when last sent."""

    def __init__(self, send: Callable[..., None], mapper: RowMapper, side: ChildSide) -> None:
        self.send = send
        self.mapper = mapper
        self.side = side
        self.result = LoopResult()
        self.width = len(mapper.fields)

    def page(self, page: Page, options: LoopOptions) -> None:
        """Map one page and send it; on a failure, send the rows before it, then re-raise."""
        records: list[Record] = []
        dead: list[tuple[RowMappingError, list[Any]]] = []
        try:
            map_page(page, self.mapper, self.result, records, dead, options.select, options.dead_letters)
        except BaseException:
            self._send(records, dead, complete=False)
            raise
        self._send(records, dead, complete=True)

    def _send(self, records: list[Record], dead: list[tuple[RowMappingError, list[Any]]], complete: bool) -> None:
        fields = None
        if len(self.mapper.fields) != self.width:  # rows wider than the header gave new column_<letter> fields
            fields, self.width = list(self.mapper.fields), len(self.mapper.fields)
        message = PageMessage(
            [record[:] for record in records],
            [(error.row, error.reason, cells) for error, cells in dead],
            self.result.as_dict(),
            fields,
            self.side.child_state(),
            complete,
        )
        # a dead letter's cells are the page's own: marshal would turn a bytearray or any other
        # buffer in them into bytes without a word, pickle keeps their types
        self.send(message.to_wire(), plain=not dead)


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

    def recv(self) -> Message:
        try:
            return from_wire(self.conn.recv())
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
