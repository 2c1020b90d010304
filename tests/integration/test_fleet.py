"""
The fleet DAG (``dags/sheets_fleet.py``) through ``dag.test()`` on a migrated metadata DB, the real
Sheets client and the broker: a catalogue over two spreadsheets with a ``"*"`` entry (a hidden tab
and a chart sheet among the tabs), a non-ASCII tab, and an entry that fails on its own.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.helpers import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


def _fleet_dag():
    import os

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    return bag.get_dag("sheets_fleet")


def test_every_tab_of_the_catalogue_once_each_in_its_topic(connections, sheets_server, broker, monkeypatch):
    s1, s2 = f"fleet-a-{uuid.uuid4().hex[:6]}", f"fleet-b-{uuid.uuid4().hex[:6]}"
    header = ["Timestamp", "Name", "Rating"]
    sheets_server.create_spreadsheet(
        s1,
        {
            "Form Responses 1": [header, ["11/5/2026 9:00:00", "Ann", 4], ["11/5/2026 9:01:00", "Bob", 5]],
            "Form Responses 2": [header, ["11/5/2026 9:02:00", "Cem", 3]],
        },
    )
    sheets_server.add_sheet(s1, "Old", [header, ["11/1/2026 9:00:00", "Old", 1]], hidden=True)
    sheets_server.add_sheet(s1, "Chart", sheet_type="OBJECT")
    sheets_server.create_spreadsheet(s2, {"설문 응답": [header, ["11/5/2026 9:03:00", "Dae", 2]]})
    everything, korean, broken = (f"fleet-{name}-{uuid.uuid4().hex[:6]}" for name in ("all", "ko", "broken"))
    broker.create_topics([everything, korean, broken], partitions=1)
    endpoint = connections["api_endpoint"]
    catalogue = [
        {"spreadsheet_id": s1, "sheet_name": "*", "topic": everything, "api_endpoint": endpoint, "typed_values": False},
        {
            "spreadsheet_id": s2,
            "sheet_name": "설문 응답",
            "topic": korean,
            "api_endpoint": endpoint,
            "key_column": "Name",
        },
        {
            "spreadsheet_id": s1,
            "sheet_name": "Form Responses 1",
            "topic": broken,
            "api_endpoint": endpoint,
            "key_column": "Nope",
        },
    ]
    monkeypatch.setenv("AIRFLOW_VAR_SHEETS_CATALOGUE", json.dumps(catalogue, ensure_ascii=False))

    run = _fleet_dag().test()

    tis = {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances()}
    publish = sorted((ti for ti in tis.values() if ti.task_id == "publish"), key=lambda ti: ti.map_index)
    assert [ti.rendered_map_index for ti in publish] == [
        f"Form Responses 1 → {everything}",
        f"Form Responses 2 → {everything}",
        f"설문 응답 → {korean}",
        f"Form Responses 1 → {broken}",
    ]
    assert [str(ti.state) for ti in publish] == ["success", "success", "success", "failed"], "a failed tab fails alone"
    messages = consume_all(broker.bootstrap_servers, everything, expected=3)
    assert sorted((m.headers["sheets.sheet_name"], m.value["Name"]) for m in messages) == [
        ("Form Responses 1", "Ann"),
        ("Form Responses 1", "Bob"),
        ("Form Responses 2", "Cem"),
    ], "every visible grid tab, once; not the hidden one"
    (dae,) = consume_all(broker.bootstrap_servers, korean, expected=1)
    assert (dae.key, dae.value["Rating"]) == ("Dae", 2), "typed by default; keyed by its key column"
    assert consume_all(broker.bootstrap_servers, broken, idle=1.0) == []


def test_an_unknown_key_in_the_catalogue_stops_the_run_before_anything_is_published(connections, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_VAR_SHEETS_CATALOGUE", json.dumps([{"spreadsheet_id": "x", "topic": "t", "keycolumn": "E"}])
    )
    run = _fleet_dag().test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert str(tis["resolve_catalogue"].state) == "failed"
