"""A catalogue's text resolved (JSON or YAML, one tabs request per spreadsheet, one entry on demand)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_sheets.errors import SheetsConfigError
from airflow_provider_sheets.model.catalogue import Tab
from airflow_provider_sheets.pipeline.fleet import resolve

TABS = {"S1": [Tab("A", 0), Tab("B", 1)], "S2": [Tab("응답", 0)]}
YAML = """
- spreadsheet_id: S1
  sheet_name: "*"
  topic: t1
- spreadsheet_id: S2
  topic: t2
  key_column: Email
"""


class TabsOf:
    """Records which spreadsheets were described."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, entry: dict) -> list[Tab]:
        self.asked.append(entry["spreadsheet_id"])
        return TABS[entry["spreadsheet_id"]]


@pytest.mark.parametrize(
    "text",
    [
        YAML,
        json.dumps(
            [
                {"spreadsheet_id": "S1", "sheet_name": "*", "topic": "t1"},
                {"spreadsheet_id": "S2", "topic": "t2", "key_column": "Email"},
            ]
        ),
    ],
)
def test_json_and_yaml_give_the_same_tabs(text):
    tabs_of = TabsOf()
    resolved = resolve(text + ("\n" if text is YAML else ""), tabs_of)
    assert [(e["spreadsheet_id"], e["sheet_name"], e["topic"]) for e in resolved] == [
        ("S1", "A", "t1"),
        ("S1", "B", "t1"),
        ("S2", "응답", "t2"),
    ]
    assert resolved[2]["key_column"] == "Email"
    assert tabs_of.asked == ["S1", "S2"], "one request per spreadsheet"


def test_only_one_entry_on_demand_and_an_unknown_one_is_named():
    assert [e["sheet_name"] for e in resolve(YAML, TabsOf(), only="S1/B")] == ["B"]
    with pytest.raises(SheetsConfigError, match=r"the catalogue has no tab 'S1/C'; it has: S1/A, S1/B, S2/응답"):
        resolve(YAML, TabsOf(), only="S1/C")


@pytest.mark.parametrize(
    ("text", "message"),
    [("- [unclosed", "neither JSON nor YAML"), ("[]", "catalogue: the catalogue must be a non-empty list")],
)
def test_a_catalogue_that_cannot_be_read_says_why(text, message):
    with pytest.raises(SheetsConfigError, match=message):
        resolve(text, TabsOf())
