"""Records arriving in the responses topic → a DAG run: an AssetWatcher on the topic (the triggerer polls it)."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.apache.kafka.triggers.await_message import AwaitMessageTrigger
from airflow.sdk import DAG, Asset, AssetWatcher, task

#: the topic watched: the example DAG's default (the Variable sheets_topic is read only by tasks)
TOPIC = "form-responses"

DOC = f"""
### Records in `{TOPIC}` → a DAG run (AssetWatcher)

The triggerer runs the kafka provider's `AwaitMessageTrigger` on the topic with the consumer settings
of the connection `kafka_watch` (type *Apache Kafka*; its extra needs `bootstrap.servers` and a
`group.id`, e.g. `{{"bootstrap.servers": "broker:9092", "group.id": "sheets_watch_topic",
"auto.offset.reset": "latest"}}`). Each new response's record (`sheets.change: insert`, see
`airflow_provider_sheets.transfers.downstream.new_response`) becomes an event of the asset
`{TOPIC}-watch`, which schedules this DAG; its task sees the record's row, partition and offset.

Pick this over `sheets_new_responses` (scheduled on the operator's own asset events) when records
come from producers other than an Airflow run, e.g. a Kafka Connect speed layer, or when a run per
record matters more than a run per batch; it costs a consumer polling in the triggerer all the time.
"""

watched = Asset(
    f"{TOPIC}-watch",
    watchers=[
        AssetWatcher(
            name=f"{TOPIC}-new-responses",
            trigger=AwaitMessageTrigger(
                topics=[TOPIC],
                apply_function="airflow_provider_sheets.transfers.downstream.new_response",
                kafka_config_id="kafka_watch",
                poll_interval=1,
            ),
        )
    ],
)

with DAG(
    dag_id="sheets_watch_topic",
    description=f"A run for each new response record in {TOPIC}",
    doc_md=DOC,
    schedule=[watched],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["sheets", "kafka", "forms", "assets"],
) as dag:

    @task
    def note_new_response(triggering_asset_events=None) -> list[dict]:
        """The records that woke this run (a run may gather several events)."""
        return [
            event.extra.get("payload", event.extra)
            for events in (triggering_asset_events or {}).values()
            for event in events
        ]

    note_new_response()
