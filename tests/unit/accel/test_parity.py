"""
Parity: every optimisation on gives byte for byte what the plain reference loop gives.

The same Sheets responses are decoded twice: (a) as the Google client does as it comes
(``JsonModel``), and run through :func:`model.loop.run_pages` with every switch off; (b) with the
tuned client's decoder (``MsgspecJsonModel``: all-text pages skip the mapper's type checks) and
run through :func:`accel.publish_pages` with ``Switches(forked=True, memory=True,
google_client=True)`` (and once more in the task process). Each run goes into a sink that turns
every record and dead letter into the bytes the publisher would produce, with their headers.
"""

from __future__ import annotations

import json
import os

import pytest
from googleapiclient.model import JsonModel

from airflow_provider_sheets.accel import Switches, forked, publish_pages
from airflow_provider_sheets.accel.google_client import GoogleClientTuning, MsgspecJsonModel
from airflow_provider_sheets.model.headers import RecordHeaders, airflow_run, provenance
from airflow_provider_sheets.model.loop import LoopOptions, run_pages
from airflow_provider_sheets.model.mapping import RowMapper, RowMappingError
from airflow_provider_sheets.model.sheet import Page, SheetInfo
from tests.unit.accel.fakes import PidReader

HEADER = ["id", "name", "note"]
INFO = SheetInfo("s1", "Survey", "Etc/UTC", 7, "Form Responses 1", 1000, 5, ("Form Responses 1",))

#: ``(first_row, last_row, rows)`` of each page, as a ``values:batchGet`` response gives them
#: (``rows`` ``None``: the response has no ``values``, the page is empty).
SPANS = [
    (2, 5, [["1", "Zoë 😀", "x"], [], ["3", "c"], ["4", "d", "e", "wider", "wider still"]]),
    (6, 8, None),  # an empty page
    (9, 12, [["", "", ""], ["10", 'quote " and \\ backslash'], ["", "no key"], ["12", "l"]]),  # dead letter at 11
    (13, 14, [["13", 1.5, True], ["14", "n", None]]),  # not all text (UNFORMATTED_VALUE)
    (15, 17, [["15", "o"], ["16", "\u2028\x00"], ["17", "q", "r", "s"]]),
]
#: the row that cannot be mapped (its key column is empty), mid-page
BAD_ROW = 11


def _body(first: int, last: int, rows) -> bytes:
    value_range = {"range": f"'Form Responses 1'!A{first}:E{last}", "majorDimension": "ROWS"}
    if rows is not None:
        value_range["values"] = rows
    return json.dumps({"spreadsheetId": "s1", "valueRanges": [value_range]}).encode()


def plain_pages() -> list[Page]:
    """The pages as the reader gives them with the Google client as it comes."""
    model = JsonModel()
    pages = []
    for first, last, rows in SPANS:
        (value_range,) = model.deserialize(_body(first, last, rows))["valueRanges"]
        pages.append(Page(first, last, value_range.get("values", [])))
    return pages


def tuned_pages() -> list[Page]:
    """The pages as the reader gives them with the tuned client (msgspec decoding, all-text pages)."""
    model, tuning = MsgspecJsonModel(), GoogleClientTuning()
    pages = []
    for first, last, rows in SPANS:
        (value_range,) = model.deserialize(_body(first, last, rows))["valueRanges"]
        values = value_range.get("values", [])
        pages.append(Page(first, last, values, tuning.all_text(values)))
    return pages


class BytesSink:
    """Every call the loop made, with each record and dead letter as the bytes the publisher produces."""

    def __init__(self, headers: RecordHeaders) -> None:
        self.headers = headers
        self.out: list[tuple] = []

    def dead_letter(self, error, cells) -> None:
        self.out.append(("dead_letter", self.headers.dead_letter(error, cells)))

    def records(self, records) -> None:
        self.out.append(("records", self.headers.messages(records)))

    def page_done(self, result) -> None:
        self.out.append(("page_done", result.as_dict()))


def _keep(cells, row: int) -> bool:
    """A backfill-like interval: drops rows 4, 12 and 16."""
    return row % 4 != 0


def _run(way: str, key_column: str | None, options: LoopOptions):
    """``(outputs, result or error, mapper fields)`` of one way of publishing the pages."""
    mapper = RowMapper(HEADER, key_column)
    static = [*provenance("s1", INFO, mapper.header_hash), *airflow_run("dag", "run", "manual", "task", 1)]
    sink = BytesSink(RecordHeaders(static, mapper.keys_by_row))
    if way == "plain":
        call = lambda: run_pages(plain_pages(), mapper, sink, options)  # noqa: E731
    else:
        if way == "forked" and not forked.available():
            pytest.skip("forked mapping needs fork (Linux): only the in-process optimisations are compared here")
        reader = PidReader()
        switches = Switches(forked=way == "forked", memory=True, google_client=True)
        call = lambda: publish_pages(tuned_pages(), mapper, sink, options, switches, sheets_reader=reader)  # noqa: E731
    try:
        outcome = call()
    except RowMappingError as err:
        outcome = err
    if way == "forked":
        assert reader.requests not in (0, os.getpid()), "the pages were mapped in a forked child"
    elif way != "plain":
        assert reader.requests == 0
    return sink.out, outcome, list(mapper.fields)


WAYS = [pytest.param("forked", id="forked"), pytest.param("in-process", id="in-process")]
SCENARIOS = [
    pytest.param("id", LoopOptions(select=_keep, dead_letters=True), id="keyed-dead-letters-select"),
    pytest.param("id", LoopOptions(dead_letters=True), id="keyed-dead-letters"),
    pytest.param(None, LoopOptions(), id="by-row"),
    pytest.param(None, LoopOptions(select=_keep), id="by-row-select"),
]


def test_the_tuned_pages_are_the_plain_pages_with_all_text_marked():
    tuned, plain = tuned_pages(), plain_pages()
    assert [(p.first_row, p.last_row, p.rows) for p in tuned] == [(p.first_row, p.last_row, p.rows) for p in plain]
    assert [p.all_text for p in tuned] == [True, False, True, False, True], "the parity covers both mapper paths"
    assert not any(p.all_text for p in plain)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(("key_column", "options"), SCENARIOS)
def test_every_optimisation_on_publishes_the_same_bytes(way, key_column, options):
    plain_out, plain_result, plain_fields = _run("plain", key_column, options)
    out, result, fields = _run(way, key_column, options)

    assert not isinstance(plain_result, RowMappingError)
    assert out == plain_out, "the same keys, values and headers, dead letters and page_done calls, in the same order"
    assert result.as_dict() == plain_result.as_dict()
    assert fields == plain_fields == ["id", "name", "note", "column_D", "column_E"]

    # what is compared is not trivial
    assert plain_result.pages == len(SPANS)
    assert [kind for kind, _ in plain_out].count("page_done") == len(SPANS)
    assert plain_result.dead_lettered == (1 if options.dead_letters else 0)
    assert plain_result.selected < plain_result.rows_seen if options.select else True
    dead = [message for kind, message in plain_out if kind == "dead_letter"]
    if options.dead_letters:
        (key, value, headers) = dead[0]
        assert key == b"11"
        assert ("sheets.row", b"11") in headers
        assert json.loads(value) == {"row": 11, "cells": ["", "no key"], "error": "the key column 'id' is empty"}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("select", [None, _keep], ids=["all-rows", "select"])
def test_a_row_that_cannot_be_mapped_fails_the_same_way_after_the_same_records(way, select):
    options = LoopOptions(select=select, dead_letters=False)
    plain_out, plain_error, plain_fields = _run("plain", "id", options)
    out, error, fields = _run(way, "id", options)

    assert isinstance(plain_error, RowMappingError)
    assert isinstance(error, RowMappingError)
    assert (plain_error.row, plain_error.reason) == (BAD_ROW, "the key column 'id' is empty")
    assert (error.row, error.reason) == (plain_error.row, plain_error.reason)
    assert out == plain_out, "the same records before the failing row, also those of its own page"
    assert error.result.as_dict() == plain_error.result.as_dict()
    assert fields == plain_fields

    # the failing page's record before the bad row (row 10) is handed over, the page is not done
    assert out[-1][0] == "records"
    assert [message[0] for message in out[-1][1]] == [b"10"]
    assert [kind for kind, _ in out].count("page_done") == 2
    assert error.result.last_row == 10
