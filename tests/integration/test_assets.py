"""
The operator's default outlet on a real migrated metadata DB: one asset event per run that published
rows, with the rows in its ``extra``; none for a run with nothing new or a dry run.
"""

from __future__ import annotations

import uuid

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from tests.helpers import run_operator

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


def _events(uri: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.uri == uri)
        ).all()
        return [dict(event.extra or {}) for event in sorted(rows, key=lambda event: event.id)]


def test_one_asset_event_per_publishing_run_and_none_for_an_empty_or_dry_run(connections, sheets_server, topic):
    sid = f"assets-{uuid.uuid4().hex[:8]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER, *forms_rows(4)]})
    kwargs = {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"]}
    server = connections["bootstrap.servers"].split(",")[0]
    uri = f"kafka://{server}/{topic}"

    assert run_operator(**kwargs).state == "success"
    assert run_operator(**kwargs).state == "success"  # nothing new
    assert run_operator(**kwargs, dry_run=True).state == "success"
    sheets_server.append_rows(sid, FORMS_TAB, forms_rows(2, start=4))
    assert run_operator(**kwargs).state == "success"

    events = _events(uri)
    assert events == [
        {
            "spreadsheet_id": sid,
            "sheet_id": 0,
            "sheet_name": FORMS_TAB,
            "first_row": 2,
            "last_row": 5,
            "rows_published": 4,
            "rows_deleted": 0,
            "watermark_after": 5,
            "value_format": "json",
            "run_type": "manual",
            "mode": "incremental",
            "backfill": False,
        },
        {
            "spreadsheet_id": sid,
            "sheet_id": 0,
            "sheet_name": FORMS_TAB,
            "first_row": 6,
            "last_row": 7,
            "rows_published": 2,
            "rows_deleted": 0,
            "watermark_after": 7,
            "value_format": "json",
            "run_type": "manual",
            "mode": "incremental",
            "backfill": False,
        },
    ]


def test_explicit_outlets_replace_the_default_one(connections, sheets_server, topic):
    from airflow.sdk import Asset, AssetAlias

    from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

    mine = Asset(f"file:///tmp/{uuid.uuid4().hex[:8]}.marker")
    assert SheetToKafkaOperator(task_id="t", spreadsheet_id="s", topic=topic, outlets=[mine]).outlets == [mine]
    default = SheetToKafkaOperator(task_id="t", spreadsheet_id="s", topic=topic).outlets
    assert default == [AssetAlias("sheets-to-kafka/no-dag/t")]

    sid = f"assets-{uuid.uuid4().hex[:8]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER, *forms_rows(2)]})
    kwargs = {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"]}
    assert run_operator(**kwargs, outlets=[mine]).state == "success"
    server = connections["bootstrap.servers"].split(",")[0]
    assert _events(f"kafka://{server}/{topic}") == [], "no event for the topic when outlets are the user's"


@pytest.mark.parametrize("value_format", ["json", "connect_json"])
def test_a_downstream_reader_gets_exactly_the_rows_an_event_names(
    connections, sheets_server, broker, topic, value_format
):
    """read_published_rows: the event's rows of its spreadsheet and tab, once; the next read starts after them."""
    import uuid as _uuid

    from airflow_provider_sheets.transfers.assets import event_extra  # noqa: F401  (the extra's shape)
    from airflow_provider_sheets.transfers.downstream import read_published, read_published_rows
    from tests.helpers import run_operator

    sid = f"downstream-{_uuid.uuid4().hex[:8]}"
    sheets_server.create_spreadsheet(sid, {"Form Responses 1": [["Name", "Rating"], ["Ann", 4], ["Bob", 5]]})
    kwargs = {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"]}
    first = run_operator(**kwargs, value_format=value_format, typed_values=True).summary
    sheets_server.append_rows(sid, "Form Responses 1", [["Cem", 3]])
    second = run_operator(**kwargs, value_format=value_format, typed_values=True).summary
    uri = f"kafka://{broker.bootstrap_servers.split(',')[0]}/{topic}"
    group = f"downstream-{_uuid.uuid4().hex[:6]}"
    extra = {name: first[name] for name in ("spreadsheet_id", "sheet_id", "first_row", "last_row", "rows_published")}
    assert read_published_rows(uri, {**extra, "value_format": value_format}, group_id=group, timeout=60) == [
        {"Name": "Ann", "Rating": 4 if value_format == "json" else 4.0},
        {"Name": "Bob", "Rating": 5 if value_format == "json" else 5.0},
    ]
    extra = {name: second[name] for name in ("spreadsheet_id", "sheet_id", "first_row", "last_row", "rows_published")}
    assert read_published_rows(uri, {**extra, "value_format": value_format}, group_id=group, timeout=60) == [
        {"Name": "Cem", "Rating": 3 if value_format == "json" else 3.0}
    ]
    # two events of one topic in one call (a downstream run woken by two runs): each gets its own rows
    events = []
    for name, rating in (("Dan", 2), ("Eve", 1)):
        sheets_server.append_rows(sid, "Form Responses 1", [[name, rating]])
        summary = run_operator(**kwargs, value_format=value_format, typed_values=True).summary
        events.append((uri, {**{n: summary[n] for n in extra}, "value_format": value_format}))
    number = int if value_format == "json" else float
    assert read_published(events, group_id=group, timeout=60) == [
        [{"Name": "Dan", "Rating": number(2)}],
        [{"Name": "Eve", "Rating": number(1)}],
    ]
    assert read_published(events, group_id=f"{group}-new", timeout=60) == [
        [{"Name": "Dan", "Rating": number(2)}],
        [{"Name": "Eve", "Rating": number(1)}],
    ], "a new group reads the topic from its start"
