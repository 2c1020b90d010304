"""Table-driven tests of the pure mapper: header naming, ragged and empty rows, keys."""

from __future__ import annotations

import json

import pytest

from airflow_provider_sheets.model.mapping import Record, RowMapper, RowMappingError, field_names, fingerprint


@pytest.mark.parametrize(
    ("header", "width", "expected"),
    [
        (["Timestamp", "Name"], None, ["Timestamp", "Name"]),
        ([" Name ", "Email\n"], None, ["Name", "Email"]),
        (["Timestamp", "", "Email"], None, ["Timestamp", "column_B", "Email"]),
        (["Q", "Q", "Q"], None, ["Q", "Q_2", "Q_3"]),
        (["Q", "Q", "Q_2"], None, ["Q", "Q_3", "Q_2"]),
        (["", None, "x"], None, ["column_A", "column_B", "x"]),
        (["a"], 3, ["a", "column_B", "column_C"]),
        ([1, 2.5, True], None, ["1", "2.5", "True"]),
        (["column_B", ""], None, ["column_B", "column_B_2"]),
        ([], 0, []),
    ],
)
def test_field_names(header, width, expected):
    assert field_names(header, width) == expected


def _decode(record: Record) -> dict:
    return json.loads(record.value.decode("utf-8"))


@pytest.mark.parametrize(
    ("rows", "expected_values", "expected_empty"),
    [
        pytest.param([["t1", "Ann", "a@x"]], [{"Timestamp": "t1", "Name": "Ann", "Email": "a@x"}], [], id="full"),
        pytest.param([["t1"]], [{"Timestamp": "t1", "Name": None, "Email": None}], [], id="ragged"),
        pytest.param([["t1", "", "e"]], [{"Timestamp": "t1", "Name": "", "Email": "e"}], [], id="blank-middle"),
        pytest.param([[], ["t2", "B"]], [{"Timestamp": "t2", "Name": "B", "Email": None}], [10], id="empty-first"),
        pytest.param([["", "", ""], ["t3"]], [{"Timestamp": "t3", "Name": None, "Email": None}], [10], id="blank-row"),
        pytest.param(
            [["t4", "C", "c", "extra"]],
            [{"Timestamp": "t4", "Name": "C", "Email": "c", "column_D": "extra"}],
            [],
            id="wider-than-header",
        ),
        pytest.param([["😀", "Zoë", "名前"]], [{"Timestamp": "😀", "Name": "Zoë", "Email": "名前"}], [], id="unicode"),
        pytest.param([], [], [], id="no-rows"),
    ],
)
def test_map_rows(rows, expected_values, expected_empty):
    mapper = RowMapper(["Timestamp", "Name", "Email"])
    out = list(mapper.map_rows(10, rows))
    records = [r for r in out if isinstance(r, Record)]
    assert [_decode(r) for r in records] == expected_values
    assert [r for r in out if isinstance(r, int)] == expected_empty


def test_row_number_keys_follow_sheet_rows():
    mapper = RowMapper(["a"])
    records = [r for r in mapper.map_rows(41, [["x"], [], ["y"]]) if isinstance(r, Record)]
    assert [(r.row, r.key) for r in records] == [(41, b"41"), (43, b"43")]


def test_values_are_compact_utf8_json():
    record = next(RowMapper(["name"]).map_rows(2, [["Zoë"]]))
    assert record.value == '{"name":"Zoë"}'.encode()


@pytest.mark.parametrize(
    ("row", "key"),
    [(["t", "ID-7"], b"ID-7"), (["t", 42], b"42"), (["t", "한국"], "한국".encode())],
)
def test_key_column(row, key):
    record = next(RowMapper(["Timestamp", "Id"], key_column="Id").map_rows(2, [row]))
    assert record.key == key


@pytest.mark.parametrize("row", [["t"], ["t", ""], ["t", None]])
def test_empty_key_cell_names_the_row(row):
    with pytest.raises(RowMappingError, match=r"row 7: the key column 'Id' is empty") as info:
        list(RowMapper(["Timestamp", "Id"], key_column="Id").map_rows(7, [row]))
    assert info.value.row == 7


def test_unknown_key_column_lists_headers():
    with pytest.raises(ValueError, match=r"key_column 'email' is not a header.*'Timestamp', 'Email'"):
        RowMapper(["Timestamp", "Email"], key_column="email")


def test_key_column_uses_renamed_duplicate():
    record = next(RowMapper(["Q", "Q"], key_column="Q_2").map_rows(2, [["a", "b"]]))
    assert record.key == b"b"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (["x", "y"], ["x", "y"], True),
        (["x", "y"], ["x", "y", ""], True),
        (["x", "y"], ["y", "x"], False),
        (["x", "y"], ["x", "y", "z"], False),
        ([1], ["1"], False),
    ],
)
def test_fingerprint(a, b, same):
    assert (fingerprint(a) == fingerprint(b)) is same
    assert len(fingerprint(a)) == 32


def test_rows_known_to_be_text_map_to_the_same_records_as_rows_checked_cell_by_cell():
    rows = [["1", "é 😀", ""], [], ["", "", ""], ["3", 'quote " and \\ backslash', "x", "wider"], ["4"]]
    for key_column in (None, "id"):
        checked = list(RowMapper(["id", "name", "note"], key_column).map_rows(2, rows, errors="yield"))
        text = list(RowMapper(["id", "name", "note"], key_column).map_rows(2, rows, errors="yield", all_text=True))
        assert [tuple(r) if isinstance(r, tuple) else r for r in text] == [
            tuple(r) if isinstance(r, tuple) else r for r in checked
        ]
        assert any(isinstance(r, tuple) and r.value.startswith(b'{"id":"1"') for r in text)


def test_an_encoder_makes_the_value_and_cells_right_of_the_header_are_an_error():
    """A registry format's encoder takes the typed cells; a value right of the header has no field to go in."""
    from airflow_provider_sheets.model.mapping import Record, RowMapper, RowMappingError

    mapper = RowMapper(["A", "B"])
    mapper.use_types(None, encode=lambda cells: repr(list(cells)).encode())
    out = list(mapper.map_rows(2, [["x", "y"], ["x"], ["x", "y", ""], ["x", "y", "z"]], errors="yield"))
    assert [o.value for o in out[:3]] == [b"['x', 'y']", b"['x']", b"['x', 'y']"]
    assert all(isinstance(o, Record) for o in out[:3])
    assert isinstance(out[3], RowMappingError)
    assert out[3].row == 5
    assert "column C, right of the header (which ends at column B)" in out[3].reason
    assert mapper.fields == ["A", "B"], "the fields stay the schema's"


@pytest.mark.parametrize(
    ("key_column", "cells", "key"),
    [
        (None, ["Ann", "4"], b'{"schema":{"type":"int64","optional":false},"payload":7}'),
        ("Name", ["Ann", "4"], b'{"schema":{"type":"string","optional":false},"payload":"Ann"}'),
        ("Name", ['Ann "A"', "4"], b'{"schema":{"type":"string","optional":false},"payload":"Ann \\"A\\""}'),
    ],
)
def test_a_key_in_the_connect_envelope(key_column, cells, key):
    from airflow_provider_sheets.model.connect import key_envelope
    from airflow_provider_sheets.model.mapping import RowMapper

    mapper = RowMapper(["Name", "Score"], key_column=key_column)
    mapper.use_key_envelope(key_envelope(numeric=mapper.keys_by_row))
    assert not mapper.keys_by_row, "the key is not the row number's text: headers spell the row themselves"
    (record,) = mapper.map_rows(7, [cells])
    assert record.key == key
    assert json.loads(record.key)["payload"] in (7, cells[0])
