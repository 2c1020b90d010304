"""Many forms → Kafka: one task per tab of a catalogue (an Airflow Variable), with dynamic task mapping."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, Variable, task

from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

DOC = """
### Many forms → Kafka (a catalogue, dynamic task mapping)

The Variable **`sheets_catalogue`** (JSON, or YAML) lists what to move:

```json
[
  {"spreadsheet_id": "1AbC…", "sheet_name": "Form Responses 1", "topic": "feedback"},
  {"spreadsheet_id": "1XyZ…", "sheet_name": "*", "topic": "signups", "value_format": "avro"},
  {"spreadsheet_id": "1XyZ…", "sheet_name": "2026-*", "topic": "archive", "key_column": "Email Address"}
]
```

`sheet_name` is a tab's title, a glob pattern, or `"*"` (every visible grid tab; hidden tabs and
chart sheets are left out unless named exactly); any operator argument of a tab may be set per entry
(`key_column`, `value_format`, `delivery`, `watermark_key`, …). The catalogue is checked as a whole:
unknown keys, a tab sent to a topic twice, or two tabs sharing a `watermark_key` stop the run
before anything is published, naming the entry.

`resolve_catalogue` reads each spreadsheet's tabs once, then `publish` runs once per tab
(`SheetToKafkaOperator.partial(...).expand_kwargs(...)`), each labelled `<tab> → <topic>` in the
grid and each with its own watermark (per spreadsheet, tab and topic): a failed tab fails only its
own task; the others go on. *Trigger DAG → only* runs one entry, `<spreadsheet id>/<tab>`.

Why a Variable: the catalogue is data that changes (a new form) without a deploy, it is edited in
the UI or with `airflow variables set`, and every worker sees the same one.
"""

with DAG(
    dag_id="sheets_fleet",
    description="Publish new responses of every tab in the catalogue (Variable sheets_catalogue)",
    doc_md=DOC,
    schedule=timedelta(minutes=15),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["sheets", "kafka", "forms", "fleet"],
    params={
        "only": Param(
            None,
            type=["null", "string"],
            title="Only",
            description="Run one entry of the catalogue: <spreadsheet id>/<tab title>. Empty: every tab.",
        ),
    },
) as dag:

    @task
    def resolve_catalogue(params=None) -> list[dict]:
        """Every tab the catalogue names, with its operator arguments (one spreadsheets.get per spreadsheet)."""
        from airflow_provider_sheets.hooks.sheets import SheetsReader
        from airflow_provider_sheets.pipeline.fleet import resolve

        def tabs_of(entry: dict) -> list:
            reader = SheetsReader(entry.get("gcp_conn_id", "google_cloud_default"), entry.get("api_endpoint"))
            return reader.tabs(entry["spreadsheet_id"])

        text = Variable.get("sheets_catalogue")
        return resolve(text, tabs_of, only=(params or {}).get("only"))

    SheetToKafkaOperator.partial(
        task_id="publish",
        map_index_template="{{ task.sheet_name }} → {{ task.topic }}",
    ).expand_kwargs(resolve_catalogue())
