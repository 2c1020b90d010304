"""
Extra links on the operator's and the sensor's task instances: **Google Sheet** (the tab, by its
gid) and **Topic** (the topic in a Kafka UI, from the provider's ``[sheets_to_kafka]
kafka_ui_topic_url`` setting, e.g. ``http://kafka-ui:8080/ui/clusters/local/all-topics/{topic}``;
no link when it is not set). Both read what the task recorded under the XCom key ``sheets_link``
(its spreadsheet, tab and topic), so a link works for each attempt as it ran, and building it makes
no request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

from airflow_provider_sheets.settings import CONFIG_SECTION

#: the XCom key a task's link values are kept under
XCOM_KEY = "sheets_link"
#: the Kafka UI option of the provider's config section
KAFKA_UI_OPTION = "kafka_ui_topic_url"


def sheet_url(spreadsheet_id: str, sheet_id: int | None = None) -> str:
    """The tab's URL in Google Sheets (the spreadsheet's when its gid is not known)."""
    url = f"https://docs.google.com/spreadsheets/d/{quote(spreadsheet_id, safe='')}/edit"
    return url if sheet_id is None else f"{url}#gid={sheet_id}"


def topic_url(template: str, topic: str) -> str:
    """The topic's page in a Kafka UI: ``template`` with ``{topic}`` filled in (``""``: no UI set up)."""
    return template.replace("{topic}", quote(topic, safe="")) if template and topic else ""


def persist(context: Any, spreadsheet_id: str, sheet_id: int | None, topic: str | None) -> None:
    """Record what the links point at for this task instance (nothing without one, e.g. a bare poke)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is None:
        return
    ti.xcom_push(key=XCOM_KEY, value={"spreadsheet_id": spreadsheet_id, "sheet_id": sheet_id, "topic": topic})


def _recorded(ti_key: Any) -> dict[str, Any]:
    from airflow.sdk.execution_time.xcom import XCom

    value = XCom.get_value(key=XCOM_KEY, ti_key=ti_key)
    return value if isinstance(value, dict) else {}


class GoogleSheetLink(BaseOperatorLink):
    """The tab the task read, in Google Sheets."""

    name = "Google Sheet"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        recorded = _recorded(ti_key)
        if not recorded.get("spreadsheet_id"):
            return ""
        return sheet_url(recorded["spreadsheet_id"], recorded.get("sheet_id"))


class TopicLink(BaseOperatorLink):
    """The topic the task published to, in the Kafka UI of ``[sheets_to_kafka] kafka_ui_topic_url``."""

    name = "Topic"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.configuration import conf

        template = conf.get(CONFIG_SECTION, KAFKA_UI_OPTION, fallback="") or ""
        return topic_url(template, str(_recorded(ti_key).get("topic") or ""))
