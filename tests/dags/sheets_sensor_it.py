"""The DAG id that the sensor's integration tests run with ``dag.test()`` (see ``sheets_it.py``)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor

with DAG(dag_id="sheets_sensor_it", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    SheetNewRowsSensor(task_id="wait_rows", spreadsheet_id="placeholder", topic="placeholder")
