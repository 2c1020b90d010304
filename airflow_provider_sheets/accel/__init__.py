"""
Every optimisation, behind one entry point (:func:`publish_pages`, :func:`reader`), each with a
switch and a fallback. Turned off, each leaves the plain path: the reference loop of
:mod:`airflow_provider_sheets.model.loop` in the task process, the Google client as it comes, and
Python's and glibc's memory settings untouched. The parity test runs both ways on the same pages.

* ``forked`` (:mod:`.forked`): the rows are read and mapped in a process forked from the task's,
  so that two cores work; fallback: the plain loop when the platform cannot fork, or a fork fails.
* ``memory`` (:mod:`.memory`): the garbage collector kept off the process's old objects and
  glibc's fastbins off while rows stream through; fallback: nothing changes where it does not apply.
* ``avro`` (:mod:`.avro`): Avro values written with fastavro directly, byte for byte as
  confluent-kafka's ``AvroSerializer`` (checked on the tab's sample rows first);
* ``google_client`` (:mod:`.google_client`): short docstrings and msgspec decoding in the Google
  client; fallback: each step does nothing on a client without what it adjusts.

``SHEETS_TO_KAFKA_PLAIN`` turns them off for a process: a comma-separated list of names, or
``all``. The operator's ``mapping_process`` argument is the ``forked`` switch of one task.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from airflow_provider_sheets.accel import forked, memory
from airflow_provider_sheets.accel.google_client import GoogleClientTuning, forget_connections
from airflow_provider_sheets.hooks.sheets import SheetsConnection, SheetsReader
from airflow_provider_sheets.model.loop import LoopOptions, LoopResult, Sink, run_pages
from airflow_provider_sheets.model.mapping import RowMapper, RowMappingError
from airflow_provider_sheets.model.sheet import Page

#: The environment variable that turns optimisations off (names, comma-separated, or ``all``).
PLAIN_ENV = "SHEETS_TO_KAFKA_PLAIN"
NAMES = ("forked", "memory", "google_client", "avro")


@dataclass(frozen=True)
class Switches:
    """
    Which optimisations are on.

    :param forked: ``None``: where the platform can fork (Linux).
    """

    forked: bool | None = None
    memory: bool = True
    google_client: bool = True
    avro: bool = True

    @classmethod
    def from_env(cls, forked: bool | None = None) -> Switches:
        """The process's switches (:data:`PLAIN_ENV`), with ``forked=False`` honoured over them."""
        off = {name.strip() for name in os.environ.get(PLAIN_ENV, "").split(",") if name.strip()}
        if "all" in off:
            off = set(NAMES)
        return cls(
            forked=False if "forked" in off or forked is False else forked,
            memory="memory" not in off,
            google_client="google_client" not in off,
            avro="avro" not in off,
        )

    @property
    def forks(self) -> bool:
        return self.forked is not False and forked.available()


def reader(
    connection: SheetsConnection,
    value_render_option: str = "FORMATTED_VALUE",
    switches: Switches | None = None,
    typed: bool = False,
) -> SheetsReader:
    """The Sheets reader every caller uses: the connection's, with the Google client tuned (unless switched off)."""
    switches = switches if switches is not None else Switches.from_env()
    return connection.reader(value_render_option, GoogleClientTuning() if switches.google_client else None, typed)


class ReaderInChild:
    """The reader's side of a forked publish: its own connections in the child, its request count back."""

    def __init__(self, sheets_reader: SheetsReader | None) -> None:
        self.reader = sheets_reader

    def after_fork(self) -> None:
        if self.reader is not None:
            self.reader.after_fork()
            forget_connections(self.reader.hook)
            if self.reader.pacer is not None:
                self.reader.pacer.after_fork()

    def child_state(self) -> Any:
        if self.reader is None:
            return None
        pacer = self.reader.pacer
        return {"requests": self.reader.requests, "quota": pacer.times() if pacer is not None else []}

    def adopt_state(self, state: Any) -> None:
        if self.reader is not None:
            self.reader.requests = state["requests"]
            if self.reader.pacer is not None:
                self.reader.pacer.adopt(state["quota"])


def publish_pages(
    pages: Iterable[Page],
    mapper: RowMapper,
    sink: Sink,
    options: LoopOptions,
    switches: Switches | None = None,
    sheets_reader: SheetsReader | None = None,
) -> LoopResult:
    """
    Map every non-empty row of ``pages`` and hand the records to ``sink``: what
    :func:`~airflow_provider_sheets.model.loop.run_pages` does, with the optimisations ``switches``
    turn on (default: the process's, :meth:`Switches.from_env`).

    :param pages: not started yet (with ``forked``, the child iterates them).
    :param sheets_reader: the reader behind ``pages`` (its request count comes back from the child).
    :raises RowMappingError: as ``run_pages``; its ``result`` tells what was handed over.
    """
    switches = switches if switches is not None else Switches.from_env()
    result = LoopResult()
    if switches.memory:
        pages = memory.collect_every(pages)
    with memory.bulk() if switches.memory else nullcontext():
        if switches.forks:
            try:
                if forked.publish_from_child(pages, mapper, sink, options, result, ReaderInChild(sheets_reader)):
                    return result
            except RowMappingError as err:  # raised anew from the child's: what was handed over here
                err.result = result
                raise
        return run_pages(pages, mapper, sink, options, result)
