"""A deferrable sensor waiting for new rows, then the operator publishing them (real triggerer test).

The sheet and topic come from the run's conf (``spreadsheet_id``, ``topic``), the Sheets endpoint
from the Variable ``sheets_api_endpoint``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor
from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

SHEET = "{{ dag_run.conf['spreadsheet_id'] }}"
TOPIC = "{{ dag_run.conf['topic'] }}"
ENDPOINT = "{{ var.value.get('sheets_api_endpoint', '') }}"

with DAG(
    dag_id="sheets_defer_it",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 0},
    tags=["sheets", "test"],
) as dag:
    wait = SheetNewRowsSensor(
        task_id="wait_new_rows",
        spreadsheet_id=SHEET,
        topic=TOPIC,
        api_endpoint=ENDPOINT,
        min_rows=3,
        poke_interval=1,
        timeout=180,
        deferrable=True,
    )
    publish = SheetToKafkaOperator(
        task_id="publish",
        spreadsheet_id=SHEET,
        topic=TOPIC,
        api_endpoint=ENDPOINT,
        lease_settle=0.2,
    )
    wait >> publish
