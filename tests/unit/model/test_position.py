"""The stored position (pure): parsing, the JSON round trip, the keys it is stored under."""

from __future__ import annotations

import json

import pytest

from airflow_provider_sheets.model.mapping import RowMapper, fingerprint
from airflow_provider_sheets.model.position import (
    PositionFormatError,
    PositionOf,
    Watermark,
    default_watermark_key,
    position_key,
)
from airflow_provider_sheets.model.sheet import SheetInfo

INFO = SheetInfo("1SheetId", "Survey", "Etc/UTC", 7, "Form Responses 1", 100, 5, ("Form Responses 1",))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('{"last_row": 5}', Watermark(last_row=5), id="minimal-object"),
        pytest.param('{"last_row": 0}', Watermark(last_row=0), id="zero"),
        pytest.param("5", Watermark(last_row=5), id="bare-int"),
        pytest.param(" 12 \n", Watermark(last_row=12), id="bare-int-white-space"),
        pytest.param(
            json.dumps(
                {
                    "last_row": 9,
                    "spreadsheet_id": "s",
                    "sheet_id": 7,
                    "sheet_name": "Tab",
                    "topic": "t",
                    "header_hash": "h",
                    "fields": ["a", "b"],
                    "last_row_hash": "r",
                    "updated_at": "2026-11-02T09:00:00+00:00",
                    "dag_id": "d",
                    "run_id": "r1",
                }
            ),
            Watermark(9, "s", 7, "Tab", "t", "h", ["a", "b"], "r", "2026-11-02T09:00:00+00:00", "d", "r1"),
            id="every-field",
        ),
        pytest.param(
            '{"last_row": 3, "note": "by hand", "n": 1}',
            Watermark(last_row=3, extra={"note": "by hand", "n": 1}),
            id="unknown-keys-into-extra",
        ),
        pytest.param(
            '{"last_row": 3, "extra": {"a": 1}, "b": 2}',
            Watermark(last_row=3, extra={"a": 1, "b": 2}),
            id="extra-and-unknown-keys-merged",
        ),
        pytest.param(
            '{"last_row": 3, "extra": {"b": "from-extra"}, "b": "top-level"}',
            Watermark(last_row=3, extra={"b": "from-extra"}),
            id="extra-wins-over-a-top-level-key",
        ),
        pytest.param('{"last_row": 3, "extra": null}', Watermark(last_row=3), id="extra-null"),
    ],
)
def test_from_json(text, expected):
    assert Watermark.from_json(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "does not hold valid JSON", id="empty"),
        pytest.param("{last_row: 5}", "does not hold valid JSON", id="not-json"),
        pytest.param("{'last_row': 5}", "does not hold valid JSON", id="python-dict"),
        pytest.param("true", 'non-negative integer "last_row"', id="bare-bool"),
        pytest.param("false", 'non-negative integer "last_row"', id="bare-false"),
        pytest.param('{"last_row": true}', 'non-negative integer "last_row"', id="bool-last-row"),
        pytest.param("-1", 'non-negative integer "last_row"', id="bare-negative"),
        pytest.param('{"last_row": -3}', 'non-negative integer "last_row"', id="negative"),
        pytest.param('{"last_row": 5.0}', 'non-negative integer "last_row"', id="float"),
        pytest.param('{"last_row": "5"}', 'non-negative integer "last_row"', id="string"),
        pytest.param('{"last_row": null}', 'non-negative integer "last_row"', id="null"),
        pytest.param('{"row": 5}', 'non-negative integer "last_row"', id="no-last-row"),
        pytest.param("[5]", 'non-negative integer "last_row"', id="list"),
        pytest.param('"5"', 'non-negative integer "last_row"', id="json-string"),
        pytest.param("null", 'non-negative integer "last_row"', id="json-null"),
        pytest.param("5.5", 'non-negative integer "last_row"', id="bare-float"),
    ],
)
def test_from_json_rejects(text, message):
    with pytest.raises(PositionFormatError, match=message):
        Watermark.from_json(text)


def test_a_rejected_position_quotes_at_most_200_characters_of_it():
    text = json.dumps({"last_row": -1, "padding": "x" * 1000})
    with pytest.raises(PositionFormatError) as info:
        Watermark.from_json(text)
    assert repr(text[:200]) in str(info.value)
    assert "x" * 201 not in str(info.value)


@pytest.mark.parametrize("extra", ['"x"', "[1]", "5"])
def test_from_json_rejects_an_extra_that_is_not_an_object(extra):
    with pytest.raises(PositionFormatError):
        Watermark.from_json(f'{{"last_row": 3, "extra": {extra}}}')


@pytest.mark.parametrize(
    "watermark",
    [
        Watermark(last_row=0),
        Watermark(last_row=1, extra={"note": "é 😀", "nested": {"a": [1, 2]}}),
        Watermark(12, "s", 0, "Tab 'x'", "t", "h", ["Zoë", "名前"], "r", "2026-11-02T09:00:00+00:00", "d", "r"),
        Watermark(last_row=4, extra={"topic": "shadowed by a field name"}),
    ],
)
def test_to_json_round_trip(watermark):
    text = watermark.to_json()
    assert Watermark.from_json(text) == watermark
    assert json.loads(text)["last_row"] == watermark.last_row
    assert text == Watermark.from_json(text).to_json(), "sorted keys: the same text every time"


def test_to_json_is_sorted_and_keeps_non_ascii():
    text = Watermark(last_row=2, sheet_name="설문").to_json()
    assert "설문" in text
    keys = list(json.loads(text))
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("spreadsheet_id", "sheet_id", "topic", "expected"),
    [
        ("1AbC-d_e", 0, "responses", "sheets_to_kafka.1AbC-d_e.gid0.responses"),
        ("1AbC", 123456, "forms.responses-v2", "sheets_to_kafka.1AbC.gid123456.forms.responses-v2"),
        ("a/b c", 1, "t", "sheets_to_kafka.a_b_c.gid1.t"),
        ("a//  b", 1, "t", "sheets_to_kafka.a_b.gid1.t"),
        ("s", 1, "topic with spaces!", "sheets_to_kafka.s.gid1.topic_with_spaces_"),
        ("설문", 2, "응답", "sheets_to_kafka._.gid2._"),
        ("s", -1, "t", "sheets_to_kafka.s.gid-1.t"),
    ],
)
def test_default_watermark_key(spreadsheet_id, sheet_id, topic, expected):
    key = default_watermark_key(spreadsheet_id, sheet_id, topic)
    assert key == expected
    assert all(ch.isascii() and (ch.isalnum() or ch in "_.-") for ch in key)


@pytest.mark.parametrize(
    ("spreadsheet_id", "sheet_id", "expected"),
    [("1AbC", 0, "1AbC:0"), ("1AbC", 123456, "1AbC:123456"), ("a:b", 1, "a:b:1")],
)
def test_position_key(spreadsheet_id, sheet_id, expected):
    assert position_key(spreadsheet_id, sheet_id) == expected


def test_position_of_at_a_row():
    mapper = RowMapper(["Timestamp", "Name"])
    position = PositionOf("1SheetId", INFO, "responses", mapper, {"dag_id": "d", "run_id": "r"})
    value = b'{"Timestamp":"t","Name":"n"}'
    assert position.at(42, value) == Watermark(
        last_row=42,
        spreadsheet_id="1SheetId",
        sheet_id=7,
        sheet_name="Form Responses 1",
        topic="responses",
        header_hash=mapper.header_hash,
        fields=["Timestamp", "Name"],
        last_row_hash=fingerprint([value]),
        dag_id="d",
        run_id="r",
    )


def test_position_of_copies_the_mapper_fields():
    mapper = RowMapper(["a"])
    watermark = PositionOf("s", INFO, "t", mapper).at(2, b"{}")
    mapper.fields.append("later")
    assert watermark.fields == ["a"]


@pytest.mark.parametrize(
    ("mapper", "value", "header_hash", "fields", "row_hash"),
    [
        (None, b"x", None, None, fingerprint([b"x"])),
        (RowMapper(["a"]), b"", RowMapper(["a"]).header_hash, ["a"], None),
        (None, b"", None, None, None),
    ],
    ids=["no-mapper", "no-value", "neither"],
)
def test_position_of_without_a_mapper_or_a_value(mapper, value, header_hash, fields, row_hash):
    watermark = PositionOf("s", INFO, "t", mapper).at(3, value)
    assert (watermark.header_hash, watermark.fields, watermark.last_row_hash) == (header_hash, fields, row_hash)
    assert watermark.extra == {}


def test_positions_of_different_rows_hash_differently():
    position = PositionOf("s", INFO, "t", RowMapper(["a"]))
    assert position.at(2, b'{"a":"1"}').last_row_hash != position.at(2, b'{"a":"2"}').last_row_hash
