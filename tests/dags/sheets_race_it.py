"""Two DAGs publishing the same tab to the same topic (one watermark): the lease's real-Airflow test.

The sheet and topic come from the run's conf (``spreadsheet_id``, ``topic``), the Sheets endpoint
from the Variable ``sheets_api_endpoint``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

for _dag_id in ("sheets_race_a", "sheets_race_b"):
    with DAG(
        dag_id=_dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        default_args={"retries": 0},
        tags=["sheets", "test"],
    ) as dag:
        SheetToKafkaOperator(
            task_id="publish",
            spreadsheet_id="{{ dag_run.conf['spreadsheet_id'] }}",
            topic="{{ dag_run.conf['topic'] }}",
            api_endpoint="{{ var.value.get('sheets_api_endpoint', '') }}",
            page_size=100,
            lease_settle=1,
            lease_wait=120,
        )
    globals()[_dag_id] = dag
