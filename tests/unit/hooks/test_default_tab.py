"""Which tab a reader takes when none is named: the first visible tab of cells, through the real GSheetsHook."""

from __future__ import annotations

import uuid

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from airflow_provider_sheets.devkit.sheets_server import SheetsServer
from airflow_provider_sheets.errors import SheetNotFoundError, SheetsConfigError
from airflow_provider_sheets.hooks.sheets import SheetsConnection
from airflow_provider_sheets.model.a1 import A1Range


def _reader(server: SheetsServer):
    return accel.reader(SheetsConnection(api_endpoint=server.url))


def _book(server: SheetsServer, *extra: tuple[str, dict]) -> str:
    """A Forms responses tab, then the ``extra`` tabs (title, add_sheet options) placed before it or after."""
    spreadsheet_id = f"tabs-{uuid.uuid4().hex[:10]}"
    server.create_spreadsheet(spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *forms_rows(3)]})
    for title, options in extra:
        server.add_sheet(
            spreadsheet_id, title, [["not", "this"]] if options.get("sheet_type") != "OBJECT" else None, **options
        )
    return spreadsheet_id


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([("Hidden notes", {"index": 0, "hidden": True})], id="hidden-tab-first"),
        pytest.param([("Chart1", {"index": 0, "sheet_type": "OBJECT"})], id="chart-sheet-first"),
        pytest.param(
            [("Chart1", {"index": 0, "sheet_type": "OBJECT"}), ("Old", {"index": 0, "hidden": True})], id="both"
        ),
        pytest.param([("Summary", {})], id="visible-tab-after"),
    ],
)
def test_the_default_tab_is_the_first_visible_tab_of_cells(server, extra):
    spreadsheet_id = _book(server, *extra)
    reader = _reader(server)
    info = reader.describe(spreadsheet_id)
    assert info.title == FORMS_TAB
    header, pages = reader.read(info, 1)
    assert header == FORMS_HEADER
    assert sum(len(page.rows) for page in pages) == 3


def test_a_named_hidden_tab_is_read(server):
    spreadsheet_id = _book(server, ("Hidden notes", {"index": 0, "hidden": True}))
    reader = _reader(server)
    info = reader.describe(spreadsheet_id, "Hidden notes")
    header, _ = reader.read(info, 1)
    assert (info.title, header) == ("Hidden notes", ["not", "this"])


def test_a_named_chart_sheet_is_refused_naming_the_other_tabs(server):
    spreadsheet_id = _book(server, ("Chart1", {"sheet_type": "OBJECT"}))
    with pytest.raises(
        SheetNotFoundError,
        match=r"tab 'Chart1' .* is a OBJECT sheet \(a chart\), not a tab of cells; .*'Form Responses 1'",
    ):
        _reader(server).describe(spreadsheet_id, "Chart1")


def test_a_spreadsheet_without_a_visible_tab_of_cells_names_the_fix(server):
    spreadsheet_id = _book(server, ("Chart1", {"index": 0, "sheet_type": "OBJECT"}))
    server.add_sheet(spreadsheet_id, "Hidden", [["a"]], hidden=True)
    reader = _reader(server)
    reader.describe(spreadsheet_id)  # the responses tab is still visible
    only_hidden = f"tabs-{uuid.uuid4().hex[:10]}"
    server.create_spreadsheet(only_hidden, {"Sheet1": [["a"]]})
    server.add_sheet(only_hidden, "Chart1", sheet_type="OBJECT", index=0)
    hide = {"updateSheetProperties": {"properties": {"sheetId": 0, "hidden": True}, "fields": "hidden"}}
    service = reader.hook.get_conn()  # GSheetsHook has no batchUpdate method: its client has
    service.spreadsheets().batchUpdate(spreadsheetId=only_hidden, body={"requests": [hide]}).execute()
    with pytest.raises(SheetNotFoundError, match="has no visible tab of cells .* set sheet_name to the tab to read"):
        reader.describe(only_hidden)


def test_the_server_serves_a_chart_sheet_as_google_does(server):
    """No gridProperties in its properties; a values request naming it is a 400."""
    spreadsheet_id = _book(server, ("Chart1", {"sheet_type": "OBJECT"}), ("Hidden", {"hidden": True}))
    reader = _reader(server)
    meta = reader.hook.get_spreadsheet(spreadsheet_id)
    props = {sheet["properties"]["title"]: sheet["properties"] for sheet in meta["sheets"]}
    assert props["Chart1"]["sheetType"] == "OBJECT"
    assert "gridProperties" not in props["Chart1"]
    assert props["Hidden"]["hidden"] is True
    assert "hidden" not in props[FORMS_TAB]
    with pytest.raises(SheetsConfigError, match="Unable to parse range"):
        reader.batch_get(spreadsheet_id, [A1Range("Chart1", 1, 1, 2, 2)])
