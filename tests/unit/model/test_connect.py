"""The Kafka Connect JsonConverter envelope (pure): field schemas and payload values by column type."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_sheets.model.connect import ConnectTypes, connect_cell, envelope, field_schema, struct_schema

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("kind", "schema"),
    [
        ("DATE_TIME", {"type": "int64", "name": "org.apache.kafka.connect.data.Timestamp", "version": 1}),
        ("DATE", {"type": "int32", "name": "org.apache.kafka.connect.data.Date", "version": 1}),
        ("TIME", {"type": "int32", "name": "org.apache.kafka.connect.data.Time", "version": 1}),
        ("NUMBER", {"type": "double"}),
        ("PERCENT", {"type": "double"}),
        ("CURRENCY", {"type": "double"}),
        ("BOOLEAN", {"type": "boolean"}),
        ("TEXT", {"type": "string"}),
        (None, {"type": "string"}),
    ],
)
def test_field_schema(kind, schema):
    assert field_schema("q", kind) == {"field": "q", "optional": True, **schema}


@pytest.mark.parametrize(
    ("cell", "kind", "zone", "value", "misfit"),
    [
        pytest.param(46331.37850694444, "DATE_TIME", UTC, 1793869503000, False, id="timestamp-ms"),
        pytest.param(46331.37850694444, "DATE_TIME", BERLIN, 1793865903000, False, id="timestamp-in-berlin"),
        pytest.param(46331, "DATE", UTC, 20762, False, id="date-days-since-1970"),
        pytest.param(25569, "DATE", UTC, 0, False, id="the-unix-epoch"),
        pytest.param(0.5, "TIME", UTC, 43_200_000, False, id="time-ms-of-the-day"),
        pytest.param(4, "NUMBER", UTC, 4.0, False, id="double"),
        pytest.param("n/a", "NUMBER", UTC, None, True, id="text-in-a-number-column"),
        pytest.param(True, "BOOLEAN", UTC, True, False, id="boolean"),
        pytest.param("yes", "BOOLEAN", UTC, None, True, id="text-in-a-checkbox-column"),
        pytest.param(7, None, UTC, "7", False, id="a-number-in-a-text-column"),
        pytest.param(2.5, "TEXT", UTC, "2.5", False, id="a-float-in-a-text-column"),
        pytest.param(False, None, UTC, "FALSE", False, id="a-checkbox-in-a-text-column"),
        pytest.param("", "NUMBER", UTC, None, False, id="empty"),
        pytest.param("soon", "DATE_TIME", UTC, None, True, id="text-in-a-date-time-column"),
    ],
)
def test_connect_cell(cell, kind, zone, value, misfit):
    assert connect_cell(cell, kind, zone) == (value, misfit)
    assert type(connect_cell(cell, kind, zone)[0]) is type(value)


def test_the_envelope_wraps_the_payload():
    schema = struct_schema(["a", "b"], ["NUMBER"], "Tab")
    before, after = envelope(schema)
    record = json.loads(before + b'{"a":1.0,"b":"x"}' + after)
    assert record == {
        "schema": {
            "type": "struct",
            "fields": [
                {"field": "a", "type": "double", "optional": True},
                {"field": "b", "type": "string", "optional": True},
            ],
            "optional": False,
            "name": "Tab",
        },
        "payload": {"a": 1.0, "b": "x"},
    }


def test_a_row_counts_what_does_not_fit():
    types = ConnectTypes(("DATE", "NUMBER"), UTC)
    assert types.row([25570, "lots", "extra"]) == ([1, None, "extra"], 1)
    assert types.narrowed(1).kinds == ("DATE",)


@pytest.mark.parametrize(
    "cells",
    [
        ["a", "b", "c", "d"],
        ["a", "", "c"],
        [46331.5, "Ann", 4, True],
        ["n/a", "Ann", "four", "yes"],
        [None, 5, 2.5, False, "extra"],
        [],
    ],
)
@pytest.mark.parametrize("kinds", [(None, None, None, None), ("DATE_TIME", None, "NUMBER", "BOOLEAN"), ("TEXT",)])
def test_a_row_is_its_cells_one_by_one(cells, kinds):
    """ConnectTypes.row (with its shortcuts for text) gives what connect_cell gives cell by cell."""
    from zoneinfo import ZoneInfo

    from airflow_provider_sheets.model.connect import ConnectTypes, connect_cell

    zone = ZoneInfo("Europe/Berlin")
    one_by_one = [connect_cell(cell, kinds[i] if i < len(kinds) else None, zone) for i, cell in enumerate(cells)]
    assert ConnectTypes(kinds, zone).row(cells) == ([value for value, _ in one_by_one], sum(m for _, m in one_by_one))
