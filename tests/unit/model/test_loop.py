"""The reference publish loop (pure): pages in, the sink's calls out, in order; what it counts."""

from __future__ import annotations

import json

import pytest

from airflow_provider_sheets.model.loop import LoopOptions, LoopResult, PageSpan, map_page, run_pages
from airflow_provider_sheets.model.mapping import Record, RowMapper, RowMappingError, fingerprint
from airflow_provider_sheets.model.position import RECENT_ROWS
from airflow_provider_sheets.model.sheet import Page

HEADER = ["id", "name"]


class RecordingSink:
    """Every call the loop makes, as plain tuples (a page_done keeps a copy of the result at that moment)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def dead_letter(self, error: RowMappingError, cells: list) -> None:
        self.calls.append(("dead_letter", error.row, error.reason, cells))

    def records(self, records: list[Record]) -> None:
        self.calls.append(("records", [(r.row, r.key, json.loads(r.value)) for r in records]))

    def page_done(self, result: LoopResult) -> None:
        self.calls.append(("page_done", result.as_dict()))

    def kinds(self) -> list[str]:
        return [call[0] for call in self.calls]

    def rows(self) -> list[int]:
        return [row for call in self.calls if call[0] == "records" for row, _, _ in call[1]]


def run(pages, key_column=None, **options):
    sink = RecordingSink()
    result = run_pages(pages, RowMapper(HEADER, key_column), sink, LoopOptions(**options))
    return sink, result


PAGES = [
    Page(2, 4, [["1", "a"], [], ["3", "c"]]),
    Page(5, 7, []),
    Page(8, 10, [["8", "h"]]),  # the API dropped rows 9 and 10 (empty)
]


def test_pages_are_handed_over_in_order_each_followed_by_page_done():
    sink, result = run(PAGES)
    assert sink.kinds() == ["records", "page_done", "page_done", "records", "page_done"]
    assert sink.calls[0][1] == [(2, b"2", {"id": "1", "name": "a"}), (4, b"4", {"id": "3", "name": "c"})]
    assert sink.calls[3][1] == [(8, b"8", {"id": "8", "name": "h"})]
    assert (result.first_row, result.last_row, result.pages, result.rows_seen, result.selected) == (2, 8, 3, 3, 3)
    assert result.last_value == b'{"id":"8","name":"h"}'


def test_page_done_sees_the_result_after_its_page():
    sink, _ = run(PAGES)
    done = [call[1] for call in sink.calls if call[0] == "page_done"]
    assert [d["pages"] for d in done] == [1, 2, 3]
    assert [d["last_row"] for d in done] == [4, 4, 8]
    assert [d["last_page"] for d in done] == [(2, 4, 3), (5, 7, 0), (8, 10, 1)]


@pytest.mark.parametrize(
    ("pages", "rows_seen", "last_row", "widest"),
    [
        pytest.param([], 0, None, 0, id="no-pages"),
        pytest.param([Page(2, 5, [])], 0, None, 0, id="one-empty-page"),
        pytest.param([Page(2, 4, [[], ["", ""], [None]])], 0, None, 2, id="only-empty-rows"),
        pytest.param([Page(2, 4, [[], ["1"], []])], 1, 3, 1, id="empty-rows-around-one"),
        pytest.param([Page(2, 3, [["1", "a", "x", "y"]]), Page(4, 4, [["4"]])], 2, 4, 4, id="widest-row"),
    ],
)
def test_empty_pages_and_rows_are_not_counted_in_rows_seen(pages, rows_seen, last_row, widest):
    sink, result = run(pages)
    assert result.rows_seen == rows_seen
    assert result.selected == rows_seen
    assert result.last_row == last_row
    assert result.widest == widest
    assert result.pages == len(pages)
    assert sink.kinds().count("page_done") == len(pages)
    assert sink.kinds().count("records") == sum(1 for p in pages if any(any(r) for r in p.rows))


def test_dead_letters_of_a_page_come_before_its_records():
    pages = [Page(2, 5, [["k2", "a"], ["", "no key"], ["k4", "d"], [None, "again"]]), Page(6, 6, [["", "x"]])]
    sink, result = run(pages, key_column="id", dead_letters=True)
    assert sink.calls == [
        ("dead_letter", 3, "the key column 'id' is empty", ["", "no key"]),
        ("dead_letter", 5, "the key column 'id' is empty", [None, "again"]),
        ("records", [(2, b"k2", {"id": "k2", "name": "a"}), (4, b"k4", {"id": "k4", "name": "d"})]),
        (
            "page_done",
            result.as_dict() | {"pages": 1, "dead_lettered": 2, "last_dead_letter": 5, "last_page": (2, 5, 4)},
        ),
        ("dead_letter", 6, "the key column 'id' is empty", ["", "x"]),
        ("page_done", result.as_dict()),
    ]
    assert (result.dead_lettered, result.rows_seen, result.selected, result.last_row) == (3, 2, 2, 4)


def test_a_page_of_dead_letters_only_hands_over_no_records():
    sink, result = run([Page(2, 2, [["", "x"]])], key_column="id", dead_letters=True)
    assert sink.kinds() == ["dead_letter", "page_done"]
    assert (result.first_row, result.last_row) == (None, None)


@pytest.mark.parametrize(
    ("keep", "rows"),
    [
        pytest.param(lambda cells, row: True, [2, 3, 5, 6], id="all"),
        pytest.param(lambda cells, row: False, [], id="none"),
        pytest.param(lambda cells, row: row % 2 == 1, [3, 5], id="by-row"),
        pytest.param(lambda cells, row: cells[1] == "keep", [2, 6], id="by-cells"),
    ],
)
def test_select(keep, rows):
    pages = [Page(2, 4, [["1", "keep"], ["2", "x"], []]), Page(5, 6, [["5", "y"], ["6", "keep"]])]
    seen = []

    def select(cells, row):
        seen.append(row)
        return keep(cells, row)

    sink, result = run(pages, select=select)
    assert sink.rows() == rows
    assert seen == [2, 3, 5, 6], "select sees every non-empty row once, with its cells"
    assert result.rows_seen == 4
    assert result.selected == len(rows)
    assert result.first_row == (rows[0] if rows else None)
    assert result.last_row == (rows[-1] if rows else None)


def test_select_is_not_asked_about_dead_letters():
    seen = []
    run([Page(2, 3, [["", "x"], ["k", "y"]])], key_column="id", dead_letters=True, select=lambda c, r: seen.append(r))
    assert seen == [3]


@pytest.mark.parametrize("bad_at", [0, 1, 2], ids=["first-row", "mid-page", "last-row"])
def test_the_rows_before_a_row_that_cannot_be_mapped_are_handed_over_first(bad_at):
    rows = [["k2", "a"], ["k3", "b"], ["k4", "c"]]
    rows[bad_at] = ["", "no key"]
    pages = [Page(1, 1, [["k1", "first page"]]), Page(2, 4, rows), Page(5, 5, [["k5", "never read"]])]
    sink = RecordingSink()
    with pytest.raises(RowMappingError, match=f"row {bad_at + 2}: the key column 'id' is empty") as info:
        run_pages(pages, RowMapper(HEADER, "id"), sink, LoopOptions())
    before = list(range(2, 2 + bad_at))
    assert sink.rows() == [1, *before]
    # the failing page is handed over without its page_done
    assert sink.kinds() == ["records", "page_done"] + (["records"] if before else [])
    result = info.value.result
    assert isinstance(result, LoopResult)
    assert (result.pages, result.rows_seen, result.selected) == (2, 1 + bad_at, 1 + bad_at)
    assert result.last_row == (before[-1] if before else 1)
    assert result.last_page == PageSpan(2, 4, 3)
    assert info.value.row == bad_at + 2


def test_a_result_passed_in_is_the_one_updated():
    result = LoopResult(rows_seen=10, pages=4, first_row=2, last_row=11)
    sink = RecordingSink()
    returned = run_pages([Page(12, 12, [["12", "l"]])], RowMapper(HEADER), sink, LoopOptions(), result)
    assert returned is result
    assert (result.rows_seen, result.pages, result.first_row, result.last_row) == (11, 5, 2, 12)


@pytest.mark.parametrize(
    "result",
    [
        LoopResult(),
        LoopResult(2, 9, b'{"a":1}', 7, 6, 1, 3, 4, PageSpan(8, 12, 2)),
        LoopResult(last_page=PageSpan(2, 2, 0)),
        LoopResult(recent={7: "ab", 9: "cd"}),
    ],
)
def test_as_dict_and_update_round_trip(result):
    values = result.as_dict()
    assert isinstance(values["last_page"], (tuple, type(None))), "plain values only (the forked path sends them)"
    copy = LoopResult()
    copy.update(values)
    assert copy == result


def test_as_dict_names_every_field():
    assert set(LoopResult().as_dict()) == {
        "first_row",
        "last_row",
        "last_value",
        "rows_seen",
        "selected",
        "dead_lettered",
        "last_dead_letter",
        "pages",
        "widest",
        "last_page",
        "recent",
        "typed_fallbacks",
    }


def test_the_result_keeps_the_fingerprints_of_the_last_records_only():
    mapper = RowMapper(["a"])
    result = LoopResult()
    rows = [[str(n)] for n in range(2, 42)]
    for first in range(2, 42, 10):
        records: list = []
        map_page(Page(first, first + 9, rows[first - 2 : first + 8]), mapper, result, records, [])
    assert sorted(result.recent) == list(range(42 - RECENT_ROWS, 42))
    assert result.recent[41] == fingerprint([b'{"a":"41"}'])


def test_update_takes_a_subset():
    result = LoopResult(rows_seen=3, last_page=PageSpan(1, 2, 2))
    result.update({"pages": 7})
    assert (result.pages, result.rows_seen, result.last_page) == (7, 3, PageSpan(1, 2, 2))
    result.update({"last_page": None})
    assert result.last_page is None


@pytest.mark.parametrize(
    ("span", "full"),
    [
        (PageSpan(2, 5, 4), True),
        (PageSpan(2, 5, 3), False),
        (PageSpan(2, 5, 0), False),
        (PageSpan(7, 7, 1), True),
        (PageSpan(7, 7, 0), False),
    ],
)
def test_page_span_full(span, full):
    assert span.full is full


@pytest.mark.parametrize(
    ("page", "full"),
    [
        (Page(2, 5, [["a"]] * 4), True),
        (Page(2, 5, [["a"]] * 3), False),
        (Page(2, 5, []), False),
        (Page(3, 3, [[]]), True),
    ],
)
def test_a_page_is_full_when_every_row_of_its_span_came_back(page, full):
    result = LoopResult()
    map_page(page, RowMapper(["a"]), result, [], [])
    assert result.last_page.full is full
