"""SheetToKafkaOperator: publish the rows of a Google Sheet tab that arrived after the watermark."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_sheets.core import (
    PublishResult,
    mapper_for,
    provenance_headers,
    publish_pages,
    row_drift,
    sender,
    watermark_for,
)
from airflow_provider_sheets.errors import DriftError, SheetsConfigError, WatermarkError
from airflow_provider_sheets.hooks.sheets import DEFAULT_PAGE_SIZE, Page, SheetInfo, SheetsConnection, SheetsReader
from airflow_provider_sheets.kafka import Publisher, client_config, read_last_value
from airflow_provider_sheets.lease import WatermarkLease
from airflow_provider_sheets.mapping_process import MappingProcessHooks
from airflow_provider_sheets.mapping_process import available as mapping_process_available
from airflow_provider_sheets.rows import Record, RowMapper, RowMappingError
from airflow_provider_sheets.runmode import FULL_REFRESH, INCREMENTAL, RunPlan, plan_run, transactional_id
from airflow_provider_sheets.timestamps import FORMS_TIMESTAMP_FORMAT, in_interval, parse_timestamp, sheet_zone
from airflow_provider_sheets.watermark import Watermark, WatermarkStore, default_watermark_key

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Seconds between progress lines in the task log (and lease renewals).
PROGRESS_INTERVAL = 10.0
#: Seconds a checkpoint waits for the records produced so far to be acknowledged (the pipeline
#: pauses meanwhile, once per ``checkpoint_interval``); a checkpoint that times out is skipped.
CHECKPOINT_SETTLE = 10.0

AT_LEAST_ONCE = "at_least_once"
EXACTLY_ONCE = "exactly_once"
DRIFT_POLICIES = ("fail", "continue", "republish")

#: Records shown in the task log by a dry run.
DRY_RUN_PREVIEW = 5

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "", "none")


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SheetsConfigError(f"{name} must be true or false, got {value!r}")


def _as_optional_int(name: str, value: Any, minimum: int) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    return _as_int(name, value, minimum)


def _as_int(name: str, value: Any, minimum: int) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and value != number:
            raise ValueError
    except (TypeError, ValueError):
        raise SheetsConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise SheetsConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


class SheetToKafkaOperator(BaseOperator):
    """
    Publish the rows of a Google Sheets tab that come after the watermark to a Kafka topic.

    Row 1 (``header_row``) names the fields: each record's value is a UTF-8 JSON object
    ``{header: cell}`` (ragged rows padded with ``null``), its key is the sheet row number as a
    decimal string (or the ``key_column`` cell), and its headers carry the provenance
    (``sheets.spreadsheet_id``, ``sheets.sheet_name``, ``sheets.sheet_id``, ``sheets.row``,
    ``sheets.header_hash``, ``airflow.dag_id``, ``airflow.run_id``, ``airflow.run_type``,
    ``airflow.task_id``, ``airflow.try_number``; see ``airflow_headers``). Fully empty rows are
    skipped and counted.

    Delivery semantics, by ``delivery``:

    * ``at_least_once`` (default): an idempotent producer with ``acks=all``. The watermark Variable
      only ever names acknowledged rows: it is written (and read back) once every record of the run
      is acknowledged, and on long runs every ``checkpoint_interval`` seconds up to the last page
      acknowledged with all pages before it. On any failure the task fails and the producer's queue
      is purged, so nothing of the failed attempt is delivered later; **a retry** re-reads from the
      watermark and re-sends only the rows after it, with the same keys and ``sheets.row`` headers,
      so consumers can de-duplicate on ``(sheets.spreadsheet_id, sheets.sheet_id, sheets.row)``.
    * ``exactly_once``: the run's records and a checkpoint of the watermark (in the compacted
      ``state_topic``) are written in one Kafka transaction, with a ``transactional.id`` stable per
      (dag, task, spreadsheet, tab), and per data interval for backfill runs, so a new attempt
      fences a zombie one: the transaction opens before anything is read, and an older attempt
      still running is refused by Kafka at its next record and fails with
      :class:`~airflow_provider_sheets.errors.ProducerFencedError` (one that stalled before opening
      its transaction finds its watermark lease taken over and stops). On start the Variable is
      reconciled with the committed checkpoint, so a crash between commit and Variable write causes
      no duplicates. **A retry** re-sends nothing that was committed; consumers read with
      ``isolation.level=read_committed``.

    What a run publishes depends on how it started (see :mod:`airflow_provider_sheets.runmode`):
    scheduled and plain manual runs publish the rows after the watermark; ``dry_run`` publishes
    nothing; ``full_refresh`` and ``start_row`` republish; backfill runs publish the rows whose
    ``timestamp_column`` falls in their data interval and leave the live watermark alone. A run that
    moves the watermark holds a lease on it (see :mod:`airflow_provider_sheets.lease`), so
    overlapping runs never publish the same rows, and the watermark never moves backwards.

    :param spreadsheet_id: the spreadsheet id (from its URL). Templated.
    :param topic: the destination topic; it must exist. Templated.
    :param sheet_name: the tab title; default: the first tab. Templated.
    :param gcp_conn_id: the ``google_cloud_platform`` connection. Templated.
    :param kafka_config_id: the ``kafka`` connection (librdkafka config in its extra). Templated.
    :param api_endpoint: a custom Sheets API endpoint (private endpoint, or the local Sheets server
        of the demo). Templated; an empty string means Google's.
    :param page_size: rows per Sheets request.
    :param key_column: a header whose cell becomes the record key; default: the row number.
        Templated.
    :param watermark_key: the Variable that holds the watermark; default
        ``sheets_to_kafka.<spreadsheet_id>.gid<tab id>.<topic>``. Templated.
    :param header_row: the row holding the field names.
    :param dry_run: read and map, log a preview, publish nothing, leave the watermark. Templated.
    :param full_refresh: republish every row from the first data row; the watermark is set to the
        last row at the end. Templated.
    :param start_row: publish from this row on; the watermark never moves backwards. Templated.
    :param max_rows: publish at most this many rows in one run (the next run continues). Templated.
    :param timestamp_column: the header whose cells place a row in a backfill's data interval.
    :param timestamp_format: ``strptime`` format of those cells, read in the spreadsheet's time zone
        (serial numbers and ISO 8601 are accepted too).
    :param value_render_option: ``FORMATTED_VALUE`` (cells as the sheet shows them; default),
        ``UNFORMATTED_VALUE`` or ``FORMULA``.
    :param impersonation_chain: service account(s) to impersonate for the Sheets calls.
    :param producer_config: librdkafka settings applied over the connection's (idempotence and
        ``acks=all`` cannot be weakened).
    :param flush_timeout: seconds to wait for the last acknowledgements before failing; also bounds
        ``message.timeout.ms``.
    :param lease_ttl: seconds a watermark lease lasts without renewal (a dead run blocks others at
        most this long).
    :param lease_settle: seconds between claiming the lease and confirming the claim, at the least.
        The run describes the sheet (when ``watermark_key`` is given; the default key needs the tab's
        id first), builds the producer and checks the topics meanwhile, so the settle costs the run
        only what those leave of it; the watermark is read and records produced only after the
        confirm. Lowering it narrows the guard against overlapping runs (see
        :mod:`airflow_provider_sheets.lease`).
    :param lease_wait: seconds to wait for another run's lease before failing with
        ``WatermarkConflictError``, counted from the first claim.
    :param delivery: ``at_least_once`` or ``exactly_once`` (see above).
    :param state_topic: the compacted topic of ``exactly_once`` checkpoints; default ``<topic>.state``.
        Templated.
    :param on_drift: what to do when rows above the watermark or the header changed: ``fail``
        (default; nothing is published), ``continue`` (publish the rows after the watermark as they
        are now) or ``republish`` (publish every row again).
    :param dead_letter_topic: where rows that cannot be mapped go (with the reason in the
        ``sheets.error`` header); without it such a row fails the run. Templated.
    :param checkpoint_interval: seconds between at-least-once watermark checkpoints on long runs.
    :param airflow_headers: add the ``airflow.*`` headers (the run that published the record) to
        every record; ``False`` keeps the five ``sheets.*`` headers, those consumers de-duplicate
        on, and makes each record ~150 bytes smaller (with typical DAG and run ids) and publishing faster.
    :param mapping_process: read and map the rows in a process forked from the task's (``None``,
        the default: on Linux), so that reading, mapping and producing use two cores; ``False``
        keeps everything in the task process.
    """

    template_fields: Sequence[str] = (
        "spreadsheet_id",
        "sheet_name",
        "topic",
        "gcp_conn_id",
        "kafka_config_id",
        "api_endpoint",
        "key_column",
        "watermark_key",
        "dry_run",
        "full_refresh",
        "start_row",
        "max_rows",
        "dead_letter_topic",
        "state_topic",
    )
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        spreadsheet_id: str,
        topic: str,
        sheet_name: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        kafka_config_id: str = "kafka_default",
        api_endpoint: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        key_column: str | None = None,
        watermark_key: str | None = None,
        header_row: int = 1,
        dry_run: bool | str = False,
        full_refresh: bool | str = False,
        start_row: int | str | None = None,
        max_rows: int | str | None = None,
        timestamp_column: str = "Timestamp",
        timestamp_format: str = FORMS_TIMESTAMP_FORMAT,
        value_render_option: str = "FORMATTED_VALUE",
        impersonation_chain: str | Sequence[str] | None = None,
        producer_config: dict[str, Any] | None = None,
        flush_timeout: float = 300.0,
        lease_ttl: float = 600.0,
        lease_settle: float = 0.5,
        lease_wait: float = 120.0,
        delivery: str = AT_LEAST_ONCE,
        state_topic: str | None = None,
        on_drift: str = "fail",
        dead_letter_topic: str | None = None,
        checkpoint_interval: float = 60.0,
        mapping_process: bool | None = None,
        airflow_headers: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spreadsheet_id = spreadsheet_id
        self.topic = topic
        self.sheet_name = sheet_name
        self.gcp_conn_id = gcp_conn_id
        self.kafka_config_id = kafka_config_id
        self.api_endpoint = api_endpoint
        # templated or from Params: any type until _validate() coerces them
        self.page_size: Any = page_size
        self.key_column = key_column
        self.watermark_key = watermark_key
        self.header_row: Any = header_row
        # shadows BaseOperator.dry_run(), which nothing in Airflow 3 calls: the argument name is public
        self.dry_run: Any = dry_run
        self.full_refresh: Any = full_refresh
        self.start_row: Any = start_row
        self.max_rows: Any = max_rows
        self.timestamp_column = timestamp_column
        self.timestamp_format = timestamp_format
        self.value_render_option = value_render_option
        self.impersonation_chain = impersonation_chain
        self.producer_config = producer_config
        self.flush_timeout = flush_timeout
        self.lease_ttl = lease_ttl
        self.lease_settle = lease_settle
        self.lease_wait = lease_wait
        self.delivery = delivery
        self.state_topic = state_topic
        self.on_drift = on_drift
        self.dead_letter_topic = dead_letter_topic
        self.checkpoint_interval = checkpoint_interval
        self.mapping_process = mapping_process
        self.airflow_headers = airflow_headers

    @cached_property
    def reader(self) -> SheetsReader:
        return SheetsConnection(self.gcp_conn_id, self.api_endpoint, self.impersonation_chain).reader(
            self.value_render_option
        )

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(
            self.topic,
            kafka_config_id=self.kafka_config_id,
            flush_timeout=self.flush_timeout,
            producer_config=self.producer_config,
            transactional_id=self._transactional_id,
        )

    _transactional_id: str | None = None

    def _validate(self) -> None:
        """Check the rendered arguments (templates and Params may give strings or ``None``)."""
        for name in ("spreadsheet_id", "topic", "gcp_conn_id", "kafka_config_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise SheetsConfigError(f"{name} must be a non-empty string after rendering, got {value!r}")
        self.page_size = _as_int("page_size", self.page_size, minimum=1)
        self.header_row = _as_int("header_row", self.header_row, minimum=1)
        self.start_row = _as_optional_int("start_row", self.start_row, minimum=1)
        self.max_rows = _as_optional_int("max_rows", self.max_rows, minimum=1)
        self.dry_run = _as_bool("dry_run", self.dry_run)
        self.full_refresh = _as_bool("full_refresh", self.full_refresh)
        self.sheet_name = self.sheet_name or None
        self.key_column = self.key_column or None
        self.dead_letter_topic = self.dead_letter_topic or None
        if self.delivery not in (AT_LEAST_ONCE, EXACTLY_ONCE):
            raise SheetsConfigError(f"delivery must be {AT_LEAST_ONCE!r} or {EXACTLY_ONCE!r}, got {self.delivery!r}")
        if self.on_drift not in DRIFT_POLICIES:
            raise SheetsConfigError(f"on_drift must be one of {', '.join(DRIFT_POLICIES)}, got {self.on_drift!r}")

    def execute(self, context: Context) -> dict[str, Any]:
        self._validate()
        started = time.monotonic()
        dag_run = context.get("dag_run")
        plan = plan_run(
            getattr(dag_run, "run_type", None),
            (context.get("data_interval_start"), context.get("data_interval_end")),
            header_row=self.header_row,
            dry_run=self.dry_run,
            full_refresh=self.full_refresh,
            start_row=self.start_row,
        )
        self.log.info("Run plan: %s (delivery %s).", plan.reason, self.delivery)
        ti = context.get("ti")
        dag_id = str(getattr(ti, "dag_id", None) or self.dag_id)
        run_id = str(context.get("run_id") or getattr(ti, "run_id", "") or "")
        # the lease's settle runs while the sheet is described and the topic checked (see
        # airflow_provider_sheets.lease): claimed as soon as its key is known, confirmed before the
        # watermark is read or anything produced; nothing before the confirm touches either
        store = WatermarkStore(self.watermark_key) if self.watermark_key else None
        lease = self._claim(plan, store, dag_id, run_id)
        try:
            info = self.reader.describe(self.spreadsheet_id, self.sheet_name)
            if store is None:
                store = WatermarkStore(default_watermark_key(self.spreadsheet_id, info.sheet_id, self.topic))
                lease = self._claim(plan, store, dag_id, run_id)
            if self.delivery == EXACTLY_ONCE:
                self._transactional_id = transactional_id(
                    plan, dag_id, self.task_id, self.spreadsheet_id, info.sheet_id
                )
            if plan.publish:
                self.publisher.check_topic()
                if self.dead_letter_topic:
                    self.publisher.check_topic(self.dead_letter_topic)
            if lease is not None:
                lease.confirm()
            return self._run(context, plan, info, store, lease, dag_id, run_id, started)
        finally:
            if "publisher" in self.__dict__:
                self.publisher.close()
            if lease is not None:
                lease.release()

    def _claim(self, plan: RunPlan, store: WatermarkStore | None, dag_id: str, run_id: str) -> WatermarkLease | None:
        """Claim the lease on the watermark of a run that moves it (the claim is confirmed later)."""
        if store is None or not plan.moves_watermark:
            return None
        lease = WatermarkLease(
            store.key,
            owner=f"{dag_id}/{run_id}/{self.task_id}",
            ttl=self.lease_ttl,
            settle=self.lease_settle,
            wait=self.lease_wait,
        )
        lease.claim()
        return lease

    def _run(
        self,
        context: Context,
        plan: RunPlan,
        info: SheetInfo,
        store: WatermarkStore,
        lease: WatermarkLease | None,
        dag_id: str,
        run_id: str,
        started: float,
    ) -> dict[str, Any]:
        publisher = self.publisher
        if plan.publish:
            # exactly-once: the transaction opens first, so an older attempt is fenced before the
            # checkpoint and the sheet are read (it cannot commit after our reconcile)
            publisher.begin()
            if publisher.in_transaction:
                self.log.info(
                    "Exactly-once: transaction open with transactional.id %s (an older attempt with it is fenced).",
                    self._transactional_id,
                )
                if lease is not None:
                    lease.renew()  # an attempt that stalled before its transaction opened stops here
        previous = store.get()
        if self.delivery == EXACTLY_ONCE:
            previous = self._reconcile(store, previous)
        watermark_before = previous.last_row if previous else self.header_row
        if watermark_before < self.header_row:
            raise WatermarkError(
                f"watermark {store.key!r} says last_row={watermark_before}, above the header row "
                f"{self.header_row}; set it to {self.header_row} or more."
            )
        if plan.mode == INCREMENTAL and watermark_before > info.row_count:
            raise WatermarkError(
                f"watermark {store.key!r} says rows up to {watermark_before} are in Kafka, but tab {info.title!r} "
                f"now has only {info.row_count} rows: rows were deleted. Check the topic, then set the "
                f"Variable's last_row to the last row already published (or delete it to republish all)."
            )
        after_row = watermark_before if plan.after_row is None else plan.after_row
        self.log.info(
            "Reading %r (tab %r, gid %s) after row %s into topic %r; watermark Variable %r is at %s.",
            self.spreadsheet_id,
            info.title,
            info.sheet_id,
            after_row,
            self.topic,
            store.key,
            watermark_before,
        )

        check_row = (
            previous.last_row
            if plan.mode == INCREMENTAL and previous is not None and previous.last_row > self.header_row
            else None
        )
        header, pages = self.reader.read(
            info,
            after_row,
            page_size=self.page_size,
            header_row=self.header_row,
            max_rows=self.max_rows,
            check_row=check_row,
        )
        mapper = self._mapper(header, info)
        if check_row is not None and previous is not None:
            drift = self._drift(previous, mapper, self.reader.checked_row or [], info)
            if drift:
                if self.on_drift == "fail":
                    raise DriftError(
                        f"{drift} Nothing was published. To proceed: delete or reset the watermark Variable "
                        f"{store.key!r} (republish from a row of your choice with start_row, or everything with "
                        f"full_refresh), or set on_drift='continue' (publish the rows after row {after_row} as they "
                        f"are now) or on_drift='republish' (publish every row again)."
                    )
                self.log.warning("%s on_drift=%r: going on.", drift, self.on_drift)
                if self.on_drift == "republish":
                    plan = replace(plan, mode=FULL_REFRESH, after_row=self.header_row)
                    after_row = self.header_row
                    header, pages = self.reader.read(
                        info, after_row, page_size=self.page_size, header_row=self.header_row, max_rows=self.max_rows
                    )
                    mapper = self._mapper(header, info)
        in_window = self._interval_filter(plan, info, mapper)

        ti = context.get("ti")
        static_headers = provenance_headers(self.spreadsheet_id, info, mapper)
        if self.airflow_headers:
            static_headers += [
                ("airflow.dag_id", dag_id.encode()),
                ("airflow.run_id", run_id.encode()),
                ("airflow.run_type", plan.run_type.encode()),
                ("airflow.task_id", str(self.task_id).encode()),
                ("airflow.try_number", str(getattr(ti, "try_number", "") or "").encode()),
            ]
        preview: list[str] = []
        checkpoints = plan.publish and plan.moves_watermark and self.delivery == AT_LEAST_ONCE
        timers = {
            "progress": time.monotonic() + PROGRESS_INTERVAL,
            "checkpoint": time.monotonic() + self.checkpoint_interval,
        }
        checkpointed: list[int | None] = [None]

        def collect(record: Record, headers: list[tuple[str, bytes]]) -> None:
            if len(preview) < DRY_RUN_PREVIEW:
                preview.append(f"row {record.row} key={record.key.decode()} {record.value.decode()[:300]}")

        def dead_letter(error: RowMappingError, cells: list[Any]) -> None:
            if plan.publish:
                self._dead_letter(error, cells, static_headers)

        def after_page(page: Page, progress: PublishResult) -> None:
            if plan.publish:
                publisher.poll()
            if checkpoints and progress.last_row is not None and time.monotonic() >= timers["checkpoint"]:
                timers["checkpoint"] = time.monotonic() + self.checkpoint_interval
                checkpointed[0] = self._checkpoint(
                    publisher, store, lease, mapper, info, dag_id, run_id, progress, checkpointed[0]
                )
            if time.monotonic() >= timers["progress"]:
                timers["progress"] = time.monotonic() + PROGRESS_INTERVAL
                self._log_progress(progress.pages, page.last_row, publisher.produced, started)
                if lease is not None:
                    lease.renew()

        try:
            result = publish_pages(
                pages,
                mapper,
                static_headers,
                sender(publisher) if plan.publish else collect,
                select=in_window,
                dead_letter=dead_letter if self.dead_letter_topic else None,
                after_page=after_page,
                mapping_process=self._mapping_process(),
            )
        except RowMappingError as err:
            message = (
                f"row {err.row} cannot be mapped ({err.reason}); fix the row, or set dead_letter_topic to "
                f"send such rows there with the reason in a header"
            )
            if plan.publish:
                publisher.abort(message)
            raise SheetsConfigError(message) from None
        first_row, last_row, last_value = result.first_row, result.last_row, result.last_value
        pages_read, rows_seen, selected = result.pages, result.rows_seen, result.selected
        dead_lettered = result.dead_lettered

        watermark = None
        if plan.moves_watermark and last_row is not None:
            watermark = self._watermark(last_row, last_value, mapper, info, dag_id, run_id)
        if plan.publish:
            if watermark is not None and self.delivery == EXACTLY_ONCE:
                # the checkpoint commits atomically with the rows (KIP-618's idea)
                publisher.send(store.key.encode(), watermark.to_json().encode(), [], topic=self._state_topic)
            published = publisher.finish() - (1 if watermark is not None and self.delivery == EXACTLY_ONCE else 0)
            published -= dead_lettered
        else:
            published = 0
            for line in preview:
                self.log.info("Dry run preview: %s", line)
        watermark_after = watermark_before
        if watermark is not None:
            if lease is not None:
                lease.renew()
            new_last = watermark.last_row
            current = store.get()
            if plan.mode != FULL_REFRESH and current is not None and current.last_row > new_last:
                self.log.warning(
                    "Watermark %r is already at %s (beyond this run's last row %s); leaving it there.",
                    store.key,
                    current.last_row,
                    new_last,
                )
                new_last = current.last_row
            else:
                store.set(watermark)
            watermark_after = new_last
        elapsed = time.monotonic() - started
        summary = {
            "run_type": plan.run_type,
            "mode": plan.mode,
            "dry_run": not plan.publish,
            "spreadsheet_id": self.spreadsheet_id,
            "sheet_name": info.title,
            "sheet_id": info.sheet_id,
            "topic": self.topic,
            "watermark_key": store.key,
            "watermark_before": watermark_before,
            "watermark_after": watermark_after,
            "rows_published": published,
            "rows_acked": published,
            "rows_selected": selected,
            "rows_dead_lettered": dead_lettered,
            "delivery": self.delivery,
            "empty_rows_skipped": (
                (last_row - after_row - rows_seen) if (last_row is not None and in_window is None) else 0
            ),
            "first_row": first_row,
            "last_row": last_row,
            "pages": pages_read,
            "sheets_requests": self.reader.requests,
            "duration_s": round(elapsed, 3),
            "rows_per_s": round(published / elapsed, 1) if elapsed > 0 else None,
        }
        if plan.interval is not None:
            summary["interval_start"] = plan.interval[0].isoformat()
            summary["interval_end"] = plan.interval[1].isoformat()
        self.log.info(
            "%s %s rows (%s..%s) of tab %r to %r in %.2f s (%s rows/s, %s pages, %s Sheets requests); "
            "mode %s, watermark %s -> %s.",
            "Published" if plan.publish else "Dry run: would publish",
            published if plan.publish else selected,
            first_row,
            last_row,
            info.title,
            self.topic,
            elapsed,
            summary["rows_per_s"],
            pages_read,
            self.reader.requests,
            plan.mode,
            watermark_before,
            watermark_after,
        )
        return summary

    def _mapping_process(self) -> MappingProcessHooks | None:
        if self.mapping_process is False or not mapping_process_available():
            return None
        reader = self.reader
        return MappingProcessHooks(
            after_fork=reader.after_fork,
            child_state=lambda: reader.requests,
            adopt_state=lambda requests: setattr(reader, "requests", requests),
        )

    def _watermark(
        self, row: int, value: bytes, mapper: RowMapper, info: SheetInfo, dag_id: str, run_id: str
    ) -> Watermark:
        return watermark_for(self.spreadsheet_id, info, self.topic, mapper, row, value, dag_id=dag_id, run_id=run_id)

    def _checkpoint(self, publisher, store, lease, mapper, info, dag_id, run_id, progress, done):
        """
        At-least-once progress on a long run: once everything produced so far is acknowledged
        (waiting up to :data:`CHECKPOINT_SETTLE` seconds), move the watermark to the last row sent.
        """
        row, value = progress.last_row, progress.last_value
        if done is not None and row <= done:
            return done
        if not publisher.settle(CHECKPOINT_SETTLE):
            self.log.info("Checkpoint skipped: rows up to %s are not all acknowledged yet.", row)
            return done
        if lease is not None:
            lease.renew()
        current = store.get()
        if current is not None and current.last_row >= row:
            return done
        store.set(self._watermark(row, value, mapper, info, dag_id, run_id))
        self.log.info("Checkpoint: every row up to %s is acknowledged; watermark moved there.", row)
        return row

    @property
    def _state_topic(self) -> str:
        return self.state_topic or f"{self.topic}.state"

    def _mapper(self, header: list[Any], info: SheetInfo) -> RowMapper:
        return mapper_for(header, self.header_row, info, self.key_column, "header_row")

    def _drift(self, previous: Watermark, mapper: RowMapper, cells: list[Any], info: SheetInfo) -> str | None:
        """Explain how the tab changed above the watermark since the last run, or ``None``."""
        if previous.header_hash and previous.header_hash != mapper.header_hash:
            before = previous.fields or []
            added = [f for f in mapper.fields if f not in before]
            removed = [f for f in before if f not in mapper.fields]
            detail = []
            if added:
                detail.append("added " + ", ".join(repr(f) for f in added))
            if removed:
                detail.append("removed or renamed " + ", ".join(repr(f) for f in removed))
            if not detail:
                detail.append("same names in another order")
            return (
                f"the header row of tab {info.title!r} changed since the last run ({'; '.join(detail)}): a form "
                f"question was added, renamed or moved, so records would change shape."
            )
        if previous.last_row_hash:
            return row_drift(mapper, previous.last_row, cells, previous.last_row_hash, info.title)
        return None

    def _reconcile(self, store: WatermarkStore, previous: Watermark | None) -> Watermark | None:
        """Exactly-once: trust the checkpoint committed with the records when the Variable lags behind it."""
        raw = read_last_value(
            client_config(self.kafka_config_id, self.producer_config),
            self._state_topic,
            store.key.encode(),
        )
        if raw is None:
            return previous
        checkpoint = Watermark.from_json(f"{self._state_topic}[{store.key}]", raw.decode("utf-8"))
        if previous is None or checkpoint.last_row > previous.last_row:
            self.log.warning(
                "The checkpoint in %r says rows up to %s are committed, the Variable %r says %s (the last run "
                "stopped between commit and Variable write); continuing from the checkpoint.",
                self._state_topic,
                checkpoint.last_row,
                store.key,
                previous.last_row if previous else None,
            )
            store.set(checkpoint)
            return checkpoint
        return previous

    def _dead_letter(self, error: RowMappingError, cells: list[Any], static_headers: list[tuple[str, bytes]]) -> None:
        value = json.dumps({"row": error.row, "cells": cells, "error": error.reason}, ensure_ascii=False, default=str)
        self.publisher.send(
            str(error.row).encode(),
            value.encode("utf-8"),
            [*static_headers, ("sheets.row", str(error.row).encode()), ("sheets.error", error.reason.encode())],
            topic=self.dead_letter_topic,
        )

    def _interval_filter(self, plan: RunPlan, info: SheetInfo, mapper: RowMapper):
        """For a backfill, a predicate ``(cells, row) -> bool`` selecting the rows in the data interval."""
        if plan.interval is None:
            return None
        if self.timestamp_column not in mapper.fields:
            raise SheetsConfigError(
                f"timestamp_column {self.timestamp_column!r} is not a header of tab {info.title!r}; the headers "
                f"are: {', '.join(repr(f) for f in mapper.fields)}. Backfills select rows by this column."
            )
        index = mapper.fields.index(self.timestamp_column)
        zone = sheet_zone(info.time_zone)
        start, end = plan.interval

        def in_window(cells: list[Any], row: int) -> bool:
            cell = cells[index] if index < len(cells) else None
            try:
                moment = parse_timestamp(cell, zone, self.timestamp_format)
            except ValueError as err:
                raise SheetsConfigError(
                    f"row {row}: {err} (column {self.timestamp_column!r}, spreadsheet time zone {zone.key}). "
                    f"Set timestamp_format to the sheet's format."
                ) from None
            return moment is not None and in_interval(moment, start, end)

        return in_window

    def _log_progress(self, pages: int, through_row: int, produced: int, started: float) -> None:
        elapsed = time.monotonic() - started
        self.log.info(
            "Progress: %s pages read (through row %s), %s rows produced, %.0f rows/s.",
            pages,
            through_row,
            produced,
            produced / elapsed if elapsed > 0 else 0.0,
        )
