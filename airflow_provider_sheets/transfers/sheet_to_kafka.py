"""SheetToKafkaOperator: publish the rows of a Google Sheet tab that arrived after the watermark."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias, BaseOperator

from airflow_provider_sheets import accel
from airflow_provider_sheets.hooks.sheets import SheetsConnection, SheetsReader
from airflow_provider_sheets.model.checks import DRIFT_POLICIES
from airflow_provider_sheets.pipeline.batch import BatchRun, Ports, RunContext
from airflow_provider_sheets.pipeline.encoding import Encoding
from airflow_provider_sheets.pipeline.summary import Summary
from airflow_provider_sheets.settings import AT_LEAST_ONCE, DEFAULT_PAGE_SIZE, EXACTLY_ONCE, BatchSettings
from airflow_provider_sheets.transfers import assets, links

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["AT_LEAST_ONCE", "DRIFT_POLICIES", "EXACTLY_ONCE", "SheetToKafkaOperator"]


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

    What a run publishes depends on how it started (see :mod:`airflow_provider_sheets.model.plan`):
    scheduled and plain manual runs publish the rows after the watermark; ``dry_run`` publishes
    nothing; ``full_refresh`` and ``start_row`` republish; backfill runs publish the rows whose
    ``timestamp_column`` falls in their data interval and leave the live watermark alone. A run that
    moves the watermark holds a lease on it (see :mod:`airflow_provider_sheets.adapters.lease`), so
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
    :param timestamp_column: the header whose cells place a row in a backfill's data interval
        (default ``Timestamp``, which also finds Forms' column in other languages: ``Horodateur``,
        ``Zeitstempel``…). Its cells are read as serial date-times, in the spreadsheet's time zone,
        whatever its locale shows.
    :param timestamp_format: ``strptime`` format of cells in that column that hold *text*, not
        date-times; default: a numeric date in the spreadsheet's locale's order, or ISO 8601.
    :param value_render_option: ``FORMATTED_VALUE`` (cells as the sheet shows them; default),
        ``UNFORMATTED_VALUE`` or ``FORMULA``.
    :param impersonation_chain: service account(s) to impersonate for the Sheets calls.
    :param producer_config: librdkafka settings applied over the connection's (idempotence and
        ``acks=all`` cannot be weakened).
    :param flush_timeout: seconds to wait for the last acknowledgements before failing; also bounds
        ``message.timeout.ms``.
    :param lease_ttl: seconds a watermark lease lasts without renewal (a dead run blocks others at
        most this long).
    :param lease_settle: seconds between claiming the lease and confirming the claim, at the least
        (0.1). The run describes the sheet (when ``watermark_key`` is given; the default key needs the
        tab's id first), builds the producer and checks the topics meanwhile, so the settle costs the
        run only what those leave of it; the watermark is read and records produced only after the
        confirm. It settles runs that claim the lease together among themselves; no two runs publish
        together whatever its value (see :mod:`airflow_provider_sheets.model.lease`). Raise it where
        a Variable write takes more than 80 % of it (the task log warns); use one value for every task
        on a watermark.
    :param lease_wait: seconds to wait for another run's lease before failing with
        ``WatermarkConflictError``, counted from the first claim.
    :param delivery: ``at_least_once`` or ``exactly_once`` (see above).
    :param state_topic: the compacted topic of ``exactly_once`` checkpoints; default ``<topic>.state``.
        Templated.
    :param on_drift: what to do when rows above the watermark were deleted or inserted, or the
        header was renamed or reordered (a column added at the right and rows edited in place are
        benign, see the README): ``fail`` (default; nothing is published), ``continue`` (read on
        after where the last published row is now), ``republish`` (publish every row again) or
        ``reconcile`` (a reconcile run, see ``reconcile``; needs ``fingerprint_topic``). Templated.
    :param dead_letter_topic: where rows that cannot be mapped go (with the reason in the
        ``sheets.error`` header); without it such a row fails the run. Templated.
    :param checkpoint_interval: seconds between at-least-once watermark checkpoints on long runs.
    :param airflow_headers: add the ``airflow.*`` headers (the run that published the record) to
        every record; ``False`` keeps the five ``sheets.*`` headers, those consumers de-duplicate
        on, and makes each record ~150 bytes smaller (with typical DAG and run ids) and publishing faster.
    :param mapping_process: read and map the rows in a process forked from the task's (``None``,
        the default: on Linux), so that reading, mapping and producing use two cores; ``False``
        keeps everything in the task process.
    :param sheets_quota_per_minute: Sheets read requests a minute this task's process makes at most
        (a sliding window shared by every reader of the connection in the process; a request waits,
        with a line in the task log, until it fits). ``None``: the connection's
        ``sheets_quota_per_minute`` extra, else 60, Google's default per user; 0 turns pacing off.
    :param reconcile: read every row and publish what makes the topic match the tab now: rows
        changed since they were published (same key, ``sheets.change: update``), rows never
        published (``insert``) and a tombstone for each key no row holds any more (``delete``); the
        watermark is set to the last row. Needs ``fingerprint_topic``. Templated.
    :param fingerprint_topic: a compacted topic where every publishing run writes each record's key
        and the hash of its value (``{"row", "hash"}``): what a reconcile compares the tab with, so
        that it never reads the data topic back. Set it from the first run on. Templated.
    :param typed_values: record values as typed JSON, whatever the spreadsheet's locale: numbers as
        numbers, checkboxes as booleans, dates, times and date-times as ISO 8601 (date-times with the
        spreadsheet's time-zone offset), empty cells as ``null``; read as unformatted values with
        each column's number format (see :mod:`airflow_provider_sheets.model.typed`). The default
        (``None``) is ``True`` unless ``value_render_option`` asks for the cells some other way;
        ``False``: each cell as the sheet shows it. Templated.
    :param event_time_column: with ``typed_values``, the column whose date-time becomes each
        record's Kafka timestamp (CreateTime): the submission time, for consumers that window on
        event time; default: the ``timestamp_column`` (Forms' ``Timestamp``) when the tab has it.
        Rows without a date-time there keep the publish time.
    :param value_format: ``json`` (default): the value is the ``{field: value}`` object;
        ``cloudevents``: the same object as a CloudEvent's data, in the CloudEvents Kafka protocol
        binding's binary mode (``ce_specversion``, ``ce_id`` = spreadsheet/tab/row, ``ce_source``,
        ``ce_type``, ``ce_time`` = the event time, ``content-type: application/json`` headers);
        ``connect_json``: Kafka Connect's ``JsonConverter`` envelope with ``schemas.enable=true``
        (``{"schema": …, "payload": …}``, typed from the columns' number formats; reads typed values);
        ``avro`` / ``json_schema``: confluent-kafka's ``AvroSerializer`` / ``JSONSerializer`` with the
        tab's schema, registered under ``<topic>-value`` in the ``schema_registry_conn_id`` registry
        before any record with it is sent (a question added at the right is a new optional field; a
        version the registry's compatibility check refuses fails the run before anything is
        published). Avro field names are the headers made Avro names, the headers in each ``doc``.
    :param key_format: ``text`` (default): the key is the key column's cell, or the row number;
        ``connect_json``: the same in Kafka Connect's ``JsonConverter`` envelope (a row number as
        ``int64``, a key column's cell as ``string``).
    :param schema_registry_conn_id: the ``schema_registry`` connection of ``avro`` / ``json_schema``.
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
        "reconcile",
        "fingerprint_topic",
        "on_drift",
        "typed_values",
        "value_format",
    )
    ui_color = "#e6f4ea"
    operator_extra_links = (links.GoogleSheetLink(), links.TopicLink())

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
        timestamp_format: str | None = None,
        value_render_option: str = "FORMATTED_VALUE",
        impersonation_chain: str | Sequence[str] | None = None,
        producer_config: dict[str, Any] | None = None,
        flush_timeout: float = 300.0,
        lease_ttl: float = 600.0,
        lease_settle: float = 0.1,
        lease_wait: float = 120.0,
        delivery: str = AT_LEAST_ONCE,
        state_topic: str | None = None,
        on_drift: str = "fail",
        dead_letter_topic: str | None = None,
        checkpoint_interval: float = 60.0,
        mapping_process: bool | None = None,
        airflow_headers: bool = True,
        sheets_quota_per_minute: int | None = None,
        reconcile: bool | str = False,
        fingerprint_topic: str | None = None,
        typed_values: bool | str | None = None,
        event_time_column: str | None = None,
        value_format: str = "json",
        key_format: str = "text",
        schema_registry_conn_id: str = "schema_registry_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        #: without ``outlets``: the topic's asset, reached through this alias only when rows were published
        self.default_alias: AssetAlias | None = None
        if not self.outlets:
            self.default_alias = assets.default_alias(self.dag_id if self.has_dag() else None, self.task_id)
            self.outlets = [self.default_alias]
        self.spreadsheet_id = spreadsheet_id
        self.topic = topic
        self.sheet_name = sheet_name
        self.gcp_conn_id = gcp_conn_id
        self.kafka_config_id = kafka_config_id
        self.api_endpoint = api_endpoint
        # templated or from Params: any type until BatchSettings.check() coerces them
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
        self.sheets_quota_per_minute = sheets_quota_per_minute
        self.reconcile: Any = reconcile
        self.fingerprint_topic = fingerprint_topic
        self.typed_values: Any = typed_values
        self.event_time_column = event_time_column
        self.value_format = value_format
        self.key_format = key_format
        self.schema_registry_conn_id = schema_registry_conn_id
        #: what the last execute() did (OpenLineage reads it once the task completes)
        self.summary: Summary | None = None

    @cached_property
    def reader(self) -> SheetsReader:
        """The Sheets reader, built from the checked settings (after templates are rendered)."""
        s = self.settings()
        connection = SheetsConnection(s.gcp_conn_id, s.api_endpoint, s.impersonation_chain, s.sheets_quota_per_minute)
        return accel.reader(connection, s.value_render_option, typed=Encoding.of(s).typed)

    def settings(self) -> BatchSettings:
        """The arguments as rendered, checked (templates and Params may give strings or ``None``)."""
        return BatchSettings.check({name: getattr(self, name) for name in BatchSettings.names()})

    def execute(self, context: Context) -> dict[str, Any]:
        """Check the rendered arguments, then run the data path (:class:`~.pipeline.batch.BatchRun`)."""
        settings = self.settings()
        ti = context.get("ti")
        run = RunContext(
            dag_id=str(getattr(ti, "dag_id", None) or self.dag_id),
            run_id=str(context.get("run_id") or getattr(ti, "run_id", "") or ""),
            task_id=str(self.task_id),
            run_type=getattr(context.get("dag_run"), "run_type", None),
            try_number=getattr(ti, "try_number", None),
            data_interval=(context.get("data_interval_start"), context.get("data_interval_end")),
        )
        links.record(self, settings.spreadsheet_id, None, settings.topic)  # a failed attempt links there
        summary = self.summary = BatchRun(settings, run, Ports(self.reader), self.log).execute()
        links.record(self, settings.spreadsheet_id, summary.sheet_id, settings.topic)
        emitted = assets.emit(context, self.default_alias, settings, summary) if self.default_alias else None
        if emitted is not None:
            self.log.info(emitted)
        return summary.as_xcom()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (its provider calls it): the tab in, the topic out, their schema, the rows published."""
        from airflow_provider_sheets.transfers.lineage import operator_lineage

        return operator_lineage(self.settings(), self.summary)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """OpenLineage of a failed run: the same datasets, without what the run did not finish."""
        from airflow_provider_sheets.transfers.lineage import operator_lineage

        return operator_lineage(self.settings(), None)
