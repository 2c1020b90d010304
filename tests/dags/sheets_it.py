"""DAG ids that the integration tests run with ``dag.test()``.

``dag.test()`` needs the DAG serialized from the dags folder but runs the tasks of the DAG
object it is called on, so each test builds a DAG with the same ids and its own arguments.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

with DAG(dag_id="sheets_it", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    SheetToKafkaOperator(task_id="publish", spreadsheet_id="placeholder", topic="placeholder")
