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
