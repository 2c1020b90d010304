"""
A fleet's catalogue resolved into one operator's arguments per tab: read (JSON or YAML, as an Airflow
Variable holds it), checked, and expanded against each spreadsheet's tabs with one
``spreadsheets.get`` per spreadsheet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from airflow_provider_sheets.errors import SheetsConfigError
from airflow_provider_sheets.model.catalogue import CatalogueError, Tab, check_entries, expand


def parse_catalogue(text: str) -> Any:
    """A catalogue's text: JSON, or YAML (a superset of it, for people writing it by hand)."""
    try:
        return json.loads(text)
    except ValueError:
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise SheetsConfigError(f"the catalogue is neither JSON nor YAML: {err}") from None


def resolve(text: str, tabs_of: Callable[[dict[str, Any]], list[Tab]], only: str | None = None) -> list[dict[str, Any]]:
    """
    The operator arguments of every tab the catalogue names (``only``: the one ``<spreadsheet id>/<tab>``).

    :param tabs_of: the tabs of an entry's spreadsheet (called once per spreadsheet and connection).
    """
    try:
        entries = check_entries(parse_catalogue(text))
        tabs: dict[str, list[Tab]] = {}
        for entry in entries:
            spreadsheet = str(entry["spreadsheet_id"])
            if spreadsheet not in tabs:
                tabs[spreadsheet] = tabs_of(entry)
        resolved = expand(entries, tabs)
    except CatalogueError as err:
        raise SheetsConfigError(f"catalogue: {err}") from None
    if only:
        chosen = [e for e in resolved if f"{e['spreadsheet_id']}/{e['sheet_name']}" == only]
        if not chosen:
            names = ", ".join(f"{e['spreadsheet_id']}/{e['sheet_name']}" for e in resolved)
            raise SheetsConfigError(f"the catalogue has no tab {only!r}; it has: {names}")
        return chosen
    return resolved
