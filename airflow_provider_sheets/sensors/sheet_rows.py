"""SheetNewRowsSensor: wait until a tab has rows after the watermark of ``SheetToKafkaOperator``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf

from airflow_provider_sheets import accel, errors
from airflow_provider_sheets.adapters.variable_store import WatermarkStore
from airflow_provider_sheets.errors import SheetsConfigError, SheetsToKafkaError
from airflow_provider_sheets.hooks.sheets import SheetInfo, SheetsConnection
from airflow_provider_sheets.model.position import default_watermark_key
from airflow_provider_sheets.pipeline.probe import NewRowsProbe, default_probe_rows
from airflow_provider_sheets.pipeline.tab import check_watermark
from airflow_provider_sheets.settings import as_int, as_optional_int, as_optional_text, as_text
from airflow_provider_sheets.transfers import links
from airflow_provider_sheets.triggers.sheet_rows import SheetNewRowsTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class SheetNewRowsSensor(BaseSensorOperator):
    """
    Wait until a Google Sheets tab has at least ``min_rows`` non-empty rows after the watermark.

    The watermark is the one :class:`~airflow_provider_sheets.transfers.sheet_to_kafka.SheetToKafkaOperator`
    keeps (same Variable key for the same ``spreadsheet_id``, tab and ``topic``); without it, rows
    after ``header_row`` count. On success the task returns (and pushes to XCom) the number of
    non-empty rows found, at most ``probe_rows``.

    Cost: the tab is resolved with one ``spreadsheets.get`` per sensor instance, then each poke
    is one ``values:batchGet`` of at most ``probe_rows`` rows after the watermark, whatever the
    size of the sheet. When the grid ends at the watermark the poke re-reads the metadata instead
    (the grid grows as rows arrive) and asks for no values. In ``poke`` mode the instance lives
    for the whole wait; in ``reschedule`` mode each poke is a new instance, so it costs one extra
    ``spreadsheets.get``. With ``deferrable=True`` the sensor reads the watermark and checks once
    in the worker (returning at once if the rows are there), then waits in the triggerer
    (:class:`~airflow_provider_sheets.triggers.sheet_rows.SheetNewRowsTrigger`), polling every
    ``poke_interval`` seconds (``exponential_backoff`` does not apply there) until ``timeout``.
    The trigger compares with the watermark read before deferring.

    Quota (429), server (5xx) and network errors that outlast the client's retries are logged
    and the poke counts as "nothing new yet", up to 5 in a row (in ``reschedule`` mode the count
    starts again at every poke, so only ``timeout`` ends a long outage); a missing sheet, a
    denied permission or a watermark past the end of the tab fail the task at once (or skip it
    with ``soft_fail``).

    :param spreadsheet_id: the spreadsheet id (from its URL). Templated.
    :param topic: the topic the operator publishes to; part of the default watermark key. Templated.
    :param sheet_name: the tab title; default: the first tab. Templated.
    :param gcp_conn_id: the ``google_cloud_platform`` connection. Templated.
    :param api_endpoint: a custom Sheets API endpoint (private endpoint, or the local Sheets
        server of the demo). Templated; an empty string means Google's.
    :param watermark_key: the watermark Variable; default
        ``sheets_to_kafka.<spreadsheet_id>.gid<tab id>.<topic>``, as the operator. Templated.
    :param header_row: the header row; the starting point when there is no watermark yet.
    :param min_rows: how many non-empty rows after the watermark to wait for.
    :param probe_rows: how many rows after the watermark one poke looks at; default
        ``max(min_rows, 200)``. Empty rows inside the window do not count.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param impersonation_chain: service account(s) to impersonate, as for the transfer operator
        (the trigger gets them too). Templated.
    :param sheets_quota_per_minute: the read budget, as for the transfer operator (the trigger
        keeps it).
    """

    template_fields: Sequence[str] = (
        "spreadsheet_id",
        "sheet_name",
        "topic",
        "gcp_conn_id",
        "api_endpoint",
        "watermark_key",
        "impersonation_chain",
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
        api_endpoint: str | None = None,
        watermark_key: str | None = None,
        header_row: int = 1,
        min_rows: int = 1,
        probe_rows: int | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        impersonation_chain: str | Sequence[str] | None = None,
        sheets_quota_per_minute: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        header_row = as_int("header_row", header_row, minimum=1)
        min_rows = as_int("min_rows", min_rows, minimum=1)
        if probe_rows is None:
            probe_rows = default_probe_rows(min_rows)
        if isinstance(probe_rows, bool) or not isinstance(probe_rows, int) or probe_rows < min_rows:
            raise SheetsConfigError(
                f"probe_rows must be an integer of at least min_rows ({min_rows}), got {probe_rows!r}; "
                f"a poke looks at probe_rows rows after the watermark, so fewer could never be enough."
            )
        self.spreadsheet_id = spreadsheet_id
        self.topic = topic
        self.sheet_name = sheet_name
        self.gcp_conn_id = gcp_conn_id
        self.api_endpoint = api_endpoint
        self.watermark_key = watermark_key
        self.header_row = header_row
        self.min_rows = min_rows
        self.probe_rows = probe_rows
        self.deferrable = deferrable
        self.impersonation_chain = impersonation_chain
        self.sheets_quota_per_minute = as_optional_int("sheets_quota_per_minute", sheets_quota_per_minute, 0)

    @property
    def connection(self) -> SheetsConnection:
        return SheetsConnection(
            self.gcp_conn_id, self.api_endpoint, self.impersonation_chain, self.sheets_quota_per_minute
        )

    @cached_property
    def probe(self) -> NewRowsProbe:
        """The tab prober; built after templates are rendered, kept for the instance's pokes."""
        self._validate()
        return NewRowsProbe(
            accel.reader(self.connection),
            self.spreadsheet_id,
            self.sheet_name,
            self.probe_rows,
            logger=self.log,
        )

    def _validate(self) -> None:
        for name in ("spreadsheet_id", "topic", "gcp_conn_id"):
            setattr(self, name, as_text(name, getattr(self, name)))
        self.sheet_name = as_optional_text("sheet_name", self.sheet_name)
        self.watermark_key = as_optional_text("watermark_key", self.watermark_key)

    def _after_row(self, info: SheetInfo) -> int:
        """The watermark row (``header_row`` when the Variable does not exist)."""
        key = self.watermark_key or default_watermark_key(self.spreadsheet_id, info.sheet_id, self.topic)
        self.probe.watermark_key = key
        stored = WatermarkStore(key).get()
        after_row = stored.last_row if stored else self.header_row
        check_watermark(key, after_row, self.header_row)
        return after_row

    def _check(self) -> int | None:
        """One probe: the count of new rows, or ``None`` after a tolerated transient failure."""
        count = self.probe.poll(self._after_row)
        if count is not None:
            self.log.info(
                "%s non-empty rows (of %s wanted) after row %s of tab %r (looked at %s rows; watermark %r).",
                count,
                self.min_rows,
                self.probe.after_row,
                self.probe.tab().title,
                self.probe_rows,
                self.probe.watermark_key,
            )
        return count

    def poke(self, context: Context) -> PokeReturnValue:
        count = self._check()
        links.record(self, self.spreadsheet_id, self.probe.tab().sheet_id, self.topic)
        done = count is not None and count >= self.min_rows
        return PokeReturnValue(is_done=done, xcom_value=count if done else None)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        count = self._check()
        info = self.probe.tab()
        links.persist(context, self, self.spreadsheet_id, info.sheet_id, self.topic)  # the trigger resumes elsewhere
        if count is not None and count >= self.min_rows:
            return count
        self.defer(
            trigger=SheetNewRowsTrigger(
                spreadsheet_id=self.spreadsheet_id,
                sheet_name=info.title,
                after_row=self.probe.after_row if self.probe.after_row is not None else self._after_row(info),
                min_rows=self.min_rows,
                probe_rows=self.probe_rows,
                poke_interval=self.poke_interval,
                **self.connection.as_dict(),
                watermark_key=self.probe.watermark_key,
                not_before=time.time() + self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> int:
        """Resume after the trigger fired: return the count, or raise the error it reported."""
        if not event or event.get("status") != "success":
            event = event or {}
            error_class = getattr(errors, str(event.get("error_type")), None)
            if not (isinstance(error_class, type) and issubclass(error_class, SheetsToKafkaError)):
                error_class = SheetsToKafkaError
            raise error_class(
                f"waiting for new rows in spreadsheet {self.spreadsheet_id!r} (tab "
                f"{event.get('sheet_name', self.sheet_name)!r}) failed: "
                f"{event.get('message') or f'the trigger sent no usable event ({event!r})'}"
            )
        count = int(event["count"])
        self.log.info(
            "%s non-empty rows after row %s of tab %r (after %s polls in the triggerer).",
            count,
            event.get("after_row"),
            event.get("sheet_name"),
            event.get("polls"),
        )
        return count
