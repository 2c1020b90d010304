"""Google Forms responses → Kafka as soon as they arrive: a deferrable new-rows sensor, then the operator."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable

from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor
from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

SHEET = {
    "spreadsheet_id": "{{ var.value.sheets_spreadsheet_id }}",
    "sheet_name": "{{ var.value.get('sheets_sheet_name', 'Form Responses 1') }}",
    "topic": "{{ var.value.get('sheets_topic', 'form-responses') }}",
    "api_endpoint": "{{ var.value.get('sheets_api_endpoint', '') }}",
}

DOC = """
### Google Forms responses → Kafka, sensor first

Each hourly run waits (deferred in the triggerer, so no worker slot is held) until the responses
tab has rows beyond the watermark — one small Sheets request per minute whose size does not grow
with the sheet — and then publishes them with `SheetToKafkaOperator`. An hour without responses
ends *skipped*, not failed.

Same connections and Variables as `sheets_to_kafka` (`google_cloud_default`, `kafka_default`,
`sheets_spreadsheet_id`, `sheets_sheet_name`, `sheets_topic`), and the same watermark: run one of
the two DAGs for a tab, not both (if both run, the watermark lease keeps them from publishing the
same rows, but one of them waits for the other).
"""

with DAG(
    dag_id="sheets_to_kafka_sensor",
    description="Wait for new Google Forms responses, then publish them to Kafka",
    doc_md=DOC,
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True},
    tags=["sheets", "kafka", "forms"],
) as dag:
    wait = SheetNewRowsSensor(
        task_id="wait_for_new_responses",
        **SHEET,
        deferrable=True,
        poke_interval=60,
        timeout=55 * 60,
        soft_fail=True,
    )
    publish = SheetToKafkaOperator(task_id="publish_new_responses", **SHEET)
    wait >> publish
