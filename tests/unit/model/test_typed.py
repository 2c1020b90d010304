"""Typed values (pure): the JSON value of an unformatted cell in a column of a given number format."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from airflow_provider_sheets.model.typed import ColumnTypes, column_kinds, typed_cell

UTC = ZoneInfo("UTC")
LONDON = ZoneInfo("Europe/London")
SEOUL = ZoneInfo("Asia/Seoul")
# 2026-03-29 and 2026-10-25: the clocks change in London (serial 46110 and 46320 are those days)
MARCH_29, OCTOBER_25 = 46110, 46320


@pytest.mark.parametrize(
    ("cell", "kind", "zone", "value", "fallback"),
    [
        pytest.param("", None, UTC, None, False, id="empty"),
        pytest.param(None, "NUMBER", UTC, None, False, id="missing"),
        pytest.param(True, None, UTC, True, False, id="checkbox"),
        pytest.param(False, "TEXT", UTC, False, False, id="checkbox-in-a-text-column"),
        pytest.param(4, None, UTC, 4, False, id="integer"),
        pytest.param(4.0, "NUMBER", UTC, 4, False, id="whole-float-is-an-integer"),
        pytest.param(3.25, "NUMBER", UTC, 3.25, False, id="float"),
        pytest.param(0.5, "PERCENT", UTC, 0.5, False, id="percent-is-the-fraction"),
        pytest.param(1234.5, "CURRENCY", UTC, 1234.5, False, id="currency"),
        pytest.param(2.0**60, "NUMBER", UTC, 1152921504606846976, False, id="integer-above-2-53"),
        pytest.param(-0.0, None, UTC, 0, False, id="negative-zero"),
        pytest.param(46331.37850694444, "DATE_TIME", UTC, "2026-11-05T09:05:03+00:00", False, id="date-time"),
        pytest.param(46331.37850694444, "DATE_TIME", SEOUL, "2026-11-05T09:05:03+09:00", False, id="in-seoul"),
        pytest.param(MARCH_29 + 0.5, "DATE_TIME", LONDON, "2026-03-29T12:00:00+01:00", False, id="after-spring-dst"),
        pytest.param(MARCH_29 - 0.5, "DATE_TIME", LONDON, "2026-03-28T12:00:00+00:00", False, id="before-spring-dst"),
        pytest.param(OCTOBER_25 + 0.5, "DATE_TIME", LONDON, "2026-10-25T12:00:00+00:00", False, id="after-autumn"),
        pytest.param(0, "DATE_TIME", UTC, "1899-12-30T00:00:00+00:00", False, id="the-epoch"),
        pytest.param(1.5, "DATE_TIME", UTC, "1899-12-31T12:00:00+00:00", False, id="day-one-and-a-half"),
        pytest.param(46331.5000001, "DATE_TIME", UTC, "2026-11-05T12:00:00.009+00:00", False, id="milliseconds"),
        pytest.param(46331, "DATE", UTC, "2026-11-05", False, id="date"),
        pytest.param(0.378506944, "TIME", UTC, "09:05:03", False, id="time-without-a-date"),
        pytest.param(46331.75, "TIME", UTC, "18:00:00", False, id="time-of-a-date-time"),
        pytest.param("n/a", "NUMBER", UTC, "n/a", True, id="text-in-a-number-column"),
        pytest.param("soon", "DATE_TIME", UTC, "soon", True, id="text-in-a-date-time-column"),
        pytest.param("hello", None, UTC, "hello", False, id="text"),
        pytest.param("12", "TEXT", UTC, "12", False, id="digits-in-a-text-column"),
    ],
)
def test_typed_cell(cell, kind, zone, value, fallback):
    assert typed_cell(cell, kind, zone) == (value, fallback)
    assert type(typed_cell(cell, kind, zone)[0]) is type(value)


def test_column_kinds_take_the_most_common_format_of_the_first_rows():
    rows = [["DATE_TIME", None, "PERCENT"], ["DATE_TIME", "NUMBER", None], ["TEXT", "NUMBER"]]
    assert column_kinds(rows, 4) == ("DATE_TIME", "NUMBER", "PERCENT", None)


def test_a_row_counts_its_fallbacks():
    types = ColumnTypes(("DATE_TIME", "NUMBER", None), UTC)
    assert types.row([46331.5, "lots", "x", 7]) == (["2026-11-05T12:00:00+00:00", "lots", "x", 7], 1)


@pytest.mark.parametrize(
    "kinds",
    [(None, None, None), ("DATE_TIME", "NUMBER", None), ("TEXT", "PERCENT", "DATE")],
    ids=["loose", "forms-like", "mixed"],
)
def test_a_row_is_each_cell_typed_on_its_own(kinds):
    """Parity of :meth:`ColumnTypes.row` (its fast paths for text) with :func:`typed_cell` cell by cell."""
    rows = [["a", "b", "c"], ["a", "", "c"], [46331.5, "x", 3], ["", None, True], ["t", 2.0], ["a", "b", "c", "d"], []]
    types = ColumnTypes(kinds, UTC)
    for cells in rows:
        expected = [typed_cell(cell, kinds[i] if i < len(kinds) else None, UTC) for i, cell in enumerate(cells)]
        assert types.row(cells) == ([value for value, _ in expected], sum(fell for _, fell in expected))


def test_a_schema_format_makes_a_misfit_null_and_counts_it():
    """Text in a number or date column: kept as text for JSON, null for a schema that types the column."""
    from zoneinfo import ZoneInfo

    from airflow_provider_sheets.model.typed import ColumnTypes

    kinds = ("NUMBER", "DATE_TIME", None)
    as_text = ColumnTypes(kinds, ZoneInfo("UTC"))
    as_null = ColumnTypes(kinds, ZoneInfo("UTC"), null_misfits=True)
    cells = ["n/a", "yesterday", "free text"]
    assert as_text.row(cells) == (["n/a", "yesterday", "free text"], 2)
    assert as_null.row(cells) == ([None, None, "free text"], 2)
    assert as_null.row([4, 46000.5, "x"]) == ([4, "2025-12-09T12:00:00+00:00", "x"], 0), "cells that fit stay typed"
    assert as_null.narrowed(1) == ColumnTypes(("NUMBER",), ZoneInfo("UTC"), null_misfits=True)
