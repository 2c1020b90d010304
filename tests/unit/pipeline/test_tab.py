"""A tab's mapper and the checks of a Variable watermark against the tab, with the fixes they name."""

from __future__ import annotations

import pytest

from airflow_provider_sheets.errors import HeaderError, SheetsConfigError, WatermarkError
from airflow_provider_sheets.model.sheet import SheetInfo
from airflow_provider_sheets.pipeline.tab import check_watermark, mapper_for

INFO = SheetInfo("s", "Survey", "Etc/UTC", 7, "Bob's tab", 10, 3, ("Bob's tab",))


@pytest.mark.parametrize(
    ("header", "key_column", "fields"),
    [
        (["Timestamp", "Email"], None, ["Timestamp", "Email"]),
        (["Timestamp", "Email"], "Email", ["Timestamp", "Email"]),
        (["", "Email"], None, ["column_A", "Email"]),
        ([None, "", "x"], "x", ["column_A", "column_B", "x"]),
        ([0], None, ["0"]),
    ],
)
def test_mapper_for(header, key_column, fields):
    mapper = mapper_for(header, 1, INFO, key_column, "header_row")
    assert mapper.fields == fields
    assert mapper.keys_by_row is (key_column is None)


@pytest.mark.parametrize("header", [[], [""], [None, ""], ["", "", None]])
@pytest.mark.parametrize(("header_row", "setting"), [(1, "header_row"), (3, "--header-row")])
def test_mapper_for_an_empty_header_row_names_the_row_and_the_setting(header, header_row, setting):
    with pytest.raises(HeaderError) as info:
        mapper_for(header, header_row, INFO, None, setting)
    assert str(info.value) == (
        f'the header row {header_row} of tab "Bob\'s tab" is empty. Put the field names (for a Google Form: the '
        f"question titles) in row {header_row}, or set {setting}."
    )


@pytest.mark.parametrize("key_column", ["email", "Email ", "column_C"])
def test_mapper_for_an_unknown_key_column_names_the_tab_and_lists_the_headers(key_column):
    with pytest.raises(SheetsConfigError) as info:
        mapper_for(["Timestamp", "Email"], 1, INFO, key_column, "header_row")
    assert type(info.value) is SheetsConfigError, "not a HeaderError: the header is fine"
    assert str(info.value) == (
        f"tab \"Bob's tab\": key_column {key_column!r} is not a header of this tab; the headers are: 'Timestamp', "
        "'Email'"
    )


@pytest.mark.parametrize(
    ("key", "last_row", "header_row", "info"),
    [
        ("k", 1, 1, INFO),
        ("k", 10, 1, INFO),
        ("k", 5, 5, INFO),
        ("k", 0, None, INFO),  # no header check asked for
        ("k", 99, 1, None),  # no tab check asked for
        (None, 3, None, None),
    ],
)
def test_check_watermark_passes(key, last_row, header_row, info):
    check_watermark(key, last_row, header_row, info)


@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("sheets_to_kafka.s.gid7.t", "the watermark Variable 'sheets_to_kafka.s.gid7.t'"),
        (None, "the watermark"),
        ("", "the watermark"),
    ],
)
@pytest.mark.parametrize(("last_row", "header_row"), [(0, 1), (2, 3)])
def test_check_watermark_above_the_header(key, where, last_row, header_row):
    with pytest.raises(WatermarkError) as info:
        check_watermark(key, last_row, header_row, INFO)
    assert str(info.value) == (
        f"{where} says last_row={last_row}, above the header row {header_row}; set it to {header_row} or more."
    )


@pytest.mark.parametrize(("key", "where"), [("k", "the watermark Variable 'k'"), (None, "the watermark")])
@pytest.mark.parametrize("last_row", [11, 1000])
def test_check_watermark_past_the_tabs_end(key, where, last_row):
    with pytest.raises(WatermarkError) as info:
        check_watermark(key, last_row, 1, INFO)
    assert str(info.value) == (
        f'{where} says rows up to {last_row} are done, but tab "Bob\'s tab" now has only 10 rows: rows were '
        "deleted. Check the topic, then set the Variable's last_row to the last row already published (or "
        "delete it to republish all)."
    )


def test_check_watermark_checks_the_header_first():
    tiny = SheetInfo("s", "", "UTC", 0, "t", 0, 1, ())
    with pytest.raises(WatermarkError, match="above the header row"):
        check_watermark("k", 0, 2, tiny)
