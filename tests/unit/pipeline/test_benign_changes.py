"""
What a real form goes through between runs, through the unmodified ``GSheetsHook`` and the local
Sheets server, with the default ``on_drift="fail"``: a respondent edits a response, staff add and
fill a helper column, Forms adds a column for a new question; none of these stops the pipeline.
Rows deleted or inserted above the watermark still stop it, and are told apart from an edit.
"""

from __future__ import annotations

import json
import logging

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from airflow_provider_sheets.errors import DriftError
from airflow_provider_sheets.hooks.sheets import SheetsConnection
from airflow_provider_sheets.model.mapping import fingerprint
from airflow_provider_sheets.pipeline.batch import RunContext
from tests.unit.pipeline.fakes import SPREADSHEET_ID, Harness

RUN = RunContext("forms", "scheduled__1", "publish", run_type="scheduled")
KEY_OF = {"watermark_key": "forms.watermark"}


@pytest.fixture
def form(server):
    """A Forms tab with 5 responses (rows 2..6), already published once; ``(server, harness)``."""
    server.create_spreadsheet(SPREADSHEET_ID, {FORMS_TAB: [FORMS_HEADER, *forms_rows(5)]}, row_count=6)
    h = Harness([])
    h.reader = accel.reader(SheetsConnection(api_endpoint=server.url))
    h.run(RUN, **KEY_OF, mapping_process=False)
    assert [int(sent.key) for sent in h.publisher.sent] == [2, 3, 4, 5, 6]
    return server, h


def _keys(h: Harness) -> list[int]:
    return [int(sent.key) for sent in h.publisher.sent]


def _record(h: Harness, row: int) -> dict:
    return json.loads(next(sent.value for sent in h.publisher.sent if int(sent.key) == row))


def _stored(h: Harness):
    return h.stores.watermark("forms.watermark")


def test_an_edited_last_response_is_published_again_and_the_run_goes_on(form, caplog, mapping_process):
    server, h = form
    server.set_cell(SPREADSHEET_ID, FORMS_TAB, 6, 3, "edited@example.com")
    server.append_rows(SPREADSHEET_ID, FORMS_TAB, forms_rows(1, start=5))  # and a new response, row 7
    with caplog.at_level(logging.WARNING, logger="test"):
        summary = h.run(RUN, **KEY_OF, mapping_process=mapping_process)

    assert _keys(h) == [6, 7], "the edit (same key) first, then the new row"
    assert _record(h, 6)[FORMS_HEADER[2]] == "edited@example.com"
    assert "Row(s) 6 of tab 'Form Responses 1' were edited since they were published" in caplog.text
    assert summary.watermark_after == 7
    assert dict(map(tuple, _stored(h).recent_rows))[6] == fingerprint([h.publisher.sent[0].value])

    h.run(RUN, **KEY_OF, mapping_process=False)
    assert _keys(h) == [], "the edit is not published a second time"


def test_an_edit_with_no_new_rows_is_published_and_the_watermark_stays(form):
    server, h = form
    server.set_cell(SPREADSHEET_ID, FORMS_TAB, 4, 2, "Renamed Person")  # row 4: not the last one
    summary = h.run(RUN, **KEY_OF, mapping_process=False)
    assert _keys(h) == [4]
    assert _record(h, 4)[FORMS_HEADER[1]] == "Renamed Person"
    assert (summary.watermark_before, summary.watermark_after) == (6, 6)
    h.run(RUN, **KEY_OF, mapping_process=False)
    assert _keys(h) == []


def test_a_helper_column_added_and_filled_is_additive(form, caplog):
    server, h = form
    server.set_cell(SPREADSHEET_ID, FORMS_TAB, 1, len(FORMS_HEADER) + 1, "Status")  # staff add a column …
    for row in (2, 6):
        server.set_cell(SPREADSHEET_ID, FORMS_TAB, row, len(FORMS_HEADER) + 1, "handled")  # … and fill it in
    server.append_rows(SPREADSHEET_ID, FORMS_TAB, forms_rows(2, start=5))
    with caplog.at_level(logging.INFO, logger="test"):
        h.run(RUN, **KEY_OF, mapping_process=False)

    assert _keys(h) == [7, 8], "filling the helper column in for published rows is not an edit of the responses"
    assert "Status" in _record(h, 7)
    assert "Tab 'Form Responses 1' gained 'Status' at the right since the last run" in caplog.text
    assert _stored(h).fields == [*FORMS_HEADER, "Status"], "the watermark's header is updated"


def test_a_new_question_and_an_edit_in_the_same_run(form):
    server, h = form
    server.set_cell(SPREADSHEET_ID, FORMS_TAB, 1, len(FORMS_HEADER) + 1, "How did you hear of us?")
    server.set_cell(SPREADSHEET_ID, FORMS_TAB, 6, 2, "Edited Name")
    new = [*forms_rows(1, start=5)[0], "A friend"]
    server.append_rows(SPREADSHEET_ID, FORMS_TAB, [new])
    h.run(RUN, **KEY_OF, mapping_process=False)
    assert _keys(h) == [6, 7]
    assert _record(h, 6)[FORMS_HEADER[1]] == "Edited Name"
    assert _record(h, 7)["How did you hear of us?"] == "A friend"


def test_a_cleared_response_is_said_and_does_not_stop_the_pipeline(form, caplog):
    server, h = form
    for col in range(1, len(FORMS_HEADER) + 1):
        server.set_cell(SPREADSHEET_ID, FORMS_TAB, 6, col, None)  # the last response emptied (spam)
    with caplog.at_level(logging.WARNING, logger="test"):
        h.run(RUN, **KEY_OF, mapping_process=False)
    assert _keys(h) == []
    assert "Row(s) 6 of tab 'Form Responses 1' were cleared since they were published" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="test"):
        h.run(RUN, **KEY_OF, mapping_process=False)
    assert "were cleared" not in caplog.text, "said once"


@pytest.mark.parametrize(
    ("change", "words", "follow"),
    [
        pytest.param("delete", "1 row was deleted above the watermark", 5, id="deleted-above"),
        pytest.param("insert", "1 row was inserted above the watermark", 7, id="inserted-above"),
    ],
)
def test_rows_deleted_or_inserted_above_are_a_drift_told_apart_from_an_edit(form, change, words, follow):
    server, h = form
    if change == "delete":
        server.delete_rows(SPREADSHEET_ID, FORMS_TAB, 3)
    else:
        server.insert_rows(SPREADSHEET_ID, FORMS_TAB, 3, [forms_rows(1, start=90)[0]])
    server.append_rows(SPREADSHEET_ID, FORMS_TAB, forms_rows(1, start=5))
    before = _stored(h)
    with pytest.raises(DriftError) as info:
        h.run(RUN, **KEY_OF, mapping_process=False)
    assert str(info.value).startswith(f"{words} of tab 'Form Responses 1': the last row already published, row 6")
    assert _keys(h) == []
    assert _stored(h) == before

    h.run(RUN, **KEY_OF, on_drift="continue", mapping_process=False)
    assert _keys(h) == [follow + 1], "continue reads on after where the last published row is now"


def test_the_drift_check_stays_in_the_first_request(form):
    server, h = form
    server.append_rows(SPREADSHEET_ID, FORMS_TAB, forms_rows(1, start=5))
    start = len(server.requests)
    h.run(RUN, **KEY_OF, mapping_process=False)
    reads = [r for r in server.requests[start:] if r.kind in ("spreadsheets.get", "values.batchGet")]
    assert [r.kind for r in reads] == ["spreadsheets.get", "values.batchGet"]
    assert reads[1].query["ranges"] == [
        f"'{FORMS_TAB}'!A1:Z1",
        f"'{FORMS_TAB}'!A2:Z6",  # the last published rows (up to 16), for the drift check
        f"'{FORMS_TAB}'!A7:Z7",
    ]


@pytest.mark.timeout(60)
def test_a_checked_run_of_several_pages_reads_them_where_it_maps_them(form, mapping_process):
    """
    The drift check looks at the first page without starting the page iterator: its prefetch thread
    must start in the process that iterates (a forked one), or the later pages never arrive there.
    """
    server, h = form
    server.append_rows(SPREADSHEET_ID, FORMS_TAB, forms_rows(7, start=5))  # rows 7..13
    summary = h.run(RUN, **KEY_OF, page_size=2, mapping_process=mapping_process)
    assert _keys(h) == list(range(7, 14))
    assert summary.pages == 4
