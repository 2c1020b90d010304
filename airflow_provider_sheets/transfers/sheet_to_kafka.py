"""SheetToKafkaOperator: publish the rows of a Google Sheet tab that arrived after the watermark."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_sheets.errors import HeaderError, SheetsConfigError, WatermarkError
from airflow_provider_sheets.hooks.sheets import DEFAULT_PAGE_SIZE, SheetsReader
from airflow_provider_sheets.kafka import Publisher
from airflow_provider_sheets.rows import RowMapper, RowMappingError, fingerprint
from airflow_provider_sheets.watermark import Watermark, WatermarkStore, default_watermark_key

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Seconds between progress lines in the task log.
PROGRESS_INTERVAL = 10.0


class SheetToKafkaOperator(BaseOperator):
    """
    Publish the rows of a Google Sheets tab that come after the watermark to a Kafka topic.

    Row 1 (``header_row``) names the fields: each record's value is a UTF-8 JSON object
    ``{header: cell}`` (ragged rows padded with ``null``), its key is the sheet row number as a
    decimal string (or the ``key_column`` cell), and its headers carry the provenance
    (``sheets.spreadsheet_id``, ``sheets.sheet_name``, ``sheets.sheet_id``, ``sheets.row``,
    ``sheets.header_hash``, ``airflow.dag_id``, ``airflow.run_id``, ``airflow.task_id``,
    ``airflow.try_number``). Fully empty rows are skipped and counted.

    Delivery semantics (at-least-once): the producer is idempotent with ``acks=all``; the
    watermark Variable is written only after every record of the run was acknowledged, and read
    back. If anything fails, the task fails and the watermark stays where it was, so a retry
    re-reads the same rows and re-sends them with the same keys and ``sheets.row`` headers.
    Records acknowledged before the failure may therefore appear twice in the topic; consumers
    de-duplicate on ``(sheets.spreadsheet_id, sheets.sheet_id, sheets.row)`` or on the key.

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
    :param max_rows: read at most this many rows after the watermark in one run.
    :param value_render_option: ``FORMATTED_VALUE`` (cells as the sheet shows them; default),
        ``UNFORMATTED_VALUE`` or ``FORMULA``.
    :param impersonation_chain: service account(s) to impersonate for the Sheets calls.
    :param producer_config: librdkafka settings applied over the connection's (idempotence and
        ``acks=all`` cannot be weakened).
    :param flush_timeout: seconds to wait for the last acknowledgements before failing.
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
        max_rows: int | None = None,
        value_render_option: str = "FORMATTED_VALUE",
        impersonation_chain: str | Sequence[str] | None = None,
        producer_config: dict[str, Any] | None = None,
        flush_timeout: float = 300.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spreadsheet_id = spreadsheet_id
        self.topic = topic
        self.sheet_name = sheet_name
        self.gcp_conn_id = gcp_conn_id
        self.kafka_config_id = kafka_config_id
        self.api_endpoint = api_endpoint
        self.page_size = page_size
        self.key_column = key_column
        self.watermark_key = watermark_key
        self.header_row = header_row
        self.max_rows = max_rows
        self.value_render_option = value_render_option
        self.impersonation_chain = impersonation_chain
        self.producer_config = producer_config
        self.flush_timeout = flush_timeout

    @cached_property
    def reader(self) -> SheetsReader:
        return SheetsReader(
            gcp_conn_id=self.gcp_conn_id,
            api_endpoint=self.api_endpoint or None,
            impersonation_chain=self.impersonation_chain,
            value_render_option=self.value_render_option,
        )

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(
            self.topic,
            kafka_config_id=self.kafka_config_id,
            flush_timeout=self.flush_timeout,
            producer_config=self.producer_config,
        )

    def _validate(self) -> None:
        for name in ("spreadsheet_id", "topic", "gcp_conn_id", "kafka_config_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise SheetsConfigError(f"{name} must be a non-empty string after rendering, got {value!r}")
        if not isinstance(self.page_size, int) or self.page_size < 1:
            raise SheetsConfigError(f"page_size must be a positive integer, got {self.page_size!r}")
        if not isinstance(self.header_row, int) or self.header_row < 1:
            raise SheetsConfigError(f"header_row must be a positive integer, got {self.header_row!r}")
        if self.max_rows is not None and (not isinstance(self.max_rows, int) or self.max_rows < 1):
            raise SheetsConfigError(f"max_rows must be a positive integer or None, got {self.max_rows!r}")
        self.sheet_name = self.sheet_name or None
        self.key_column = self.key_column or None

    def execute(self, context: Context) -> dict[str, Any]:
        self._validate()
        started = time.monotonic()
        publisher = self.publisher
        publisher.check_topic()

        info = self.reader.describe(self.spreadsheet_id, self.sheet_name)
        store = WatermarkStore(
            self.watermark_key or default_watermark_key(self.spreadsheet_id, info.sheet_id, self.topic)
        )
        previous = store.get()
        after_row = previous.last_row if previous else self.header_row
        if after_row < self.header_row:
            raise WatermarkError(
                f"watermark {store.key!r} says last_row={after_row}, above the header row {self.header_row}; "
                f"set it to {self.header_row} or more."
            )
        if after_row > info.row_count:
            raise WatermarkError(
                f"watermark {store.key!r} says rows up to {after_row} are in Kafka, but tab {info.title!r} "
                f"now has only {info.row_count} rows: rows were deleted. Check the topic, then set the "
                f"Variable's last_row to the last row already published (or delete it to republish all)."
            )
        self.log.info(
            "Reading %r (tab %r, gid %s) after row %s into topic %r; watermark Variable %r.",
            self.spreadsheet_id,
            info.title,
            info.sheet_id,
            after_row,
            self.topic,
            store.key,
        )

        header, pages = self.reader.read(
            info, after_row, page_size=self.page_size, header_row=self.header_row, max_rows=self.max_rows
        )
        if not any(cell not in ("", None) for cell in header):
            raise HeaderError(
                f"the header row {self.header_row} of tab {info.title!r} is empty. Put the field names "
                f"(for a Google Form: the question titles) in row {self.header_row}, or set header_row."
            )
        try:
            mapper = RowMapper(header, self.key_column)
        except ValueError as err:
            raise SheetsConfigError(f"tab {info.title!r}: {err}") from None

        ti = context.get("ti")
        static_headers = [
            ("sheets.spreadsheet_id", self.spreadsheet_id.encode()),
            ("sheets.sheet_name", info.title.encode()),
            ("sheets.sheet_id", str(info.sheet_id).encode()),
            ("sheets.header_hash", mapper.header_hash.encode()),
            ("airflow.dag_id", str(getattr(ti, "dag_id", self.dag_id)).encode()),
            ("airflow.run_id", str(context.get("run_id") or getattr(ti, "run_id", "")).encode()),
            ("airflow.task_id", str(self.task_id).encode()),
            ("airflow.try_number", str(getattr(ti, "try_number", "") or "").encode()),
        ]
        first_row = last_row = None
        last_value = b""
        pages_read = 0
        next_progress = time.monotonic() + PROGRESS_INTERVAL
        for page in pages:
            pages_read += 1
            try:
                for record in mapper.map_rows(page.first_row, page.rows):
                    if isinstance(record, int):
                        continue
                    row_header = ("sheets.row", str(record.row).encode())
                    publisher.send(record.key, record.value, [*static_headers, row_header])
                    if first_row is None:
                        first_row = record.row
                    last_row, last_value = record.row, record.value
            except RowMappingError as err:
                publisher.abort(f"row {err.row} cannot be mapped ({err.reason})")
            publisher.poll()
            if time.monotonic() >= next_progress:
                next_progress = time.monotonic() + PROGRESS_INTERVAL
                self._log_progress(pages_read, page.last_row, publisher.produced, started)

        acked = publisher.finish()
        watermark_after = after_row
        if last_row is not None:
            watermark = store.set(
                Watermark(
                    last_row=last_row,
                    spreadsheet_id=self.spreadsheet_id,
                    sheet_id=info.sheet_id,
                    sheet_name=info.title,
                    topic=self.topic,
                    header_hash=mapper.header_hash,
                    last_row_hash=fingerprint([last_value]),
                    dag_id=str(getattr(ti, "dag_id", self.dag_id)),
                    run_id=str(context.get("run_id") or ""),
                )
            )
            watermark_after = watermark.last_row
        elapsed = time.monotonic() - started
        summary = {
            "spreadsheet_id": self.spreadsheet_id,
            "sheet_name": info.title,
            "sheet_id": info.sheet_id,
            "topic": self.topic,
            "watermark_key": store.key,
            "watermark_before": after_row,
            "watermark_after": watermark_after,
            "rows_published": acked,
            "rows_acked": acked,
            "empty_rows_skipped": (last_row - after_row - acked) if last_row is not None else 0,
            "first_row": first_row,
            "last_row": last_row,
            "pages": pages_read,
            "sheets_requests": self.reader.requests,
            "duration_s": round(elapsed, 3),
            "rows_per_s": round(acked / elapsed, 1) if elapsed > 0 else None,
        }
        self.log.info(
            "Published %s rows (%s..%s) of tab %r to %r in %.2f s (%s rows/s, %s pages, %s Sheets requests, "
            "%s empty rows skipped); watermark %s -> %s.",
            acked,
            first_row,
            last_row,
            info.title,
            self.topic,
            elapsed,
            summary["rows_per_s"],
            pages_read,
            self.reader.requests,
            summary["empty_rows_skipped"],
            after_row,
            watermark_after,
        )
        return summary

    def _log_progress(self, pages: int, through_row: int, produced: int, started: float) -> None:
        elapsed = time.monotonic() - started
        self.log.info(
            "Progress: %s pages read (through row %s), %s rows produced, %.0f rows/s.",
            pages,
            through_row,
            produced,
            produced / elapsed if elapsed > 0 else 0.0,
        )
