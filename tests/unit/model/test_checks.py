"""Checks of a stored position against the tab as it is now (pure): each a finding in words, or None."""

from __future__ import annotations

import pytest

from airflow_provider_sheets.model import checks
from airflow_provider_sheets.model.mapping import Record, RowMapper, fingerprint
from airflow_provider_sheets.model.position import PositionOf, Watermark
from airflow_provider_sheets.model.sheet import SheetInfo

HEADER = ["Timestamp", "Name", "Email"]


def info(row_count: int, title: str = "Form Responses 1") -> SheetInfo:
    return SheetInfo("s", "Survey", "Etc/UTC", 7, title, row_count, 3, (title,))


def written_after(header: list, row: int, cells: list) -> Watermark:
    """The position a run writes after publishing ``cells`` as sheet row ``row`` under ``header``."""
    mapper = RowMapper(header)
    (record,) = [r for r in mapper.map_rows(row, [cells]) if isinstance(r, Record)]
    return PositionOf("s", info(100), "t", mapper).at(row, record.value)


@pytest.mark.parametrize(
    ("last_row", "header_row", "finding"),
    [
        (1, 1, None),
        (5, 1, None),
        (3, 3, None),
        (0, 1, "says last_row=0, above the header row 1"),
        (2, 3, "says last_row=2, above the header row 3"),
    ],
)
def test_above_header(last_row, header_row, finding):
    assert checks.above_header(last_row, header_row) == finding


@pytest.mark.parametrize(
    ("last_row", "row_count", "deleted"),
    [(0, 0, False), (10, 10, False), (9, 10, False), (11, 10, True), (1000, 1, True)],
)
def test_beyond_tab(last_row, row_count, deleted):
    finding = checks.beyond_tab(last_row, info(row_count, "Bob's tab"))
    if not deleted:
        assert finding is None
        return
    assert finding == (
        f'says rows up to {last_row} are done, but tab "Bob\'s tab" now has only {row_count} rows: rows were deleted'
    )


@pytest.mark.parametrize(
    ("cells", "mapped"),
    [
        (["t", "Ann", "a@x"], True),
        (["t"], True),
        ([], False),
        (["", "", ""], False),
        ([None, ""], False),
    ],
)
def test_row_hash(cells, mapped):
    mapper = RowMapper(HEADER)
    got = checks.row_hash(mapper, 9, cells)
    if not mapped:
        assert got is None
        return
    (record,) = list(mapper.map_rows(9, [cells]))
    assert got == fingerprint([record.value])


def test_row_hash_is_none_for_a_row_that_cannot_be_mapped():
    assert checks.row_hash(RowMapper(HEADER, key_column="Email"), 4, ["t", "Ann", ""]) is None


def test_row_hash_does_not_depend_on_the_row_number_when_keyed_by_row():
    mapper = RowMapper(HEADER)
    assert checks.row_hash(mapper, 2, ["t", "a"]) == checks.row_hash(mapper, 3, ["t", "a"])


def test_row_hash_matches_what_a_position_keeps():
    cells = ["t", "Zoë 😀", "e"]
    assert written_after(HEADER, 6, cells).last_row_hash == checks.row_hash(RowMapper(HEADER), 6, cells)


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (["t", "Ann", "a@x"], None),
        # a cell past the header is a column_D field, even blank (the API drops trailing blanks)
        (["t", "Ann", "a@x", ""], "holds different cells"),
        (["t", "Ann", "b@x"], "holds different cells"),
        (["t", "Ann"], "holds different cells"),
        (["t", "Ann", "a@x", "more"], "holds different cells"),
        ([], "is now empty"),
        (["", "", ""], "is now empty"),
    ],
)
@pytest.mark.parametrize("mark", ["watermark", "position"])
def test_row_change(now, state, mark):
    expected = written_after(HEADER, 6, ["t", "Ann", "a@x"]).last_row_hash
    finding = checks.row_change(RowMapper(HEADER), 6, now, expected, "Tab", mark=mark)
    if state is None:
        assert finding is None
        return
    assert finding == (
        f"row 6 of tab 'Tab', the last row already published, {state}: rows above the {mark} were inserted, "
        "deleted or edited, so the rows after it may be shifted."
    )


@pytest.mark.parametrize(
    ("before", "now", "detail"),
    [
        pytest.param(HEADER, HEADER, None, id="same"),
        pytest.param(HEADER, [" Timestamp ", "Name", "Email"], None, id="same-after-strip"),
        pytest.param(HEADER, [*HEADER, "Phone"], "added 'Phone'", id="added"),
        pytest.param(HEADER, ["Timestamp", "Email"], "removed or renamed 'Name'", id="removed"),
        pytest.param(
            HEADER, ["Timestamp", "Full name", "Email"], "added 'Full name'; removed or renamed 'Name'", id="renamed"
        ),
        pytest.param(HEADER, ["Email", "Timestamp", "Name"], "same names in another order", id="reordered"),
        pytest.param(["Q", "Q"], ["Q", "Q", "Q"], "added 'Q_3'", id="one-more-duplicate"),
    ],
)
def test_header_change(before, now, detail):
    previous = written_after(before, 5, ["x"])
    finding = checks.header_change(previous, RowMapper(now), "Tab")
    if detail is None:
        assert finding is None
        return
    assert finding == (
        f"the header row of tab 'Tab' changed since the last run ({detail}): a form question was added, "
        "renamed or moved, so records would change shape."
    )


@pytest.mark.parametrize("header_hash", [None, ""])
def test_header_change_needs_a_stored_header_hash(header_hash):
    previous = Watermark(last_row=5, header_hash=header_hash, fields=["old"])
    assert checks.header_change(previous, RowMapper(["new"]), "Tab") is None


def test_header_change_without_stored_fields_lists_every_field_as_added():
    previous = Watermark(last_row=5, header_hash="not-the-same")
    finding = checks.header_change(previous, RowMapper(["a", "b"]), "Tab")
    assert finding is not None
    assert "(added 'a', 'b')" in finding


LAST = ["t", "Ann", "a@x"]


@pytest.mark.parametrize(
    ("header", "cells", "starts_with"),
    [
        pytest.param(HEADER, LAST, None, id="nothing-changed"),
        pytest.param([*HEADER, "Phone"], LAST, "the header row", id="header-only"),
        pytest.param(HEADER, ["t", "Bob", "b@x"], "row 6 of tab", id="last-row-only"),
        pytest.param([*HEADER, "Phone"], ["t", "Bob"], "the header row", id="both: the header wins"),
        pytest.param(HEADER, [], "row 6 of tab", id="last-row-emptied"),
    ],
)
def test_drift(header, cells, starts_with):
    previous = written_after(HEADER, 6, LAST)
    finding = checks.drift(previous, RowMapper(header), cells, "Tab")
    if starts_with is None:
        assert finding is None
    else:
        assert finding is not None
        assert finding.startswith(starts_with)


def test_drift_without_a_last_row_hash_checks_the_header_only():
    previous = written_after(HEADER, 6, LAST)
    previous.last_row_hash = None  # e.g. set by hand with the watermark tools
    assert checks.drift(previous, RowMapper(HEADER), ["anything"], "Tab") is None
    assert checks.drift(previous, RowMapper(["other"]), ["anything"], "Tab") is not None


def test_drift_policies():
    assert checks.DRIFT_POLICIES == ("fail", "continue", "republish")
