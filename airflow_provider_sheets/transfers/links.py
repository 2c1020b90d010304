"""
Extra links on the operator's and the sensor's task instances: **Google Sheet** (the tab, by its
gid) and **Topic** (the topic in a Kafka UI, from the provider's ``[sheets_to_kafka]
kafka_ui_topic_url`` setting, e.g. ``http://kafka-ui:8080/ui/clusters/local/all-topics/{topic}``;
no link when it is not set).

When an attempt ends, Airflow's task runner builds each link in the task's process and keeps it as
an XCom, which the UI reads; the links are built from what the running task recorded on itself
(:func:`record`: its spreadsheet, tab and topic), so a link shows each attempt as it ran, a failed
one too, and building it makes no request. A task that resumes in another process (a deferred
sensor) also keeps that record as the XCom ``sheets_link`` (:func:`persist`), which the links fall
back on.
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


#: the attribute of the running task that holds what its links point at
ATTRIBUTE = "sheets_link_target"


def record(task: Any, spreadsheet_id: str, sheet_id: int | None, topic: str | None) -> dict[str, Any]:
    """Record on the running ``task`` what its links point at (the links of this attempt are built from it)."""
    target = {"spreadsheet_id": spreadsheet_id, "sheet_id": sheet_id, "topic": topic}
    setattr(task, ATTRIBUTE, target)
    return target


def persist(context: Any, task: Any, spreadsheet_id: str, sheet_id: int | None, topic: str | None) -> None:
    """:func:`record`, and keep it as an XCom for a process that resumes the task (nothing without a task instance)."""
    target = record(task, spreadsheet_id, sheet_id, topic)
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        ti.xcom_push(key=XCOM_KEY, value=target)


def _recorded(operator: Any, ti_key: Any) -> dict[str, Any]:
    recorded = getattr(operator, ATTRIBUTE, None)
    if isinstance(recorded, dict):
        return recorded
    from airflow.sdk.execution_time.xcom import XCom

    value = XCom.get_value(key=XCOM_KEY, ti_key=ti_key)
    return value if isinstance(value, dict) else {}


class GoogleSheetLink(BaseOperatorLink):
    """The tab the task read, in Google Sheets."""

    name = "Google Sheet"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        recorded = _recorded(operator, ti_key)
        if not recorded.get("spreadsheet_id"):
            return ""
        return sheet_url(recorded["spreadsheet_id"], recorded.get("sheet_id"))


class TopicLink(BaseOperatorLink):
    """The topic the task published to, in the Kafka UI of ``[sheets_to_kafka] kafka_ui_topic_url``."""

    name = "Topic"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.configuration import conf

        template = conf.get(CONFIG_SECTION, KAFKA_UI_OPTION, fallback="") or ""
        return topic_url(template, str(_recorded(operator, ti_key).get("topic") or ""))
