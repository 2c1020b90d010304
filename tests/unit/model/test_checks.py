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
        (["t", "Ann", "a@x"], "same"),
        # a cell past the header is a column_D field, even blank (the API drops trailing blanks)
        (["t", "Ann", "a@x", ""], "different"),
        (["t", "Ann", "b@x"], "different"),
        (["t", "Ann"], "different"),
        (["t", "Ann", "a@x", "more"], "different"),
        ([], "empty"),
        (["", "", ""], "empty"),
    ],
)
def test_hashes_of_the_rows_now(now, state):
    expected = written_after(HEADER, 6, ["t", "Ann", "a@x"]).last_row_hash
    found = checks.hashes(RowMapper(HEADER), [(6, now)])
    assert {"same": found == {6: expected}, "different": 6 in found and found[6] != expected, "empty": found == {}}[
        state
    ]


@pytest.mark.parametrize(
    ("before", "now", "detail"),
    [
        pytest.param(HEADER, HEADER, None, id="same"),
        pytest.param(HEADER, [" Timestamp ", "Name", "Email"], None, id="same-after-strip"),
        pytest.param(HEADER, [*HEADER, "Phone"], None, id="added-at-the-right-is-additive"),
        pytest.param(HEADER, ["Timestamp", "Phone", "Name", "Email"], "added 'Phone'", id="inserted-in-the-middle"),
        pytest.param(HEADER, ["Timestamp", "Email"], "removed or renamed 'Name'", id="removed"),
        pytest.param(
            HEADER, ["Timestamp", "Full name", "Email"], "added 'Full name'; removed or renamed 'Name'", id="renamed"
        ),
        pytest.param(HEADER, ["Email", "Timestamp", "Name"], "same names in another order", id="reordered"),
        pytest.param(["Q", "Q"], ["Q", "Q", "Q"], None, id="one-more-duplicate-at-the-right"),
        pytest.param(["Q", "Q"], ["P", "Q", "Q"], "added 'P'", id="one-more-at-the-left"),
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
    ("header", "drift"),
    [
        pytest.param(HEADER, None, id="same"),
        pytest.param([*HEADER, "Phone"], None, id="added-at-the-right"),
        pytest.param(["Timestamp", "Full name", "Email"], "the header row", id="renamed"),
    ],
)
def test_comparison_finds_a_header_drift(header, drift):
    compare = checks.comparison(written_after(HEADER, 6, LAST), RowMapper(header), "Tab")
    assert (compare.drift or "").startswith(drift or "")
    assert (compare.drift is None) is (drift is None)


def test_a_watermark_without_row_hashes_checks_the_header_only():
    previous = written_after(HEADER, 6, LAST)
    previous.last_row_hash = None  # e.g. set by hand with the watermark tools
    previous.recent_rows = None
    assert previous.recent() == {}
    assert checks.recent_change(previous.recent(), {6: "anything"}, 6, "Tab") == checks.RowsFinding()


def test_drift_policies():
    assert checks.DRIFT_POLICIES == ("fail", "continue", "republish", "reconcile")


@pytest.mark.parametrize(
    ("before", "now", "added"),
    [
        pytest.param(HEADER, HEADER, None, id="same"),
        pytest.param(HEADER, [*HEADER, "Status"], ["Status"], id="one-at-the-right"),
        pytest.param(HEADER, [*HEADER, "Status", "", "Handled by"], ["Status", "column_E", "Handled by"], id="several"),
        pytest.param(HEADER, ["Timestamp", "Status", "Name", "Email"], None, id="in-the-middle"),
        pytest.param(HEADER, ["Timestamp", "Name"], None, id="removed"),
        pytest.param(HEADER, ["Timestamp", "Name", "E-mail", "Status"], None, id="renamed-and-added"),
    ],
)
def test_added_fields(before, now, added):
    assert checks.added_fields(written_after(before, 5, ["x"]), RowMapper(now)) == added


def test_a_comparison_after_an_added_column_fingerprints_the_old_columns_only():
    previous = written_after(HEADER, 6, ["t", "Ann", "a@x"])
    compare = checks.comparison(previous, RowMapper([*HEADER, "Status"]), "Tab")
    assert (compare.added, compare.drift, compare.width) == (("Status",), None, 3)
    # the helper column filled in for the published row does not make it look edited
    assert compare.hashes([(6, ["t", "Ann", "a@x", "done"])]) == {6: previous.last_row_hash}


def _h(text: str) -> str:
    return f"h-{text}"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param({r: _h(str(r)) for r in range(5, 13)}, checks.RowsFinding(), id="unchanged"),
        pytest.param(
            {**{r: _h(str(r)) for r in range(5, 13)}, 10: _h("edited")},
            checks.RowsFinding(edited=(10,)),
            id="last-edited",
        ),
        pytest.param(
            {**{r: _h(str(r)) for r in range(5, 13)}, 7: _h("x"), 9: _h("y")},
            checks.RowsFinding(edited=(7, 9)),
            id="two-edited",
        ),
        pytest.param(
            {r: _h(str(r)) for r in range(5, 13) if r != 10}, checks.RowsFinding(cleared=(10,)), id="last-cleared"
        ),
        # row 6 deleted: rows 7.. moved up by one (10 is now 9, and 11, the first new row, is now 10)
        pytest.param({r - 1: _h(str(r)) for r in range(7, 13)} | {5: _h("5")}, -1, id="one-deleted-above"),
        pytest.param({r - 3: _h(str(r)) for r in range(8, 14)}, -3, id="three-deleted-above"),
        pytest.param({r + 2: _h(str(r)) for r in range(5, 13)} | {5: _h("new"), 6: _h("new2")}, 2, id="two-inserted"),
        pytest.param({r: _h("other") for r in range(5, 13)}, checks.RowsFinding(edited=(7, 8, 9, 10)), id="rewritten"),
    ],
)
def test_recent_change_tells_an_edit_from_a_shift(now, expected):
    old = {r: _h(str(r)) for r in range(7, 11)}  # rows 7..10 published; 10 is the watermark
    finding = checks.recent_change(old, now, 10, "Tab")
    if isinstance(expected, int):
        assert finding.shift == expected
        assert finding.edited == finding.cleared == ()
        word = "deleted" if expected < 0 else "inserted"
        assert finding.drift is not None
        assert f"were {word} above the watermark of tab 'Tab'" in finding.drift or f"was {word}" in finding.drift
        assert f"row 10, is now row {10 + expected}" in finding.drift
    else:
        assert finding == expected


def test_recent_change_with_only_the_last_rows_hash_of_an_older_watermark():
    old = {10: _h("10")}
    assert checks.recent_change(old, {9: _h("9"), 10: _h("new")}, 10, "Tab") == checks.RowsFinding(edited=(10,))
    moved = checks.recent_change(old, {9: _h("10"), 10: _h("11")}, 10, "Tab")
    assert moved.shift == -1
    assert moved.drift == (
        "1 row was deleted above the watermark of tab 'Tab': the last row already published, row 10, is now row 9, "
        "and every row after it moved up by 1."
    )


def test_edited_and_new_selects_the_edits_and_what_follows_the_watermark():
    select = checks.EditedAndNew(frozenset({7}), 10)
    assert [row for row in range(5, 14) if select([], row)] == [7, 11, 12, 13]


def test_a_ragged_row_whose_helper_cell_is_filled_fingerprints_as_before():
    previous = written_after(HEADER, 6, ["t", "Ann"])  # no Email: the API dropped the blank cell
    compare = checks.comparison(previous, RowMapper([*HEADER, "Status"]), "Tab")
    assert compare.hashes([(6, ["t", "Ann", "", "done"])]) == {6: previous.last_row_hash}
