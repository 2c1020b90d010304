"""
One batch run: plan → describe → reconcile → read → check → publish → commit → :class:`Summary`.

:class:`BatchRun` is the whole data path of
:class:`~airflow_provider_sheets.transfers.sheet_to_kafka.SheetToKafkaOperator`, whose docstring
states the delivery semantics; the operator only turns its Airflow context into a
:class:`RunContext` and its arguments into :class:`~airflow_provider_sheets.settings.BatchSettings`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Any

from airflow_provider_sheets import accel
from airflow_provider_sheets.adapters.fingerprints import load_fingerprints
from airflow_provider_sheets.adapters.kafka_config import client_config
from airflow_provider_sheets.adapters.lease import WatermarkLease
from airflow_provider_sheets.adapters.publisher import Publisher
from airflow_provider_sheets.adapters.state_topic import read_last_value
from airflow_provider_sheets.adapters.variable_store import WatermarkStore
from airflow_provider_sheets.errors import (
    KafkaPublishError,
    ProducerFencedError,
    SheetsConfigError,
    SheetsQuotaError,
    WatermarkError,
    with_fix,
)
from airflow_provider_sheets.hooks.registry import SchemaRegistryHook, TopicSchemas
from airflow_provider_sheets.hooks.sheets import Page, SheetInfo, SheetsReader
from airflow_provider_sheets.model import checks, headers
from airflow_provider_sheets.model.loop import LoopOptions, LoopResult, leading_rows
from airflow_provider_sheets.model.mapping import RowMapper, RowMappingError
from airflow_provider_sheets.model.plan import (
    FULL_REFRESH,
    INCREMENTAL,
    RECONCILE,
    PlanError,
    RunPlan,
    plan_run,
    transactional_id,
)
from airflow_provider_sheets.model.position import (
    RECENT_ROWS,
    PositionFormatError,
    PositionOf,
    Watermark,
    default_watermark_key,
)
from airflow_provider_sheets.model.reconcile import Reconciliation
from airflow_provider_sheets.model.timestamps import RowSelection
from airflow_provider_sheets.pipeline.drift import on_drift
from airflow_provider_sheets.pipeline.encoding import Encoding, SchemaPort
from airflow_provider_sheets.pipeline.interval import select_interval, timestamp_column
from airflow_provider_sheets.pipeline.progress import Checkpointer, Log, Progress
from airflow_provider_sheets.pipeline.sinks import PreviewSink, PublishSink, restamped_warning
from airflow_provider_sheets.pipeline.summary import Summary
from airflow_provider_sheets.pipeline.tab import check_watermark, mapper_for
from airflow_provider_sheets.settings import EXACTLY_ONCE, BatchSettings

RECONCILE_NEEDS_FINGERPRINTS = (
    "reconcile compares the tab with the fingerprints of what was published, kept in fingerprint_topic: set "
    "fingerprint_topic (a compacted topic, e.g. kafka-topics.sh --create --topic <topic>.fingerprints --config "
    "cleanup.policy=compact) on every run of this task; a first reconcile with no fingerprints yet publishes "
    "every row as an insert"
)


@dataclass(frozen=True)
class RunContext:
    """The Airflow task attempt a batch run belongs to."""

    dag_id: str
    run_id: str
    task_id: str
    run_type: str | None = None
    try_number: Any = None
    data_interval: tuple[datetime | None, datetime | None] | None = None

    @property
    def owner(self) -> str:
        return f"{self.dag_id}/{self.run_id}/{self.task_id}"


def kafka_publisher(settings: BatchSettings, transactional_id: str | None) -> Publisher:
    """The run's producer, through the operator's ``kafka`` connection."""
    return Publisher(
        settings.topic,
        kafka_config_id=settings.kafka_config_id,
        flush_timeout=settings.flush_timeout,
        producer_config=settings.producer_config,
        transactional_id=transactional_id,
    )


def variable_lease(key: str, owner: str, settings: BatchSettings) -> WatermarkLease:
    """The lease on the watermark Variable ``key``."""
    return WatermarkLease(
        key, owner=owner, ttl=settings.lease_ttl, settle=settings.lease_settle, wait=settings.lease_wait
    )


def stored_fingerprints(settings: BatchSettings) -> dict[bytes, tuple[int, str]]:
    """What a reconcile run compares with: the fingerprint topic, read to its end."""
    assert settings.fingerprint_topic is not None
    config = client_config(settings.kafka_config_id, settings.producer_config)
    return load_fingerprints(config, settings.fingerprint_topic)


def registry_schemas(settings: BatchSettings) -> TopicSchemas:
    """The topic's value schemas in the registry of the operator's ``schema_registry`` connection."""
    hook = SchemaRegistryHook(settings.schema_registry_conn_id)
    return TopicSchemas(hook.get_conn(), settings.topic, f"connection {settings.schema_registry_conn_id!r}")


def committed_checkpoint(settings: BatchSettings, key: str) -> bytes | None:
    """The exactly-once checkpoint of ``key`` committed in the state topic, or ``None``."""
    config = client_config(settings.kafka_config_id, settings.producer_config)
    return read_last_value(config, settings.state_topic, key.encode())


@dataclass(frozen=True)
class Ports:
    """
    What a batch run talks through: the Sheets reader, and factories of its producer, watermark
    store and lease, and the checkpoint reader. The defaults are the real adapters; the pipeline's
    unit tests pass in-memory fakes.
    """

    reader: SheetsReader
    publisher: Callable[[BatchSettings, str | None], Publisher] = kafka_publisher
    store: Callable[[str], WatermarkStore] = WatermarkStore
    lease: Callable[[str, str, BatchSettings], WatermarkLease] = variable_lease
    checkpoint: Callable[[BatchSettings, str], bytes | None] = committed_checkpoint
    fingerprints: Callable[[BatchSettings], dict[bytes, tuple[int, str]]] = stored_fingerprints
    schemas: Callable[[BatchSettings], SchemaPort] = registry_schemas


@dataclass
class Reading:
    """What the run reads: the pages after ``after_row``, mapped by ``mapper``; ``before``: the watermark then."""

    before: int
    after_row: int
    mapper: RowMapper
    pages: Iterator[Page]


class BatchRun:
    """
    One run of the operator. Nothing with an effect on Kafka or the watermark happens before the
    lease is confirmed (:meth:`start`); in exactly-once mode the transaction opens before the
    watermark is read (:meth:`reconcile`), so an older attempt is fenced before it could commit.
    """

    def __init__(self, settings: BatchSettings, run: RunContext, ports: Ports, log: Log) -> None:
        self.settings = settings
        self.run = run
        self.ports = ports
        self.reader = ports.reader
        self.log = log
        self.started = time.monotonic()
        try:
            self.plan: RunPlan = plan_run(
                run.run_type,
                run.data_interval,
                header_row=settings.header_row,
                dry_run=settings.dry_run,
                full_refresh=settings.full_refresh,
                start_row=settings.start_row,
                reconcile=settings.reconcile,
            )
            if RECONCILE in (self.plan.mode, settings.on_drift) and not settings.fingerprint_topic:
                raise PlanError(RECONCILE_NEEDS_FINGERPRINTS)
            self.encoding = Encoding.of(settings)
            self.encoding.check()
        except PlanError as err:
            raise SheetsConfigError(str(err)) from None
        self.store = ports.store(settings.watermark_key) if settings.watermark_key else None
        #: the rows to publish, when not every one read: a backfill's, or edits and the new rows
        self.selection: RowSelection | checks.EditedAndNew | None = None
        #: an incremental run's fingerprints of the rows before it that stay as they were
        self.kept_recent: dict[int, str] = {}
        #: rows at or before the watermark were edited or cleared: it is written again, with their fingerprints
        self.amended = False
        #: a reconcile run's comparison with the fingerprint topic
        self.reconciliation: Reconciliation | None = None
        self.lease: WatermarkLease | None = None
        self.publisher: Publisher | None = None

    def execute(self) -> Summary:
        """The whole run; the producer is closed and the lease released however it ends."""
        self.log.info("Run plan: %s (delivery %s).", self.plan.reason, self.settings.delivery)
        try:
            info, store = self.start()
            reading = self.read(info, store, self.reconcile(store))
            sink, result = self.publish(info, reading)
            return self.commit(info, store, reading, sink, result)
        except SheetsQuotaError as err:
            fix = "Only acknowledged rows count: the watermark was not moved past them; the next run goes on there."
            raise with_fix(err, fix).with_traceback(err.__traceback__) from None
        except KafkaPublishError as err:
            advice = self.publish_failure_fix()
            if isinstance(err, ProducerFencedError) or advice is None:
                raise
            raise with_fix(err, advice).with_traceback(err.__traceback__) from None
        finally:
            self.close()

    def publish_failure_fix(self) -> str | None:
        """What a failed delivery means for the watermark, once records were produced (``None`` before)."""
        if self.publisher is None or not self.publisher.produced:
            return None
        if self.publisher.transactional_id:
            return (
                "The transaction was aborted, so read_committed consumers see none of this run's records, and the "
                "watermark was not moved: a retry publishes them again."
            )
        return (
            "The watermark was not moved past the rows acknowledged before (at most to this run's last "
            "checkpoint), so a retry re-sends the rows after it with the same keys and headers."
        )

    # -- start: lease, tab, producer ---------------------------------------------------------------

    def start(self) -> tuple[SheetInfo, WatermarkStore]:
        """
        Claim the lease, describe the tab, build the producer and check the topics, then confirm the
        lease: the settle runs while the sheet is described and the topic checked (see
        :mod:`airflow_provider_sheets.adapters.lease`); nothing before the confirm touches Kafka's
        records or the watermark.
        """
        s = self.settings
        self.claim()
        info = self.reader.describe(s.spreadsheet_id, s.sheet_name)
        if self.store is None:
            self.store = self.ports.store(default_watermark_key(s.spreadsheet_id, info.sheet_id, s.topic))
            self.claim()
        if self.plan.publish:
            self.publisher = self.new_publisher(info)
            self.publisher.check_topic()
            for side in (s.dead_letter_topic, s.fingerprint_topic):
                if side:
                    self.publisher.check_topic(side)
        if self.lease is not None:
            self.lease.confirm()
        return info, self.store

    def claim(self) -> None:
        """Claim the lease on the watermark of a run that moves it (confirmed in :meth:`start`)."""
        if self.store is None or not self.plan.moves_watermark:
            return
        self.lease = self.ports.lease(self.store.key, self.run.owner, self.settings)
        self.lease.claim()

    def new_publisher(self, info: SheetInfo) -> Publisher:
        s = self.settings
        tid = None
        if s.delivery == EXACTLY_ONCE:
            tid = transactional_id(self.plan, self.run.dag_id, self.run.task_id, s.spreadsheet_id, info.sheet_id)
        return self.ports.publisher(s, tid)

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
        if self.lease is not None:
            self.lease.release()

    # -- reconcile: the watermark the run starts from ----------------------------------------------

    def reconcile(self, store: WatermarkStore) -> Watermark | None:
        """Open the transaction (exactly-once), then read the watermark; trust a newer committed checkpoint."""
        publisher = self.publisher
        if publisher is not None:
            publisher.begin()
            if publisher.in_transaction:
                self.log.info(
                    "Exactly-once: transaction open with transactional.id %s (an older attempt with it is fenced).",
                    publisher.transactional_id,
                )
                if self.lease is not None:
                    self.lease.keep()  # an attempt that stalled before its transaction opened stops here
        previous = store.get()
        if self.settings.delivery == EXACTLY_ONCE:
            previous = self.checkpointed(store, previous)
        return previous

    def checkpointed(self, store: WatermarkStore, previous: Watermark | None) -> Watermark | None:
        """Exactly-once: the checkpoint committed with the records, when the Variable lags behind it."""
        s = self.settings
        raw = self.ports.checkpoint(s, store.key)
        if raw is None:
            return previous
        try:
            checkpoint = Watermark.from_json(raw.decode("utf-8"))
        except (PositionFormatError, UnicodeDecodeError) as err:
            raise WatermarkError(
                f"the checkpoint of {store.key!r} in {s.state_topic!r} is unusable ({err}). Produce a tombstone for "
                f"that key to the topic to trust the Variable alone."
            ) from None
        if previous is not None and checkpoint.last_row <= previous.last_row:
            return previous
        self.log.warning(
            "The checkpoint in %r says rows up to %s are committed, the Variable %r says %s (the last run "
            "stopped between commit and Variable write); continuing from the checkpoint%s.",
            s.state_topic,
            checkpoint.last_row,
            store.key,
            previous.last_row if previous else None,
            "" if self.plan.moves_watermark else " (this run leaves the Variable to the runs that move it)",
        )
        if self.plan.moves_watermark:  # only under the lease
            store.set(checkpoint)
        return checkpoint

    # -- read and check ----------------------------------------------------------------------------

    def read(self, info: SheetInfo, store: WatermarkStore, previous: Watermark | None) -> Reading:
        """Check the watermark against the tab, read the header and the first page, and check for drift."""
        s, plan = self.settings, self.plan
        before = previous.last_row if previous else s.header_row
        if plan.mode == INCREMENTAL and s.on_drift == RECONCILE and checks.beyond_tab(before, info):
            self.log.warning(
                "Watermark %r %s; on_drift='reconcile': reconciling.", store.key, checks.beyond_tab(before, info)
            )
            self.plan = plan = replace(plan, mode=RECONCILE, after_row=s.header_row)
        check_watermark(store.key, before, s.header_row, info if plan.mode == INCREMENTAL else None)
        after_row = before if plan.after_row is None else plan.after_row
        self.log.info(
            "Reading %r (tab %r, gid %s) after row %s into topic %r; watermark Variable %r is at %s.",
            s.spreadsheet_id,
            info.title,
            info.sheet_id,
            after_row,
            s.topic,
            store.key,
            before,
        )
        if plan.interval is not None:
            return self.read_interval(info, before)
        incremental = plan.mode == INCREMENTAL and previous is not None and previous.last_row > s.header_row
        check_row = previous.last_row if incremental and previous is not None else None
        header, pages = self.reader.read(
            info,
            after_row,
            page_size=s.page_size,
            header_row=s.header_row,
            max_rows=s.max_rows,
            check_row=check_row,
            check_rows=RECENT_ROWS,
        )
        mapper = self.mapper(info, header, previous)
        reading = Reading(before, after_row, mapper, pages)
        if check_row is not None and previous is not None:
            return self.check(info, store, previous, reading)
        return reading

    def mapper(self, info: SheetInfo, header: list[Any], previous: Watermark | None = None) -> RowMapper:
        """
        The tab's mapper; with typed values, each column's number format too: as the watermark
        keeps it while the header is the same (no request), else read once from the first data rows.
        """
        s = self.settings
        mapper = mapper_for(header, s.header_row, info, s.key_column, "header_row")
        known = previous.column_types if previous is not None and previous.fields == mapper.fields else None
        self.encoding.apply(mapper, info, self.reader, known, self.schemas, register=self.plan.publish)
        return mapper

    @cached_property
    def schemas(self) -> SchemaPort | None:
        """The topic's value schemas in the Schema Registry, for a registry format (``None`` for the others)."""
        return self.ports.schemas(self.settings) if self.encoding.registry else None

    def check(self, info: SheetInfo, store: WatermarkStore, previous: Watermark, reading: Reading) -> Reading:
        """
        Compare the tab with the watermark: a column added at the right and rows edited in place are
        benign (the edits are published again, first); a header changed otherwise, or rows deleted or
        inserted above the watermark, are a drift for ``on_drift``.
        """
        s, fix = self.settings, self.drift_fix(store, reading.after_row)
        compare = checks.comparison(previous, reading.mapper, info.title)
        if compare.added:
            self.encoding.as_before(compare.mapper, info, self.schemas)
            self.log.info(
                "Tab %r gained %s at the right since the last run: records carry the new field(s) from now on.",
                info.title,
                ", ".join(repr(name) for name in compare.added),
            )
        if compare.drift is not None:
            return self.republish(info, reading) if on_drift(s.on_drift, compare.drift, fix, self.log) else reading
        now = compare.hashes([*self.reader.checked_rows, *leading_rows(self.reader.first_page, RECENT_ROWS)])
        rows = checks.recent_change(previous.recent(), now, previous.last_row, info.title)
        if rows.drift is not None:
            if on_drift(s.on_drift, rows.drift, fix, self.log):
                return self.republish(info, reading)
            return self.follow(info, reading, previous.last_row + rows.shift) if rows.shift else reading
        # the rows that stay as they were, fingerprinted as the header is now (it may have gained columns)
        current = checks.hashes(reading.mapper, self.reader.checked_rows)
        changed = rows.edited + rows.cleared
        self.kept_recent = {r: current[r] for r in previous.recent() if r not in changed and r in current}
        self.amended = bool(rows.edited or rows.cleared)
        if rows.cleared:
            self.log.warning(
                "Row(s) %s of tab %r were cleared since they were published: nothing to publish for them (a "
                "reconcile run sends their tombstones).",
                ", ".join(map(str, rows.cleared)),
                info.title,
            )
        if not rows.edited:
            return reading
        self.log.warning(
            "Row(s) %s of tab %r were edited since they were published: publishing them again (same keys) "
            "before the new rows.",
            ", ".join(map(str, rows.edited)),
            info.title,
        )
        first = min(rows.edited)
        cells = dict(self.reader.checked_rows)
        edits = Page(first, previous.last_row, [cells.get(row, []) for row in range(first, previous.last_row + 1)])
        self.selection = checks.EditedAndNew(frozenset(rows.edited), previous.last_row)
        return Reading(reading.before, first - 1, reading.mapper, itertools.chain([edits], reading.pages))

    def follow(self, info: SheetInfo, reading: Reading, after_row: int) -> Reading:
        """``on_drift='continue'`` after rows moved: read on after where the last published row is now."""
        s = self.settings
        self.log.warning("Reading on after row %s, where the last published row is now.", after_row)
        header, pages = self.reader.read(
            info, after_row, page_size=s.page_size, header_row=s.header_row, max_rows=s.max_rows
        )
        return Reading(reading.before, after_row, self.mapper(info, header), pages)

    def read_interval(self, info: SheetInfo, before: int) -> Reading:
        """
        A backfill: the header, then the timestamp column alone (as serial numbers) to choose the
        rows in the interval, then the rows of their span only.
        """
        s, interval = self.settings, self.plan.interval
        assert interval is not None
        header, _ = self.reader.read(info, s.header_row, header_row=s.header_row, max_rows=0)
        mapper = self.mapper(info, header)
        column = timestamp_column(info, mapper, s.timestamp_column, s.timestamp_format)
        self.selection = select_interval(self.reader, info, column, s.header_row + 1, interval)
        self.log.info(
            "Backfill: %s rows of tab %r have a %r in the interval (locale %s, time zone %s).",
            len(self.selection.rows),
            info.title,
            column.name,
            info.locale,
            column.zone.key,
        )
        span = self.selection.span
        if span is None:
            return Reading(before, s.header_row, mapper, iter(()))
        first, last = span
        count = last - first + 1 if s.max_rows is None else min(s.max_rows, last - first + 1)
        header, pages = self.reader.read(
            info, first - 1, page_size=s.page_size, header_row=s.header_row, max_rows=count
        )
        again = self.mapper(info, header)
        if again.fields != mapper.fields:
            raise SheetsConfigError(
                f"the header of tab {info.title!r} changed while this backfill read it; nothing was published. "
                f"Run the backfill again."
            )
        return Reading(before, first - 1, again, pages)

    def drift_fix(self, store: WatermarkStore, after_row: int) -> str:
        return (
            f"Nothing was published. To proceed: delete or reset the watermark Variable {store.key!r} (republish "
            f"from a row of your choice with start_row, or everything with full_refresh), or set "
            f"on_drift='continue' (publish the rows after row {after_row} as they are now) or "
            f"on_drift='republish' (publish every row again)."
        )

    def republish(self, info: SheetInfo, reading: Reading) -> Reading:
        """``on_drift='republish'`` (or ``'reconcile'``): read every row again, from the header on."""
        s = self.settings
        mode = RECONCILE if s.on_drift == RECONCILE else FULL_REFRESH
        self.plan = replace(self.plan, mode=mode, after_row=s.header_row)
        header, pages = self.reader.read(
            info, s.header_row, page_size=s.page_size, header_row=s.header_row, max_rows=s.max_rows
        )
        return Reading(reading.before, s.header_row, self.mapper(info, header), pages)

    # -- publish -----------------------------------------------------------------------------------

    def publish(self, info: SheetInfo, reading: Reading) -> tuple[PublishSink | PreviewSink, LoopResult]:
        """Map and produce (or preview) every selected row; checkpoints and progress lines on the way."""
        s, mapper = self.settings, reading.mapper
        progress = Progress(self.log, self.publisher, self.lease, self.checkpointer(info, mapper))
        sink: PublishSink | PreviewSink = PreviewSink(progress)
        if self.publisher is not None:
            if self.plan.mode == RECONCILE:
                self.reconciliation = Reconciliation(self.ports.fingerprints(s))
                self.log.info(
                    "Reconcile: %s fingerprints in %r to compare the tab with.",
                    len(self.reconciliation.known),
                    s.fingerprint_topic,
                )
            headers = self.record_headers(info, mapper, reading.before)
            sink = PublishSink(
                self.publisher, headers, progress, s.dead_letter_topic, s.fingerprint_topic, self.reconciliation
            )
        options = LoopOptions(self.selection, dead_letters=bool(s.dead_letter_topic))
        switches = accel.Switches.from_env(forked=s.mapping_process)
        try:
            result = accel.publish_pages(reading.pages, mapper, sink, options, switches, self.reader)
        except RowMappingError as err:
            raise SheetsConfigError(
                f"row {err.row} cannot be mapped ({err.reason}); fix the row, or set dead_letter_topic to send such "
                f"rows there with the reason in a header."
            ) from None
        return sink, result

    def record_headers(self, info: SheetInfo, mapper: RowMapper, before: int) -> headers.RecordHeaders:
        """The run's record headers; rows up to ``before`` (the watermark then) were published: updates."""
        s, run = self.settings, self.run
        static = headers.provenance(s.spreadsheet_id, info, mapper.header_hash)
        if s.airflow_headers:
            static += headers.airflow_run(run.dag_id, run.run_id, self.plan.run_type, run.task_id, run.try_number)
        return self.encoding.record_headers(s.spreadsheet_id, info, static, mapper.keys_by_row, before)

    def position_of(self, info: SheetInfo, mapper: RowMapper) -> PositionOf:
        extra = {"dag_id": self.run.dag_id, "run_id": self.run.run_id}
        return PositionOf(self.settings.spreadsheet_id, info, self.settings.topic, mapper, extra)

    def checkpointer(self, info: SheetInfo, mapper: RowMapper) -> Checkpointer | None:
        """At-least-once runs that move the watermark checkpoint it on the way."""
        s = self.settings
        if self.publisher is None or self.store is None or not self.plan.moves_watermark or s.delivery == EXACTLY_ONCE:
            return None
        return Checkpointer(self.publisher, self.store, self.position_of(info, mapper), s.checkpoint_interval, self.log)

    # -- commit ------------------------------------------------------------------------------------

    def commit(
        self,
        info: SheetInfo,
        store: WatermarkStore,
        reading: Reading,
        sink: PublishSink | PreviewSink,
        result: LoopResult,
    ) -> Summary:
        """Wait for every acknowledgement (commit the transaction), then move the watermark; summarise."""
        s, plan = self.settings, self.plan
        watermark = None
        row = result.handled_row
        if self.amended:  # edits published again (or rows cleared): the watermark keeps their new fingerprints
            row = max(row or 0, reading.before)
        if plan.moves_watermark and row is not None:
            # past dead letters too (they are in the dead-letter topic); the hash is of the last record's
            # value, or none when the last row handled is a dead letter (no drift check of that row)
            value = result.last_value if row == result.last_row else b""
            recent = {**self.kept_recent, **result.recent}
            watermark = self.position_of(info, reading.mapper).at(row, value, recent)
        published = 0
        if isinstance(sink, PublishSink):
            sink.tombstones()
            if watermark is not None and s.delivery == EXACTLY_ONCE:
                # the checkpoint commits atomically with the rows (KIP-618's idea)
                sink.publisher.send(store.key.encode(), watermark.to_json().encode(), [], topic=s.state_topic)
            sink.publisher.finish()
            published = sink.published
        else:
            for line in sink.lines:
                self.log.info("Dry run preview: %s", line)
        after = self.move_watermark(store, watermark) if watermark is not None else reading.before
        return self.summary(info, store, reading, result, published, after)

    def move_watermark(self, store: WatermarkStore, watermark: Watermark) -> int:
        """Set the watermark, unless (outside a full refresh) it is already beyond; never backwards."""
        if self.lease is not None:
            self.lease.keep()
        current = store.get()
        if (
            self.plan.mode not in (FULL_REFRESH, RECONCILE)
            and current is not None
            and current.last_row > watermark.last_row
        ):
            self.log.warning(
                "Watermark %r is already at %s (beyond this run's last row %s); leaving it there.",
                store.key,
                current.last_row,
                watermark.last_row,
            )
            return current.last_row
        store.set(watermark)
        return watermark.last_row

    def summary(
        self, info: SheetInfo, store: WatermarkStore, reading: Reading, result: LoopResult, published: int, after: int
    ) -> Summary:
        s, plan = self.settings, self.plan
        handled = result.handled_row
        empty = handled - reading.after_row - result.rows_seen - result.dead_lettered if handled is not None else 0
        summary = Summary(
            run_type=plan.run_type,
            mode=plan.mode,
            dry_run=not plan.publish,
            delivery=s.delivery,
            spreadsheet_id=s.spreadsheet_id,
            sheet_name=info.title,
            sheet_id=info.sheet_id,
            topic=s.topic,
            watermark_key=store.key,
            watermark_before=reading.before,
            watermark_after=after,
            rows_published=published,
            rows_selected=result.selected,
            rows_dead_lettered=result.dead_lettered,
            empty_rows_skipped=empty if plan.interval is None else 0,
            first_row=result.first_row,
            last_row=result.last_row,
            pages=result.pages,
            sheets_requests=self.reader.requests,
            duration_s=round(time.monotonic() - self.started, 3),
            interval=plan.interval,
            typed_fallbacks=result.typed_fallbacks,
            rows_restamped=self.publisher.restamped if self.publisher is not None else 0,
            fields=tuple(reading.mapper.fields),
            column_types=tuple(reading.mapper.types.kinds) if reading.mapper.types is not None else (),
            **self.reconciled(),
        )
        self.log_summary(summary)
        warning = restamped_warning(self.publisher) if self.publisher is not None else None
        if warning is not None:
            self.log.warning(warning)
        return summary

    def reconciled(self) -> dict[str, int]:
        """A reconcile run's counts: records that were already right, and tombstones sent."""
        done = self.reconciliation
        if done is None:
            return {}
        return {"rows_unchanged": done.unchanged, "rows_deleted": len(done.gone())}

    def log_summary(self, summary: Summary) -> None:
        self.log.info(
            "%s %s rows (%s..%s) of tab %r to %r in %.2f s (%s rows/s, %s pages, %s Sheets requests); "
            "mode %s, watermark %s -> %s.",
            "Dry run: would publish" if summary.dry_run else "Published",
            summary.rows_selected if summary.dry_run else summary.rows_published,
            summary.first_row,
            summary.last_row,
            summary.sheet_name,
            summary.topic,
            summary.duration_s,
            summary.rows_per_s,
            summary.pages,
            summary.sheets_requests,
            summary.mode,
            summary.watermark_before,
            summary.watermark_after,
        )
