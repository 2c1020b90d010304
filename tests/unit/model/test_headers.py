"""Provenance headers (pure): sheets.*, airflow.*, the one sheets.row rule, dead letters."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from airflow_provider_sheets.model import headers
from airflow_provider_sheets.model.headers import RecordHeaders, airflow_run, provenance, published_row, row_number
from airflow_provider_sheets.model.mapping import Record, RowMapper, RowMappingError
from airflow_provider_sheets.model.sheet import SheetInfo

INFO = SheetInfo("1SheetId", "Survey", "Etc/UTC", 123456, "Form Responses 1", 100, 5, ("Form Responses 1",))


@pytest.mark.parametrize(
    ("spreadsheet_id", "info", "header_hash", "expected"),
    [
        pytest.param(
            "1SheetId",
            INFO,
            "abc",
            [
                ("sheets.spreadsheet_id", b"1SheetId"),
                ("sheets.sheet_name", b"Form Responses 1"),
                ("sheets.sheet_id", b"123456"),
                ("sheets.header_hash", b"abc"),
            ],
            id="plain",
        ),
        pytest.param(
            "x",
            SheetInfo("x", "", "UTC", 0, "설문 응답 '1'", 1, 1, ()),
            "",
            [
                ("sheets.spreadsheet_id", b"x"),
                ("sheets.sheet_name", "설문 응답 '1'".encode()),
                ("sheets.sheet_id", b"0"),
                ("sheets.header_hash", b""),
            ],
            id="unicode-title-gid0",
        ),
    ],
)
def test_provenance(spreadsheet_id, info, header_hash, expected):
    assert provenance(spreadsheet_id, info, header_hash) == expected


def test_provenance_names_the_tab_by_the_described_title_not_the_id_passed_in():
    assert dict(provenance("other", INFO, "h"))["sheets.spreadsheet_id"] == b"other"
    assert dict(provenance("other", INFO, "h"))["sheets.sheet_name"] == INFO.title.encode()


@pytest.mark.parametrize(
    ("try_number", "expected"),
    [(1, b"1"), (3, b"3"), ("2", b"2"), (None, b"")],
)
def test_airflow_run(try_number, expected):
    assert airflow_run("dag", "manual__2026-11-02", "manual", "publish", try_number) == [
        ("airflow.dag_id", b"dag"),
        ("airflow.run_id", b"manual__2026-11-02"),
        ("airflow.run_type", b"manual"),
        ("airflow.task_id", b"publish"),
        ("airflow.try_number", expected),
    ]


@pytest.mark.parametrize(("row", "expected"), [(1, b"1"), (2, b"2"), (10_000_000, b"10000000")])
def test_row_number(row, expected):
    assert row_number(row) == expected


ROWS = [["t1", "K-1", "a"], [], ["t3", "K-3"], ["t4", "K-4", "c", "wider"]]


def _records(key_column: str | None) -> list[Record]:
    mapper = RowMapper(["Timestamp", "Id", "Note"], key_column)
    return [r for r in mapper.map_rows(41, ROWS) if isinstance(r, Record)]


@pytest.mark.parametrize(
    ("key_column", "keys"),
    [(None, [b"41", b"43", b"44"]), ("Id", [b"K-1", b"K-3", b"K-4"])],
    ids=["keys-by-row", "key-column"],
)
def test_messages_carry_the_row_number_as_sheets_row_in_both_key_modes(key_column, keys):
    records = _records(key_column)
    static = [("sheets.spreadsheet_id", b"s"), ("airflow.dag_id", b"d")]
    record_headers = RecordHeaders(static, keys_by_row=key_column is None, published_through=43)
    messages = record_headers.messages(records)
    assert [m[0] for m in messages] == keys
    assert [m[1] for m in messages] == [r.value for r in records]
    changes = {41: b"update", 43: b"update", 44: b"insert"}  # rows up to 43 were published before
    assert [m[2] for m in messages] == [
        [*static, ("sheets.row", str(r.row).encode()), ("sheets.change", changes[r.row])] for r in records
    ]
    assert [published_row(dict(m[2])) for m in messages] == [41, 43, 44]
    assert [m[3] for m in messages] == [0, 0, 0], "no event time: the publish time"


def test_messages_take_plain_tuples_as_the_forked_path_hands_them_over():
    records = _records(None)
    by_tuple = RecordHeaders([], True).messages([tuple(r) for r in records])  # type: ignore[misc]
    assert by_tuple == RecordHeaders([], True).messages(records)


def test_messages_do_not_share_one_headers_list_between_records():
    messages = RecordHeaders([("a", b"1")], True).messages(_records(None))
    first, second = messages[0][2], messages[1][2]
    assert first is not second
    first.append(("x", b"y"))
    assert ("x", b"y") not in second


@pytest.mark.parametrize(
    ("row", "reason", "cells", "value"),
    [
        (
            7,
            "the key column 'Id' is empty",
            ["t", ""],
            {"row": 7, "cells": ["t", ""], "error": "the key column 'Id' is empty"},
        ),
        (
            12,
            "emoji 😀 in reason",
            ["Zoë", 1.5, None, True],
            {"row": 12, "cells": ["Zoë", 1.5, None, True], "error": "emoji 😀 in reason"},
        ),
        (3, "x", [], {"row": 3, "cells": [], "error": "x"}),
    ],
)
def test_dead_letter(row, reason, cells, value):
    static = [("sheets.spreadsheet_id", b"s")]
    key, raw, hdrs = RecordHeaders(static, keys_by_row=False).dead_letter(RowMappingError(row, reason), cells)
    assert key == str(row).encode()
    assert json.loads(raw.decode("utf-8")) == value
    assert "\\u" not in raw.decode("utf-8"), "non-ASCII text is written as UTF-8, not escaped"
    assert hdrs == [*static, ("sheets.row", str(row).encode()), ("sheets.error", reason.encode())]
    assert published_row(dict(hdrs)) == row


def test_dead_letter_value_takes_cells_json_cannot_write():
    cells = [b"raw", datetime(2026, 11, 2, 9, 7)]
    _, raw, _ = RecordHeaders([], True).dead_letter(RowMappingError(2, "r"), cells)
    assert json.loads(raw)["cells"] == ["b'raw'", "2026-11-02 09:07:00"]


@pytest.mark.parametrize(
    ("hdrs", "expected"),
    [
        ({"sheets.row": b"12"}, 12),
        ({"sheets.row": b"1"}, 1),
        ({"sheets.row": b"10000000", "other": b"x"}, 10_000_000),
        ({}, None),
        ({"sheets.row": None}, None),
        ({"sheets.row": b""}, None),
        ({"sheets.row": b"abc"}, None),
        ({"sheets.row": b"12.5"}, None),
        ({"sheets.row": b"\xff\xfe"}, None),
        ({"sheets.rows": b"12"}, None),
    ],
)
def test_published_row(hdrs, expected):
    assert published_row(hdrs) == expected


def test_header_names_are_the_documented_ones():
    assert (headers.SPREADSHEET_ID, headers.SHEET_NAME, headers.SHEET_ID, headers.HEADER_HASH, headers.ROW) == (
        "sheets.spreadsheet_id",
        "sheets.sheet_name",
        "sheets.sheet_id",
        "sheets.header_hash",
        "sheets.row",
    )
    assert headers.ERROR == "sheets.error"
    assert (headers.CHANGE, headers.INSERT, headers.UPDATE, headers.DELETE) == (
        "sheets.change",
        b"insert",
        b"update",
        b"delete",
    )


def test_a_tombstone_says_delete_and_names_the_row_it_came_from():
    record_headers = RecordHeaders([("sheets.sheet_id", b"7")], keys_by_row=False)
    assert record_headers.tombstone(b"K-9", 12) == (
        b"K-9",
        None,
        [("sheets.sheet_id", b"7"), ("sheets.row", b"12"), ("sheets.change", b"delete")],
    )
    assert record_headers.message(Record(12, b"K-9", b"{}"), b"update")[2][-1] == ("sheets.change", b"update")


def test_cloudevents_headers_per_record():
    info = SheetInfo("s1", "Survey", "UTC", 7, "Form Responses 1", 100, 5, ("Form Responses 1",))
    static = headers.cloudevents("s1", info)
    record_headers = RecordHeaders(static, True, published_through=2, event_ids=b"s1/7/")
    (first, second) = record_headers.messages([Record(2, b"2", b"{}", 1_762_333_503_000), Record(3, b"3", b"{}")])
    assert dict(first[2]) == {
        "ce_specversion": b"1.0",
        "ce_source": b"//sheets.googleapis.com/spreadsheets/s1/sheets/7",
        "content-type": b"application/json",
        "sheets.row": b"2",
        "sheets.change": b"update",
        "ce_id": b"s1/7/2",
        "ce_type": b"com.google.sheets.row.updated",
        "ce_time": b"2025-11-05T09:05:03.000Z",
    }
    assert dict(second[2])["ce_type"] == b"com.google.sheets.row.inserted"
    assert dict(second[2])["ce_time"].endswith(b"Z"), "no event time: the publish time"
