"""A long run's progress: log lines, lease renewals and at-least-once checkpoints of the watermark."""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_sheets.adapters.lease import WatermarkLease
from airflow_provider_sheets.adapters.publisher import Publisher
from airflow_provider_sheets.adapters.variable_store import WatermarkStore
from airflow_provider_sheets.errors import WatermarkConflictError
from airflow_provider_sheets.model.loop import LoopResult
from airflow_provider_sheets.model.position import PositionOf

#: Seconds between progress lines in the task log (and lease renewals).
PROGRESS_INTERVAL = 10.0
#: Seconds a checkpoint waits for the records produced so far to be acknowledged (the pipeline
#: pauses meanwhile, once per ``checkpoint_interval``); a checkpoint that times out is skipped.
CHECKPOINT_SETTLE = 10.0

#: a logger: the task's (Airflow's structured one) or a module's
Log = Any


class Checkpointer:
    """
    At-least-once progress on a long run: every ``interval`` seconds, once everything produced so
    far is acknowledged (waiting up to :data:`CHECKPOINT_SETTLE` seconds), move the watermark to
    the last row sent. The watermark never names a row that is not acknowledged.
    """

    def __init__(
        self, publisher: Publisher, store: WatermarkStore, position: PositionOf, interval: float, log: Log
    ) -> None:
        self.publisher = publisher
        self.store = store
        self.position = position
        self.interval = interval
        self.log = log
        self.due = time.monotonic() + interval
        #: the last row a checkpoint moved the watermark to
        self.done: int | None = None

    def maybe(self, result: LoopResult, lease: WatermarkLease | None) -> None:
        """Checkpoint if one is due and rows were sent since the last one."""
        if result.last_row is None or time.monotonic() < self.due:
            return
        self.due = time.monotonic() + self.interval
        row = result.last_row
        if self.done is not None and row <= self.done:
            return
        if not self.publisher.settle(CHECKPOINT_SETTLE):
            self.log.info("Checkpoint skipped: rows up to %s are not all acknowledged yet.", row)
            return
        if lease is not None:
            lease.keep()
        current = self.store.get()
        if current is not None and current.last_row >= row:
            return
        self.store.set(self.position.at(row, result.last_value, result.recent))
        self.done = row
        self.log.info("Checkpoint: every row up to %s is acknowledged; watermark moved there.", row)


class Progress:
    """
    After each page: a checkpoint when due, and every :data:`PROGRESS_INTERVAL` seconds a progress
    line and a lease renewal.

    :param publisher: whose produced records are counted (``None``: a dry run).
    """

    def __init__(
        self,
        log: Log,
        publisher: Publisher | None,
        lease: WatermarkLease | None = None,
        checkpointer: Checkpointer | None = None,
        interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self.log = log
        self.publisher = publisher
        self.lease = lease
        self.checkpointer = checkpointer
        self.interval = interval
        self.started = time.monotonic()
        self.due = self.started + interval

    def page_done(self, result: LoopResult) -> None:
        if self.checkpointer is not None:
            self.checkpointer.maybe(result, self.lease)
        now = time.monotonic()
        if now < self.due:
            return
        self.due = now + self.interval
        produced = self.publisher.produced if self.publisher is not None else 0
        elapsed = now - self.started
        self.log.info(
            "Progress: %s pages read (through row %s), %s rows produced, %.0f rows/s.",
            result.pages,
            result.last_page.last_row if result.last_page else None,
            produced,
            produced / elapsed if elapsed > 0 else 0.0,
        )
        if self.lease is not None:
            try:
                self.lease.renew()
            except WatermarkConflictError:
                if self.publisher is not None:  # a zombie attempt: that it was fenced is the better news
                    self.publisher.raise_if_fenced()
                raise
