"""The mechanisms that keep big sheets fast and small, checked by counting, not by timing.

* pages are streamed: reading and mapping a tab page by page keeps a page or two in memory,
  never the whole tab;
* the next page is fetched while the caller works on the current one, at most one page ahead,
  and nothing more is requested once the caller stops;
* wide rows shrink the pages so a response stays under Google's recommended ~2 MB;
* the Google client is kept from building its multi-megabyte docstrings, and decodes responses
  with msgspec into exactly the objects ``json`` gives;
* an incremental run on a big tab costs exactly two Sheets requests;
* the fast JSON encoder writes exactly the bytes ``json`` writes (the watermark's row hash and
  consumers' de-duplication depend on them);
* while pages are published, the garbage collector leaves the objects that existed before alone
  and runs less often, and its settings come back afterwards, also after a failure.
"""

from __future__ import annotations

import gc
import json
import math
import threading
import time
import tracemalloc
import uuid
import weakref

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.accel import Switches, publish_pages
from airflow_provider_sheets.accel.forked import available as forked_available
from airflow_provider_sheets.accel.memory import GC_PAGES, GC_THRESHOLD
from airflow_provider_sheets.hooks.sheets import MAX_PAGE_BYTES, SheetsConnection, SheetsReader
from airflow_provider_sheets.model.loop import LoopOptions
from airflow_provider_sheets.model.mapping import Record, RowMapper, RowMappingError
from airflow_provider_sheets.model.sheet import Page
from tests.helpers import run_operator

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

TAB = "Form Responses 1"
HEADER = [f"Question {i}" for i in range(1, 11)]


def _rows(count: int, start: int = 0, text: str = "answer") -> list[list[str]]:
    return [[f"{text} {n}-{col}" for col in range(len(HEADER))] for n in range(start, start + count)]


def _sheet(server, rows: list[list[str]], **kwargs) -> str:
    spreadsheet_id = f"perf-{uuid.uuid4().hex[:10]}"
    server.create_spreadsheet(spreadsheet_id, {TAB: [HEADER, *rows]}, **kwargs)
    return spreadsheet_id


def _reader(connections, google_client: bool = True) -> SheetsReader:
    """The reader every caller gets (:func:`accel.reader`), with the Google client tuned or as it comes."""
    connection = SheetsConnection(api_endpoint=connections["api_endpoint"])
    return accel.reader(connection, switches=Switches(google_client=google_client))


class _CallbackSink:
    """A sink that calls ``on_record(record)`` for each record, where the publisher would produce it."""

    def __init__(self, on_record) -> None:
        self.on_record = on_record

    def dead_letter(self, error, cells) -> None:
        raise AssertionError(f"no dead letters here: {error}")

    def records(self, records) -> None:
        for record in records:
            self.on_record(record)

    def page_done(self, result) -> None:
        pass


def _publish(pages, mapper: RowMapper, on_record, forked: bool = False):
    """Publish through the entry point with the memory tuning on (in the task process unless ``forked``)."""
    sink = _CallbackSink(on_record)
    return publish_pages(pages, mapper, sink, LoopOptions(), Switches(forked=forked, memory=True))


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _read_and_map(reader: SheetsReader, spreadsheet_id: str, page_size: int, hold: bool) -> tuple[int, int]:
    """Read and map a whole tab; return (records, tracemalloc peak), keeping every page when ``hold``."""
    info = reader.describe(spreadsheet_id, TAB)
    held = []
    records = 0
    tracemalloc.start()
    try:
        header, pages = reader.read(info, 1, page_size=page_size)
        mapper = RowMapper(header)
        for page in pages:
            rows = mapper.map_rows(page.first_row, page.rows, all_text=page.all_text)
            mapped = [r for r in rows if isinstance(r, Record)]
            records += len(mapped)
            if hold:
                held.append((page, mapped))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return records, peak


def test_pages_are_streamed_not_accumulated(connections, sheets_server):
    spreadsheet_id = _sheet(sheets_server, _rows(24_000))
    reader = _reader(connections)

    streamed, streaming_peak = _read_and_map(reader, spreadsheet_id, page_size=1000, hold=False)
    kept, holding_peak = _read_and_map(reader, spreadsheet_id, page_size=1000, hold=True)

    assert streamed == kept == 24_000
    # 24 pages held take ~24 pages of memory; streamed, at most the page being mapped, the one
    # prefetched and the response being decoded are alive at once
    assert streaming_peak * 4 < holding_peak, (streaming_peak, holding_peak)


def test_prefetch_stays_one_page_ahead_and_stops_with_the_caller(connections, sheets_server):
    spreadsheet_id = _sheet(sheets_server, _rows(1000))
    reader = _reader(connections)
    info = reader.describe(spreadsheet_id, TAB)
    sheets_server.reset_stats()

    def value_requests() -> int:
        return sheets_server.request_count("values.batchGet")

    header, pages = reader.read(info, 1, page_size=100)
    assert header == HEADER
    assert value_requests() == 1, "the header and the first page come in one request"

    first = next(pages)
    assert (first.first_row, first.last_row) == (2, 101)
    assert _wait_for(lambda: value_requests() == 2), "page 2 is fetched while the caller works on page 1"
    time.sleep(0.3)
    assert value_requests() == 2, "never more than one page ahead"

    second = next(pages)
    assert (second.first_row, second.last_row) == (102, 201)
    assert second.rows == _rows(100, start=100)
    assert _wait_for(lambda: value_requests() == 3)

    pages.close()
    time.sleep(0.3)
    assert value_requests() == 3, "nothing is requested after the caller stopped"
    assert reader.requests == 1 + 3, "the reader counts every request it made (describe + 3 values)"
    assert not [t for t in threading.enumerate() if t.name.startswith("sheets-reader")]


def test_wide_rows_shrink_the_pages_under_the_recommended_payload(connections, sheets_server):
    wide = _rows(2500, text="x" * 300)  # ~3 KB of JSON per row
    spreadsheet_id = _sheet(sheets_server, wide)
    reader = _reader(connections)
    info = reader.describe(spreadsheet_id, TAB)
    sheets_server.reset_stats()

    header, pages = reader.read(info, 1, page_size=1000)
    read = list(pages)

    assert [row for page in read for row in page.rows] == wide
    assert all(a.last_row + 1 == b.first_row for a, b in zip(read, read[1:], strict=False))
    sizes = [r.response_bytes for r in sheets_server.requests if r.kind == "values.batchGet"]
    assert sizes[0] > MAX_PAGE_BYTES, "the first page has page_size rows: nothing is known of their width yet"
    assert len(sizes) > 3
    assert max(sizes[1:]) <= MAX_PAGE_BYTES, sizes


def test_google_client_docstrings_are_not_built(connections, sheets_server):
    spreadsheet_id = _sheet(sheets_server, _rows(10))
    reader = _reader(connections)
    reader.hook.get_conn()
    tracemalloc.start()
    try:
        info = reader.describe(spreadsheet_id, TAB)
        reader.batch_get(spreadsheet_id, [])
        header, pages = reader.read(info, 1)
        assert sum(len(page.rows) for page in pages) == 10
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the client's own docstrings for spreadsheets.get / batchUpdate take ~55 MB at first use
    assert peak < 10_000_000, peak


def test_google_client_decodes_with_msgspec_into_what_json_gives(connections, sheets_server):
    from googleapiclient.model import JsonModel

    from airflow_provider_sheets.accel.google_client import MsgspecJsonModel

    rows = [["é😀 text", "", "1.5"], ["=1/0", "#REF!", "x" * 50_000]]
    spreadsheet_id = _sheet(sheets_server, rows)
    reader = _reader(connections)
    info = reader.describe(spreadsheet_id, TAB)
    assert isinstance(reader.hook.get_conn()._model, MsgspecJsonModel)
    header, pages = reader.read(info, 1)
    assert header == HEADER
    pages = list(pages)
    assert [row for page in pages for row in page.rows] == rows
    assert all(page.all_text for page in pages), "the decoder saw every cell was text"
    as_it_comes = _reader(connections, google_client=False)
    untuned_info = as_it_comes.describe(spreadsheet_id, TAB)
    assert type(as_it_comes.hook.get_conn()._model) is JsonModel, "the google_client switch off: the client as it comes"
    _, untuned = as_it_comes.read(untuned_info, 1)
    untuned = list(untuned)
    assert [row for page in untuned for row in page.rows] == rows
    assert not any(page.all_text for page in untuned)
    fast, plain = MsgspecJsonModel(), JsonModel()
    big = b'{"i": 1' + b"0" * 30 + b"}"  # beyond 64 bits: msgspec refuses, json takes it
    for body in (b'{"values": [["a", 1.5, 1e16, "\\u00e9"]]}', b"not json", big):
        assert fast.deserialize(body) == plain.deserialize(body)
    assert math.isnan(fast.deserialize(b'{"n": NaN}')["n"])


def test_a_batch_of_text_cells_comes_as_text_rows_and_anything_else_as_json_gives():
    """The mapper skips its per-row type check only for rows the decoder saw were all strings."""
    from googleapiclient.model import JsonModel

    from airflow_provider_sheets.accel.google_client import GoogleClientTuning, MsgspecJsonModel, TextRows

    fast, plain, tuning = MsgspecJsonModel(), JsonModel(), GoogleClientTuning()
    text = (
        b'{"spreadsheetId": "s", "valueRanges": [{"range": "T!A1:B2", "majorDimension": "ROWS", '
        b'"values": [["a", "\u00e9"], [], ["", "b"]]}, {"range": "T!A9:B9", "majorDimension": "ROWS"}]}'
    )
    decoded = fast.deserialize(text)
    assert decoded == plain.deserialize(text)
    assert type(decoded["valueRanges"][0]["values"]) is TextRows
    assert tuning.all_text(decoded["valueRanges"][0]["values"]), "the reader's page says all_text"
    assert "values" not in decoded["valueRanges"][1]
    others = [
        text.replace(b'"b"', b"1.5"),  # a number (UNFORMATTED_VALUE)
        text.replace(b'"b"', b"true"),
        text.replace(b'"b"', b"null"),
        text.replace(b'"majorDimension": "ROWS", "values"', b'"extra": 1, "values"'),  # a field it does not know
        text.replace(b'"spreadsheetId": "s", ', b""),  # not a batchGet response
    ]
    for body in others:
        decoded = fast.deserialize(body)
        assert decoded == plain.deserialize(body)
        assert all(type(vr.get("values")) is not TextRows for vr in decoded.get("valueRanges", []))
        assert not any(tuning.all_text(vr.get("values", [])) for vr in decoded.get("valueRanges", []))


def test_incremental_run_on_a_big_tab_costs_two_requests(connections, sheets_server, topic):
    spreadsheet_id = _sheet(sheets_server, _rows(6000), row_count=6001 + 1000)
    kwargs = {"spreadsheet_id": spreadsheet_id, "topic": topic, "api_endpoint": connections["api_endpoint"]}
    first = run_operator(**kwargs)
    assert first.state == "success"
    assert first.summary["rows_published"] == 6000

    sheets_server.append_rows(spreadsheet_id, TAB, _rows(100, start=6000))
    sheets_server.reset_stats()
    result = run_operator(**kwargs)

    assert result.state == "success"
    summary = result.summary
    assert (summary["rows_published"], summary["first_row"], summary["last_row"]) == (100, 6002, 6101)
    assert summary["sheets_requests"] == 2
    assert sheets_server.request_count() == 2
    assert sheets_server.request_count("spreadsheets.get") == 1
    assert sheets_server.request_count("values.batchGet") == 1


@pytest.mark.parametrize(
    ("header", "rows"),
    [
        pytest.param(["a", "b", "c"], [["x", "Zoë 👍", "名前"], ["only one"]], id="text-and-padding"),
        pytest.param(["a", "b"], [["tab\there", 'quote " and \\ backslash'], ["\x00\x1f\x7f\u2028"]], id="escapes"),
        pytest.param(
            ["n", "f", "g", "h"],
            [[1, 1e16, 1e-07, 0.1], [-0.0, float("nan"), float("inf"), -float("inf")], [2**70, 3.0, True, None]],
            id="numbers",
        ),
        pytest.param(['say "hi"', "back\\slash", "new\nline"], [["1", "2", "3"]], id="odd-headers"),
        pytest.param(["a"], [["x", "wider", 2.5]], id="wider-than-header"),
    ],
)
def test_fast_encoder_writes_exactly_what_json_writes(header, rows):
    mapper = RowMapper(header)
    records = [r for r in mapper.map_rows(2, rows) if isinstance(r, Record)]
    for cells, record in zip(rows, records, strict=True):
        names = mapper.fields
        padded = [*cells, *([None] * (len(names) - len(cells)))]
        expected = json.dumps(dict(zip(names, padded, strict=True)), ensure_ascii=False, separators=(",", ":"))
        assert record.value == expected.encode("utf-8")
    if all(type(cell) is str for cells in rows for cell in cells):  # as the tuned reader marks such pages
        text = [r for r in RowMapper(header).map_rows(2, rows, all_text=True) if isinstance(r, Record)]
        assert text == records


@pytest.mark.parametrize("forked", [False, True], ids=["in-process", "forked"])
def test_the_collector_is_relaxed_while_publishing_and_restored_after(forked):
    if forked and not forked_available():
        pytest.skip("forked mapping needs fork (Linux)")
    before = (gc.get_threshold(), gc.get_freeze_count())
    seen = []

    def on_record(record):
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))

    mapper = RowMapper(["a", "b"], key_column="a")
    _publish([Page(2, 3, [["1", "x"], ["2", "y"]])], mapper, on_record, forked)
    assert [threshold for threshold, _ in seen] == [max(before[0][0], GC_THRESHOLD)] * 2
    assert all(frozen > before[1] for _, frozen in seen), "the objects alive at the start are frozen"
    assert (gc.get_threshold(), gc.get_freeze_count()) == before

    with pytest.raises(RowMappingError):  # an empty key column fails the run mid-page
        _publish([Page(2, 3, [["1", "x"], ["", "y"]])], mapper, on_record, forked)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_with_the_memory_switch_off_the_collector_is_left_alone():
    before = (gc.get_threshold(), gc.get_freeze_count())
    seen = []
    sink = _CallbackSink(lambda record: seen.append((gc.get_threshold(), gc.get_freeze_count())))
    switches = Switches(forked=False, memory=False)
    publish_pages([Page(2, 3, [["1", "x"], ["2", "y"]])], RowMapper(["a", "b"]), sink, LoopOptions(), switches)
    assert seen == [before] * 2


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_cyclic_garbage_made_while_publishing_is_collected_every_few_pages():
    made: list[weakref.ref] = []
    alive_at: dict[int, int] = {}

    def on_record(record):
        made.append(weakref.ref(_Cycle()))  # garbage that only the cyclic collector frees
        alive_at[record.row] = sum(ref() is not None for ref in made)

    pages = [Page(row, row, [[str(row), "x"]]) for row in range(2, 2 + 2 * GC_PAGES)]
    _publish(pages, RowMapper(["a", "b"]), on_record)
    assert alive_at[2 + GC_PAGES] == 1, f"the garbage of the first {GC_PAGES} pages was collected"


def test_objects_frozen_before_publishing_stay_frozen_and_disabled_collection_stays_off():
    mapper = RowMapper(["a", "b"])
    pages = [Page(2, 2, [["1", "x"]])]
    thresholds = gc.get_threshold()
    # kept alive, so that only publishing can lower the freeze count: a thread an earlier test left
    # (Airflow's supervisor comms, ending ~0.1 s after its task) frees its frozen objects whenever it ends
    alive = gc.get_objects()
    gc.freeze()  # as Airflow does before it forks its workers
    try:
        frozen = gc.get_freeze_count()
        _publish(pages, mapper, lambda record: None)
        assert gc.get_freeze_count() >= frozen, "what was frozen before stays frozen"
        gc.set_threshold(0)
        during = []
        _publish(pages, mapper, lambda record: during.append(gc.get_threshold()[0]))
        assert during == [0], "collections switched off stay off while publishing"
        assert gc.get_threshold()[0] == 0, "collections switched off stay off"
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        del alive
