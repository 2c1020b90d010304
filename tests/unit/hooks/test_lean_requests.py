"""Compact bodies and partial responses: what the local Sheets server serves, as Google does, and what we ask."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from airflow_provider_sheets.devkit.sheets_server import SheetsServer, parse_fields, select_fields
from airflow_provider_sheets.hooks.sheets import DESCRIBE_FIELDS, VALUES_FIELDS, SheetsConnection


def _book(server: SheetsServer, rows: int = 3) -> str:
    spreadsheet_id = f"lean-{uuid.uuid4().hex[:10]}"
    server.create_spreadsheet(spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *forms_rows(rows)]})
    return spreadsheet_id


def _get(server: SheetsServer, path: str) -> bytes:
    with urllib.request.urlopen(server.url + path, timeout=10) as response:  # noqa: S310 - the local server
        return response.read()


def test_bodies_are_pretty_printed_unless_pretty_print_is_false(server):
    spreadsheet_id = _book(server)
    pretty = _get(server, f"/v4/spreadsheets/{spreadsheet_id}/values/A1:F4")
    compact = _get(server, f"/v4/spreadsheets/{spreadsheet_id}/values/A1:F4?prettyPrint=false")
    assert json.loads(pretty) == json.loads(compact)
    assert pretty.startswith(b'{\n  "range": ')
    assert b"\n" not in compact
    assert len(pretty) > 1.3 * len(compact)


@pytest.mark.parametrize(
    ("mask", "tree"),
    [
        ("a", {"a": None}),
        ("a,b", {"a": None, "b": None}),
        ("a/b,a/c", {"a": {"b": None, "c": None}}),
        ("a.b", {"a": {"b": None}}),
        ("a(b,c(d)),e", {"a": {"b": None, "c": {"d": None}}, "e": None}),
        ("a(b),a", {"a": None}),
        ("sheets.properties(title)", {"sheets": {"properties": {"title": None}}}),
    ],
)
def test_field_masks_parse(mask, tree):
    assert parse_fields(mask) == tree


@pytest.mark.parametrize("mask", ["a(", "a(b", "a,,b", "a)", "/a"])
def test_a_malformed_field_mask_is_a_400(server, mask):
    spreadsheet_id = _book(server)
    with pytest.raises(urllib.error.HTTPError) as caught:
        _get(server, f"/v4/spreadsheets/{spreadsheet_id}?fields={urllib.parse.quote(mask)}")
    assert caught.value.code == 400


def test_a_field_mask_selects_through_lists():
    body = {"sheets": [{"properties": {"title": "A", "sheetId": 0}, "merges": [1]}], "namedRanges": [2]}
    assert select_fields(body, parse_fields("sheets.properties.title")) == {"sheets": [{"properties": {"title": "A"}}]}


def test_the_reader_asks_compact_partial_responses(server):
    spreadsheet_id = _book(server, rows=5)
    reader = accel.reader(SheetsConnection(api_endpoint=server.url))
    info = reader.describe(spreadsheet_id)
    header, pages = reader.read(info, 1)
    assert header == FORMS_HEADER
    assert sum(len(page.rows) for page in pages) == 5
    get, batch = server.requests[-2:]
    assert (get.kind, batch.kind) == ("spreadsheets.get", "values.batchGet")
    assert get.query["fields"] == [DESCRIBE_FIELDS]
    assert batch.query["fields"] == [VALUES_FIELDS]
    assert get.query["prettyPrint"] == batch.query["prettyPrint"] == ["false"]
    full = json.loads(_get(server, f"/v4/spreadsheets/{spreadsheet_id}"))
    assert "spreadsheetUrl" in full
    assert get.response_bytes < len(json.dumps(full, separators=(",", ":"))), (
        "the describe's response is the partial one"
    )
