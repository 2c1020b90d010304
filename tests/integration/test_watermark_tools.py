"""Watermark tools through the admin DAG's operator: show, set, reset, rebuild from the topic."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from tests.helpers import consume_all, get_variable, run_dag, run_operator

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


def _admin(action: str, **kwargs):
    from airflow.sdk import DAG

    from airflow_provider_sheets.operators.watermark import SheetsWatermarkOperator

    with DAG(dag_id="sheets_watermark_admin", schedule=None, start_date=datetime(2025, 1, 1)) as dag:
        SheetsWatermarkOperator(task_id="manage_watermark", action=action, **kwargs)
    return run_dag(dag, "manage_watermark")


def test_set_reset_and_rebuild(connections, sheets_server, broker, topic):
    sid = f"sheet-{uuid.uuid4().hex[:12]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER, *forms_rows(9)]})
    common = {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"]}
    assert run_operator(**common).state == "success"
    key = f"sheets_to_kafka.{sid}.gid0.{topic}"
    assert get_variable(key)["last_row"] == 10

    shown = _admin("show", **common)
    assert (shown.state, shown.summary["after"]) == ("success", 10)

    assert _admin("set", last_row=4, **common).summary["after"] == 4
    sheets_server.append_rows(sid, FORMS_TAB, forms_rows(1, start=9))
    resumed = run_operator(**common)
    assert (resumed.summary["first_row"], resumed.summary["last_row"]) == (5, 11)

    assert _admin("reset", **common).summary["after"] is None
    assert get_variable(key) is None

    rebuilt = _admin("rebuild", **common)
    assert rebuilt.state == "success"
    assert rebuilt.summary["after"] == 11, "the highest sheets.row in the topic"
    assert rebuilt.summary["records_scanned"] == len(consume_all(broker.bootstrap_servers, topic))
    quiet = run_operator(**common)
    assert quiet.summary["rows_published"] == 0


def test_rebuild_with_nothing_in_the_topic_fails_clearly(connections, sheets_server, topic, capfd):
    sid = f"sheet-{uuid.uuid4().hex[:12]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER, *forms_rows(2)]})
    capfd.readouterr()
    result = _admin("rebuild", spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"])
    assert result.state == "failed"
    assert "nothing to rebuild from" in "".join(capfd.readouterr())
