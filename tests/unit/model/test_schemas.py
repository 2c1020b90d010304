"""The registry schemas of a tab (pure): Avro names, field types, JSON Schema properties, changes in words."""

from __future__ import annotations

import fastavro
import jsonschema
import pytest

from airflow_provider_sheets.model.schemas import (
    avro_name,
    avro_names,
    avro_schema,
    json_property,
    json_schema,
    schema_changes,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Timestamp", "Timestamp"),
        ("Your name", "Your_name"),
        ("Rating (1-5)", "Rating_1_5"),
        ("  Email Address  ", "Email_Address"),
        ("2nd choice", "_2nd_choice"),
        ("점수", "column_A"),
        ("Café?", "Caf"),
        ("", "column_A"),
        ("a__b", "a__b"),
    ],
)
def test_an_avro_name_keeps_letters_digits_and_underscores(header, expected):
    assert avro_name(header, "column_A") == expected


def test_avro_names_are_unique_and_stable_left_to_right():
    assert avro_names(["Name", "Name?", "이름", "점수", "Name_2"]) == [
        "Name",
        "Name_2",
        "column_C",
        "column_D",
        "Name_2_2",
    ]
    # a question added at the right leaves the names before it as they were
    assert avro_names(["Name", "Name?", "New"])[:2] == avro_names(["Name", "Name?"])


@pytest.mark.parametrize(
    ("kind", "avro", "json_type"),
    [
        (
            "DATE_TIME",
            {"type": "long", "logicalType": "timestamp-millis"},
            {"type": ["string", "null"], "format": "date-time"},
        ),
        ("DATE", {"type": "int", "logicalType": "date"}, {"type": ["string", "null"], "format": "date"}),
        ("TIME", {"type": "int", "logicalType": "time-millis"}, {"type": ["string", "null"], "format": "time"}),
        ("NUMBER", "double", {"type": ["number", "null"]}),
        ("PERCENT", "double", {"type": ["number", "null"]}),
        ("CURRENCY", "double", {"type": ["number", "null"]}),
        ("SCIENTIFIC", "double", {"type": ["number", "null"]}),
        ("BOOLEAN", "boolean", {"type": ["boolean", "null"]}),
        ("TEXT", "string", {"type": ["string", "null"]}),
        (None, "string", {"type": ["string", "null"]}),
    ],
)
def test_each_column_kind_has_its_types(kind, avro, json_type):
    schema = avro_schema(["Q"], [kind], "Tab")
    assert schema["fields"] == [{"name": "Q", "type": ["null", avro], "default": None, "doc": "Q"}]
    assert json_property(kind, "Q") == json_type


def test_the_avro_schema_parses_and_takes_every_field_null_and_typed_values():
    """fastavro (the serializer's own library) accepts the schema, a row of nulls, and the typed cells."""
    schema = fastavro.parse_schema(
        avro_schema(
            ["When", "Score", "Ok", "Day", "At", "Text"],
            ["DATE_TIME", "NUMBER", "BOOLEAN", "DATE", "TIME"],
            "Form Responses 1",
        )
    )
    assert schema["name"] == "sheets.Form_Responses_1"
    assert fastavro.validation.validate(dict.fromkeys(["When", "Score", "Ok", "Day", "At", "Text"]), schema)
    row = {"When": 1762333503000, "Score": 4.0, "Ok": True, "Day": 20397, "At": 34200000, "Text": "hi"}
    assert fastavro.validation.validate(row, schema)


def test_the_json_schema_is_closed_and_validates_typed_rows():
    schema = json_schema(["When", "Score", "점수"], ["DATE_TIME", "NUMBER"], "Tab")
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate({"When": "2026-11-05T09:05:03+00:00", "Score": 4, "점수": None}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"When": None, "Score": "four", "점수": None}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"Other": 1}, schema)


@pytest.mark.parametrize(
    ("fmt", "build"),
    [("avro", avro_schema), ("json_schema", json_schema)],
)
def test_schema_changes_say_which_field_and_how(fmt, build):
    old = build(["Name", "Score", "Gone"], [None, "NUMBER", None], "Tab")
    new = build(["Name", "Score", "Added"], [None, "TEXT", "DATE"], "Tab")
    changes = schema_changes(fmt, old, new)
    number = "double" if fmt == "avro" else "number"
    assert changes == [
        f"field 'Score' changed from {number} to string",
        "field 'Gone' is gone (a question renamed or removed)",
        "field 'Added' is new (date)",
    ]
    assert schema_changes(fmt, old, old) == []
