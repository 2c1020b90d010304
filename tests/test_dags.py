"""Every file in dags/ imports with no errors, and the example DAG is what its docs promise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_every_dag_file_imports(dagbag):
    assert dagbag.import_errors == {}
    files = sorted(p.name for p in (REPO / "dags").glob("*.py"))
    assert files, "dags/ holds no DAG file"
    loaded = sorted({dag.fileloc.rsplit("/", 1)[-1] for dag in dagbag.dags.values()})
    assert loaded == files


def test_scheduled_dag_settings(dagbag):
    dag = dagbag.get_dag("sheets_to_kafka")
    from airflow.sdk import CronDataIntervalTimetable

    # a data-interval timetable: every run, also in a backfill, covers a 15-minute window
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "*/15 * * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    for needed in ("google_cloud_default", "kafka_default", "sheets_spreadsheet_id"):
        assert needed in dag.doc_md


def test_provider_is_registered():
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "airflow-provider-sheets" in result.stdout


def _airflow_json(*args: str) -> object:
    import json

    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args, "--output", "json"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout[result.stdout.index("[") :])


def test_the_provider_declares_its_connection_type_links_and_config():
    """``airflow providers get --full`` and ``airflow providers links`` show what the provider adds."""
    (info,) = _airflow_json("providers", "get", "airflow-provider-sheets", "--full")
    assert {
        "connection-type": "schema_registry",
        "hook-class-name": "airflow_provider_sheets.hooks.registry.SchemaRegistryHook",
    } in info["connection-types"]
    assert info["extra-links"] == [
        "airflow_provider_sheets.transfers.links.GoogleSheetLink",
        "airflow_provider_sheets.transfers.links.TopicLink",
    ]
    assert "kafka_ui_topic_url" in info["config"]["sheets_to_kafka"]["options"]
    links = _airflow_json("providers", "links")
    names = {row["extra_link_class_name"] for row in links}
    assert {
        "airflow_provider_sheets.transfers.links.GoogleSheetLink",
        "airflow_provider_sheets.transfers.links.TopicLink",
    } <= names


def test_the_links_are_the_tab_and_the_topic_in_the_kafka_ui():
    from airflow_provider_sheets.transfers.links import sheet_url, topic_url

    assert sheet_url("1AbC", 123) == "https://docs.google.com/spreadsheets/d/1AbC/edit#gid=123"
    assert sheet_url("1AbC") == "https://docs.google.com/spreadsheets/d/1AbC/edit"
    template = "http://kafka-ui:8080/ui/clusters/local/all-topics/{topic}"
    assert topic_url(template, "form responses") == "http://kafka-ui:8080/ui/clusters/local/all-topics/form%20responses"
    assert topic_url("", "form-responses") == "", "no Kafka UI configured: no link"
