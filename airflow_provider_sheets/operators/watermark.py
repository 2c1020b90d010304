"""SheetsWatermarkOperator: show, set, reset or rebuild a watermark, e.g. from a Params form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_sheets import accel
from airflow_provider_sheets.adapters.kafka_config import client_config
from airflow_provider_sheets.adapters.state_topic import highest_published_row
from airflow_provider_sheets.adapters.variable_store import WatermarkStore, reset_watermark, set_watermark
from airflow_provider_sheets.errors import SheetsConfigError, WatermarkError
from airflow_provider_sheets.hooks.sheets import SheetsConnection
from airflow_provider_sheets.model.position import default_watermark_key
from airflow_provider_sheets.settings import as_choice, as_int

if TYPE_CHECKING:
    from airflow.sdk import Context

ACTIONS = ("show", "set", "reset", "rebuild")


class SheetsWatermarkOperator(BaseOperator):
    """
    Manage the watermark of one (spreadsheet, tab, topic).

    * ``show``: return the watermark (XCom) and log it;
    * ``set``: set ``last_row`` (every row up to it counts as published; the next run starts after it);
    * ``reset``: delete the Variable, so the next run publishes every row again;
    * ``rebuild``: scan the topic for the highest ``sheets.row`` header of this spreadsheet and tab
      and set the watermark to it (after losing or corrupting the Variable).

    :param action: one of ``show``, ``set``, ``reset``, ``rebuild``. Templated.
    :param spreadsheet_id: the spreadsheet id. Templated.
    :param topic: the topic the rows go to. Templated.
    :param sheet_name: the tab (default: the first). Templated.
    :param watermark_key: the Variable; default derived like the transfer operator's. Templated.
    :param last_row: for ``set``. Templated.
    :param impersonation_chain: service account(s) to impersonate when describing the tab, as
        for the transfer operator. Templated.
    """

    template_fields: Sequence[str] = (
        "action",
        "spreadsheet_id",
        "topic",
        "sheet_name",
        "watermark_key",
        "last_row",
        "gcp_conn_id",
        "kafka_config_id",
        "api_endpoint",
        "impersonation_chain",
    )

    def __init__(
        self,
        *,
        action: str,
        spreadsheet_id: str,
        topic: str,
        sheet_name: str | None = None,
        watermark_key: str | None = None,
        last_row: int | str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        kafka_config_id: str = "kafka_default",
        api_endpoint: str | None = None,
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.action = action
        self.spreadsheet_id = spreadsheet_id
        self.topic = topic
        self.sheet_name = sheet_name
        self.watermark_key = watermark_key
        self.last_row = last_row
        self.gcp_conn_id = gcp_conn_id
        self.kafka_config_id = kafka_config_id
        self.api_endpoint = api_endpoint
        self.impersonation_chain = impersonation_chain

    def execute(self, context: Context) -> dict[str, Any]:
        as_choice("action", self.action, ACTIONS)
        connection = SheetsConnection(self.gcp_conn_id, self.api_endpoint, self.impersonation_chain)
        info = accel.reader(connection).describe(self.spreadsheet_id, self.sheet_name or None)
        key = self.watermark_key or default_watermark_key(self.spreadsheet_id, info.sheet_id, self.topic)
        before = WatermarkStore(key).get()
        result: dict[str, Any] = {
            "watermark_key": key,
            "action": self.action,
            "before": before.last_row if before else None,
        }
        new_row: int | None = None  # what set or rebuild moves the watermark to
        if self.action == "set":
            if self.last_row in (None, "", "None"):
                raise SheetsConfigError("action 'set' needs last_row")
            row = as_int("last_row", self.last_row, minimum=1)
            if row > info.row_count:
                raise WatermarkError(f"last_row {row} is beyond tab {info.title!r}'s {info.row_count} rows")
            new_row = row
        elif self.action == "reset":
            reset_watermark(key)
        elif self.action == "rebuild":
            config = client_config(self.kafka_config_id)
            highest, scanned = highest_published_row(config, self.topic, self.spreadsheet_id, info.sheet_id)
            result["records_scanned"] = scanned
            if highest is None:
                raise WatermarkError(
                    f"no record of spreadsheet {self.spreadsheet_id!r} tab gid {info.sheet_id} in topic "
                    f"{self.topic!r} ({scanned} records scanned); nothing to rebuild from. Use action 'reset' to "
                    f"publish everything again."
                )
            new_row = highest
        if new_row is not None:
            set_watermark(
                key,
                new_row,
                spreadsheet_id=self.spreadsheet_id,
                sheet_id=info.sheet_id,
                sheet_name=info.title,
                topic=self.topic,
            )
        after = WatermarkStore(key).get()
        result["after"] = after.last_row if after else None
        self.log.info("Watermark %r: %s (last_row %s -> %s).", key, self.action, result["before"], result["after"])
        return result
