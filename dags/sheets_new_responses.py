"""New responses in Kafka → a downstream DAG: scheduled on the publishing task's asset events."""

from __future__ import annotations

import logging
from datetime import datetime

from airflow.sdk import DAG, AssetAlias, task

from airflow_provider_sheets.transfers.downstream import published_events, read_published

log = logging.getLogger(__name__)

DOC = """
### New responses → a downstream DAG (asset-scheduled)

Runs after every run of `sheets_to_kafka` that **published rows**, and only then: the publishing
task's default outlet is the topic's asset (`kafka://<first bootstrap server>/<topic>`), reached
through the alias `sheets-to-kafka/sheets_to_kafka/publish_new_responses`, which gets an event only
when rows were published (an empty or dry run emits none).

The task reads each triggering event's `extra` (`spreadsheet_id`, `sheet_id`, `first_row`,
`last_row`, `rows_published`, …) and consumes **exactly those rows** from the topic, identified by
their `sheets.*` headers, with its own consumer group (`sheets_new_responses`), committing after it
has them all; then it counts the answers to one question, per spreadsheet. Replace that with your own processing.

**Asset or AssetWatcher?** This DAG rides on the operator's events: one run per publishing batch,
nothing polled, the batch's row range in hand, but only for rows that an Airflow run published.
`sheets_watch_topic` instead watches the topic itself with an `AssetWatcher` (the kafka provider's
`AwaitMessageTrigger` in the triggerer): it reacts to records from any producer (a Kafka Connect
speed layer too), one event per matching record, at the cost of a consumer polling in the triggerer
all the time.
"""

with DAG(
    dag_id="sheets_new_responses",
    description="Process the responses each sheets_to_kafka run published",
    doc_md=DOC,
    schedule=[AssetAlias("sheets-to-kafka/sheets_to_kafka/publish_new_responses")],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["sheets", "kafka", "forms", "assets"],
) as dag:

    @task
    def count_answers(triggering_asset_events=None) -> dict:
        """Consume the rows the triggering runs published and count the answers to one question, per spreadsheet."""
        events = published_events(triggering_asset_events)
        answers: dict[str, dict[str, int]] = {}
        rows = 0
        for (uri, extra), values in zip(events, read_published(events, group_id="sheets_new_responses"), strict=True):
            log.info("Read rows %s-%s of %r from %s.", extra["first_row"], extra["last_row"], extra["sheet_name"], uri)
            counts = answers.setdefault(str(extra["spreadsheet_id"]), {})
            for value in values:
                rows += 1
                answer = str(value.get("How did you hear about us?") or "(no answer)")
                counts[answer] = counts.get(answer, 0) + 1
        return {"rows": rows, "how_did_you_hear_about_us": answers}

    count_answers()
