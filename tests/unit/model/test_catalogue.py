"""The catalogue's rules (pure): what an entry may say, how names and patterns resolve, what cannot be twice."""

from __future__ import annotations

import pytest

from airflow_provider_sheets.model.catalogue import CatalogueError, Tab, check_entries, expand, label

TABS = {
    "S1": [
        Tab("Form Responses 1", 0),
        Tab("Form Responses 2", 11),
        Tab("Old", 12, hidden=True),
        Tab("Chart", 13, grid=False),
    ],
    "S2": [Tab("설문 응답", 0), Tab("2026-11", 5), Tab("2026-12", 6), Tab("Notes", 7)],
}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "non-empty list"),
        ({"spreadsheet_id": "S1"}, "non-empty list"),
        (["S1"], "entry 1 is not a mapping"),
        ([{"spreadsheet_id": "S1"}], "entry 1 has no topic"),
        ([{"topic": "t"}], "entry 1 has no spreadsheet_id"),
        ([{"spreadsheet_id": "S1", "topic": "t", "keycolumn": "Email"}], "unknown key(s) 'keycolumn'"),
    ],
)
def test_an_entry_that_cannot_be_used_is_named(entries, message):
    with pytest.raises(CatalogueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_entries(entries)


@pytest.mark.parametrize(
    ("sheet_name", "titles"),
    [
        (None, ["Form Responses 1"]),
        ("Form Responses 2", ["Form Responses 2"]),
        ("Old", ["Old"]),  # named exactly: taken though hidden
        ("*", ["Form Responses 1", "Form Responses 2"]),  # no hidden tab, no chart sheet
        ("Form*", ["Form Responses 1", "Form Responses 2"]),
        ("Nope*", []),
    ],
)
def test_names_and_patterns_resolve_against_the_tabs(sheet_name, titles):
    entries = check_entries([{"spreadsheet_id": "S1", "sheet_name": sheet_name, "topic": "t"}])
    assert [e["sheet_name"] for e in expand(entries, TABS)] == titles


def test_a_non_ascii_tab_and_per_entry_arguments_are_kept():
    entries = check_entries(
        [
            {
                "spreadsheet_id": "S2",
                "sheet_name": "설문 응답",
                "topic": "k",
                "key_column": "Email",
                "value_format": "avro",
            }
        ]
    )
    (entry,) = expand(entries, TABS)
    assert entry == {
        "spreadsheet_id": "S2",
        "sheet_name": "설문 응답",
        "topic": "k",
        "key_column": "Email",
        "value_format": "avro",
    }
    assert label(entry) == "설문 응답 → k"


def test_a_missing_tab_lists_the_tabs():
    entries = check_entries([{"spreadsheet_id": "S1", "sheet_name": "Form Responses 3", "topic": "t"}])
    with pytest.raises(CatalogueError, match=r"no tab 'Form Responses 3'; its tabs are: 'Form Responses 1', "):
        expand(entries, TABS)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [
                {"spreadsheet_id": "S2", "sheet_name": "2026-*", "topic": "a"},
                {"spreadsheet_id": "S2", "sheet_name": "2026-11", "topic": "a"},
            ],
            "tab '2026-11' of spreadsheet S2 goes to topic 'a' twice",
        ),
        (
            [
                {"spreadsheet_id": "S1", "sheet_name": "Form Responses 1", "topic": "a", "watermark_key": "w"},
                {"spreadsheet_id": "S2", "sheet_name": "Notes", "topic": "b", "watermark_key": "w"},
            ],
            "watermark_key 'w' is shared by two tabs",
        ),
        (
            [{"spreadsheet_id": "S2", "sheet_name": "2026-*", "topic": "a", "watermark_key": "w"}],
            "watermark_key 'w' is shared by two tabs",
        ),
    ],
)
def test_a_tab_or_a_watermark_named_twice_is_refused(entries, message):
    with pytest.raises(CatalogueError, match=message):
        expand(check_entries(entries), TABS)


def test_the_same_tab_to_two_topics_is_two_tasks():
    entries = check_entries([{"spreadsheet_id": "S1", "topic": "a"}, {"spreadsheet_id": "S1", "topic": "b"}])
    assert [(e["sheet_name"], e["topic"]) for e in expand(entries, TABS)] == [
        ("Form Responses 1", "a"),
        ("Form Responses 1", "b"),
    ]
