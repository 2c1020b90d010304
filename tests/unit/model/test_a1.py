"""Table-driven tests of A1 notation (pure): column letters, tab-name quoting, ranges."""

from __future__ import annotations

import pytest

from airflow_provider_sheets.model.a1 import A1Range, column_index, column_letter, quote_sheet_name


@pytest.mark.parametrize(
    ("index", "letters"),
    [(1, "A"), (2, "B"), (26, "Z"), (27, "AA"), (52, "AZ"), (53, "BA"), (702, "ZZ"), (703, "AAA"), (18_278, "ZZZ")],
)
def test_column_letters_round_trip(index, letters):
    assert column_letter(index) == letters
    assert column_index(letters) == index
    assert column_index(letters.lower()) == index


@pytest.mark.parametrize("bad", [0, -1, 18_279])
def test_column_letter_out_of_range(bad):
    with pytest.raises(ValueError, match="outside"):
        column_letter(bad)


@pytest.mark.parametrize("bad", ["", "A1", "AAAA", "ZZZA", "1"])
def test_column_index_rejects(bad):
    with pytest.raises(ValueError):
        column_index(bad)


@pytest.mark.parametrize(
    ("title", "quoted"),
    [
        ("Sheet1", "'Sheet1'"),
        ("Form Responses 1", "'Form Responses 1'"),
        ("Bob's answers", "'Bob''s answers'"),
        ("''", "''''''"),
        ("설문 응답 시트1", "'설문 응답 시트1'"),
    ],
)
def test_quote_sheet_name(title, quoted):
    assert quote_sheet_name(title) == quoted


@pytest.mark.parametrize(
    ("a1", "expected"),
    [
        (A1Range.rows("Form Responses 1", 2, 1001, 10), "'Form Responses 1'!A2:J1001"),
        (A1Range.rows("Bob's tab", 5, 5, 28), "'Bob''s tab'!A5:AB5"),
        (A1Range("Sheet1"), "'Sheet1'"),
        (A1Range("Sheet1", 1, None, 1, None), "'Sheet1'!A:A"),
        (A1Range("Sheet1", None, 2, None, 5), "'Sheet1'!2:5"),
        (A1Range("Sheet1", 1, 2, 10, None), "'Sheet1'!A2:J"),
        (A1Range("Sheet1", 3, 7), "'Sheet1'!C7"),
    ],
)
def test_a1_range_str(a1, expected):
    assert str(a1) == expected
    assert A1Range.parse(expected) == a1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sheet1!A1:B2", A1Range("Sheet1", 1, 1, 2, 2)),
        ("'It''s here'!b3:c", A1Range("It's here", 2, 3, 3, None)),
        ("'a!b'!A1", A1Range("a!b", 1, 1)),
        ("Tab", A1Range("Tab")),
    ],
)
def test_a1_range_parse(text, expected):
    assert A1Range.parse(text) == expected


@pytest.mark.parametrize("bad", ["'open!A1", "Tab!1A", "Tab!A1:??"])
def test_a1_range_parse_rejects(bad):
    with pytest.raises(ValueError):
        A1Range.parse(bad)


@pytest.mark.parametrize(("first", "last"), [(0, 5), (5, 4)])
def test_a1_rows_rejects_bad_span(first, last):
    with pytest.raises(ValueError, match="invalid row span"):
        A1Range.rows("S", first, last, 3)
