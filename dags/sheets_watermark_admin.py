"""Show, set, reset or rebuild a Sheets → Kafka watermark from the Airflow UI's trigger form."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_provider_sheets.operators.watermark import SheetsWatermarkOperator

with DAG(
    dag_id="sheets_watermark_admin",
    description="Manage the watermark of a Sheets -> Kafka transfer",
    doc_md="""
### Watermark admin

Trigger with the form: **show** logs the watermark; **set** makes every row up to *Last row*
count as published; **reset** deletes it (the next run republishes everything); **rebuild**
scans the topic for the highest `sheets.row` header of this spreadsheet and tab and sets the
watermark to it. Spreadsheet, tab and topic default to the `sheets_*` Variables.
""",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["sheets", "kafka", "admin"],
    render_template_as_native_obj=True,
    params={
        "action": Param("show", enum=["show", "set", "reset", "rebuild"], title="Action"),
        "last_row": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Last row (for set)",
            description="Every row up to this one counts as published (1 = only the header).",
        ),
        "spreadsheet_id": Param("", type="string", title="Spreadsheet id (empty: Variable sheets_spreadsheet_id)"),
        "sheet_name": Param("", type="string", title="Tab (empty: Variable sheets_sheet_name)"),
        "topic": Param("", type="string", title="Topic (empty: Variable sheets_topic)"),
    },
) as dag:
    SheetsWatermarkOperator(
        task_id="manage_watermark",
        action="{{ params.action }}",
        last_row="{{ params.last_row }}",
        spreadsheet_id="{{ params.spreadsheet_id or var.value.sheets_spreadsheet_id }}",
        sheet_name="{{ params.sheet_name or var.value.get('sheets_sheet_name', 'Form Responses 1') }}",
        topic="{{ params.topic or var.value.get('sheets_topic', 'form-responses') }}",
        api_endpoint="{{ var.value.get('sheets_api_endpoint', '') }}",
    )
