"""SheetNewRowsTrigger: wait in the triggerer until a tab has new rows after a given row."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_sheets import accel
from airflow_provider_sheets.hooks.sheets import SheetsConnection
from airflow_provider_sheets.pipeline.probe import NewRowsProbe, default_probe_rows


class SheetNewRowsTrigger(BaseTrigger):
    """
    Poll a tab until at least ``min_rows`` non-empty rows follow ``after_row``.

    Each poll is one bounded ``values:batchGet`` of ``probe_rows`` rows (plus one
    ``spreadsheets.get`` when the trigger starts, and whenever the cached grid ends at
    ``after_row``). The Google client is synchronous, so every request runs in a worker thread
    (:func:`asyncio.to_thread`) and never blocks the triggerer's event loop. The trigger only
    reads: running it twice (a triggerer restart) has no side effects.

    The first poll waits until ``not_before`` (the sensor sets it one ``poke_interval`` after its
    own check, so an immediate poll would not just repeat that request); a trigger restarted later
    than that polls at once. The wait also keeps the trigger from firing while the scheduler has
    not yet processed the deferring worker's exit: Airflow 3.3 marks a task failed when that stale
    "success" arrives after the resumed attempt is already queued or running (apache/airflow#72716).

    Events: ``{"status": "success", "count": n, ...}`` once enough rows are there, or
    ``{"status": "error", "message": ..., "error_type": ...}`` on a failure that a later poll
    cannot fix (missing sheet, permission, deleted rows, or quota/server errors
    that persisted for several polls in a row).

    :param spreadsheet_id: the spreadsheet id.
    :param sheet_name: the tab title (resolved by the sensor).
    :param after_row: the watermark row; rows after it count.
    :param min_rows: how many non-empty rows to wait for.
    :param probe_rows: how many rows after ``after_row`` one poll looks at.
    :param poke_interval: seconds between polls.
    :param gcp_conn_id: the ``google_cloud_platform`` connection.
    :param api_endpoint: a custom Sheets API endpoint.
    :param watermark_key: the watermark Variable's key, named in error messages.
    :param not_before: the UNIX time of the first poll; ``None`` polls at once.
    :param impersonation_chain: service account(s) to impersonate, as for the sensor.
    :param sheets_quota_per_minute: the read budget, as for the sensor.
    """

    def __init__(
        self,
        *,
        spreadsheet_id: str,
        sheet_name: str,
        after_row: int,
        min_rows: int = 1,
        probe_rows: int | None = None,
        poke_interval: float = 60.0,
        gcp_conn_id: str = "google_cloud_default",
        api_endpoint: str | None = None,
        watermark_key: str | None = None,
        not_before: float | None = None,
        impersonation_chain: str | list[str] | None = None,
        sheets_quota_per_minute: int | None = None,
    ) -> None:
        super().__init__()
        self.spreadsheet_id = spreadsheet_id
        self.sheet_name = sheet_name
        self.after_row = after_row
        self.min_rows = min_rows
        self.probe_rows = probe_rows if probe_rows is not None else default_probe_rows(min_rows)
        self.poke_interval = float(poke_interval)
        self.gcp_conn_id = gcp_conn_id
        self.api_endpoint = api_endpoint or None
        self.watermark_key = watermark_key
        self.not_before = not_before
        self.connection = SheetsConnection(gcp_conn_id, api_endpoint, impersonation_chain, sheets_quota_per_minute)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "spreadsheet_id": self.spreadsheet_id,
                "sheet_name": self.sheet_name,
                "after_row": self.after_row,
                "min_rows": self.min_rows,
                "probe_rows": self.probe_rows,
                "poke_interval": self.poke_interval,
                **self.connection.as_dict(),
                "watermark_key": self.watermark_key,
                "not_before": self.not_before,
            },
        )

    def _event(self, status: str, **fields: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "spreadsheet_id": self.spreadsheet_id,
                "sheet_name": self.sheet_name,
                "after_row": self.after_row,
                **fields,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            probe = NewRowsProbe(
                accel.reader(self.connection),
                self.spreadsheet_id,
                self.sheet_name,
                self.probe_rows,
                watermark_key=self.watermark_key,
                logger=self.log,
            )
        except Exception as err:  # noqa: BLE001 - reported to the task as an error event
            yield self._event("error", message=str(err), error_type=type(err).__name__)
            return
        polls = 0
        if self.not_before is not None:
            await asyncio.sleep(max(0.0, self.not_before - time.time()))
        while True:
            polls += 1
            try:
                count = await asyncio.to_thread(probe.poll, self.after_row)
            except Exception as err:  # noqa: BLE001 - reported to the task as an error event
                yield self._event("error", message=str(err), error_type=type(err).__name__, polls=polls)
                return
            if count is not None and count >= self.min_rows:
                yield self._event("success", count=count, polls=polls)
                return
            self.log.info(
                "%s of %s new rows after row %s of tab %r; next poll in %s s.",
                count if count is not None else "?",
                self.min_rows,
                self.after_row,
                self.sheet_name,
                self.poke_interval,
            )
            await asyncio.sleep(self.poke_interval)
