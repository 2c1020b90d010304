"""Google Forms responses → Kafka, every 15 minutes, with a row watermark."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

DOC = """
### Google Forms responses → Kafka

Every 15 minutes, publishes the rows of the responses tab that arrived since the last run to a
Kafka topic: one JSON record per response (`{question title: answer}`, numbers, checkboxes and dates
typed whatever the sheet's locale), keyed by the sheet row
number, with `sheets.*` and `airflow.*` provenance headers. The position is kept in an Airflow
Variable (the *watermark*), moved only after Kafka acknowledged every record.

**Connections**

* `google_cloud_default` (type *Google Cloud*): a service-account key (`key_path` or
  `keyfile_dict` in the extra). Share the sheet with the account's `client_email` (Viewer).
* `kafka_default` (type *Apache Kafka*): extra = librdkafka config, at least
  `{"bootstrap.servers": "broker:9092"}` (plus `security.protocol`, `sasl.*` as your cluster needs).

**Variables**

* `sheets_spreadsheet_id` (required): the id in the sheet's URL, between `/d/` and `/edit`.
* `sheets_sheet_name` (default `Form Responses 1`): the responses tab.
* `sheets_topic` (default `form-responses`): the topic; create it before the first run.
* `sheets_api_endpoint` (optional): a private Sheets endpoint; leave unset for Google's.
* `sheets_value_format` (default `json`): `json`, `cloudevents`, `connect_json`, or `avro` /
  `json_schema` (these register the tab's schema in the `schema_registry_default` connection's
  Schema Registry, subject `<topic>-value`).
* `sheets_fingerprint_topic` (optional, e.g. `form-responses.fingerprints`, created with
  `cleanup.policy=compact`): where every run keeps the fingerprints of what it published. With it,
  *Reconcile* works and drift is reconciled automatically (see below); without it, drift stops the
  run until a person decides.

**Run it by hand** (Trigger DAG → the form): *Dry run*, *Full refresh*, *Start row*, *Max rows*,
*Reconcile* (re-read every row and publish what makes the topic match the sheet: changed rows, new
rows and a tombstone for each row gone, each saying `insert`, `update` or `delete` in the
`sheets.change` header).
A run without them behaves like a scheduled run. **Backfill** (`airflow backfill create --dag-id
sheets_to_kafka --from-date … --to-date …`): each run publishes the responses whose `Timestamp`
falls in its 15-minute data interval and leaves the live watermark alone.

**Drift.** Edits, a helper column and new questions never stop the DAG. Rows deleted (spam
removal) or inserted above the watermark do: with `sheets_fingerprint_topic` set, `on_drift` is
`reconcile`, because it is the one policy after which a consumer of the topic holds exactly the
sheet's rows with no one at the keyboard (`continue` would leave the moved rows' keys stale and the
removed ones in place; `republish` sends every row again); without fingerprints there is nothing to
reconcile with, so the run fails and says what to do.

The watermark Variable is named in the task log and in the task's XCom summary
(`sheets_to_kafka.<spreadsheet id>.gid<tab id>.<topic>`): delete it to republish everything.
"""

with DAG(
    dag_id="sheets_to_kafka",
    description="Publish new Google Forms responses from a sheet to Kafka",
    doc_md=DOC,
    # data intervals (not just trigger times), so that backfills have a window to select rows by
    schedule=CronDataIntervalTimetable("*/15 * * * *", timezone="UTC"),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True},
    tags=["sheets", "kafka", "forms"],
    render_template_as_native_obj=True,
    params={
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Read and map the rows and log a preview; publish nothing and leave the watermark alone.",
        ),
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description="Republish every row from the first data row; the watermark is set to the last row at the end.",
        ),
        "start_row": Param(
            None,
            type=["null", "integer"],
            minimum=2,
            title="Start row",
            description="Publish from this sheet row on (row 1 is the header). Empty: from the watermark.",
        ),
        "max_rows": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Max rows",
            description="Publish at most this many rows in this run. Empty: no cap.",
        ),
        "reconcile": Param(
            False,
            type="boolean",
            title="Reconcile",
            description=(
                "Re-read every row and publish only what makes the topic match the sheet: changed and new rows, "
                "and tombstones of deleted ones. Needs the Variable sheets_fingerprint_topic."
            ),
        ),
    },
) as dag:
    SheetToKafkaOperator(
        task_id="publish_new_responses",
        spreadsheet_id="{{ var.value.sheets_spreadsheet_id }}",
        sheet_name="{{ var.value.get('sheets_sheet_name', 'Form Responses 1') }}",
        topic="{{ var.value.get('sheets_topic', 'form-responses') }}",
        api_endpoint="{{ var.value.get('sheets_api_endpoint', '') }}",
        value_format="{{ var.value.get('sheets_value_format', 'json') }}",
        dry_run="{{ params.dry_run }}",
        full_refresh="{{ params.full_refresh }}",
        start_row="{{ params.start_row }}",
        max_rows="{{ params.max_rows }}",
        reconcile="{{ params.reconcile }}",
        fingerprint_topic="{{ var.value.get('sheets_fingerprint_topic', '') }}",
        on_drift="{{ 'reconcile' if var.value.get('sheets_fingerprint_topic', '') else 'fail' }}",
    )
