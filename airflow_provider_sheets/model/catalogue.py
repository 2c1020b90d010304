"""
A catalogue of what a fleet moves (pure): entries of ``spreadsheet_id``, ``sheet_name`` (a tab's
title, a glob pattern, or ``"*"`` for every visible grid tab), ``topic``, and any of the operator's
per-tab arguments; checked with errors that name the entry and the fix, and expanded against the
tabs of each spreadsheet into one operator's arguments per tab.

Rules:

* ``spreadsheet_id`` and ``topic`` are required; ``sheet_name`` defaults to the first visible tab;
* a key that is not an operator argument this catalogue accepts is refused, listing them;
* two entries (after expansion) must not name the same spreadsheet, tab and topic, nor share a
  watermark (the same ``watermark_key``), since two tasks would move one watermark;
* a pattern (``*``, ``?``, ``[…]``) matches visible grid tabs only (not hidden tabs, not chart
  sheets); a tab named exactly is taken even when hidden, and must exist.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: the operator arguments an entry may set (besides spreadsheet_id, sheet_name, topic)
ENTRY_ARGUMENTS = frozenset(
    {
        "key_column",
        "value_format",
        "key_format",
        "typed_values",
        "delivery",
        "watermark_key",
        "header_row",
        "timestamp_column",
        "event_time_column",
        "dead_letter_topic",
        "fingerprint_topic",
        "on_drift",
        "page_size",
        "max_rows",
        "state_topic",
        "gcp_conn_id",
        "kafka_config_id",
        "schema_registry_conn_id",
        "api_endpoint",
    }
)
_REQUIRED = ("spreadsheet_id", "topic")


class CatalogueError(ValueError):
    """The catalogue cannot be used; the message names the entry and what to change."""


@dataclass(frozen=True)
class Tab:
    """A tab of a spreadsheet, as ``spreadsheets.get`` describes it."""

    title: str
    sheet_id: int
    grid: bool = True
    hidden: bool = False


def _is_pattern(name: str) -> bool:
    return any(char in name for char in "*?[")


def check_entries(entries: Any) -> list[dict[str, Any]]:
    """The catalogue's entries, checked one by one (types and keys); :class:`CatalogueError` if not."""
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(
            "the catalogue must be a non-empty list of entries ({spreadsheet_id, sheet_name, topic, …})"
        )
    checked = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise CatalogueError(f"entry {number} is not a mapping: {entry!r}")
        missing = [key for key in _REQUIRED if not str(entry.get(key) or "").strip()]
        if missing:
            raise CatalogueError(f"entry {number} has no {' and no '.join(missing)}: every entry needs both")
        unknown = sorted(set(entry) - ENTRY_ARGUMENTS - {"spreadsheet_id", "sheet_name", "topic"})
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise CatalogueError(
                f"entry {number} ({entry['spreadsheet_id']}) has unknown key(s) {names}; an entry takes "
                f"spreadsheet_id, sheet_name, topic and {', '.join(sorted(ENTRY_ARGUMENTS))}"
            )
        checked.append(dict(entry))
    return checked


def expand(entries: Sequence[Mapping[str, Any]], tabs: Mapping[str, Sequence[Tab]]) -> list[dict[str, Any]]:
    """
    One operator's arguments per tab: each entry's ``sheet_name`` resolved against ``tabs`` (the
    tabs of each spreadsheet), then the whole checked for tabs and watermarks named twice.
    """
    out: list[dict[str, Any]] = []
    for number, entry in enumerate(entries, start=1):
        for title in _titles(number, entry, tabs.get(str(entry["spreadsheet_id"]), ())):
            out.append({**entry, "sheet_name": title})
    _check_unique(out)
    return out


def _titles(number: int, entry: Mapping[str, Any], tabs: Sequence[Tab]) -> list[str]:
    name = entry.get("sheet_name")
    where = f"entry {number} ({entry['spreadsheet_id']})"
    if not name:
        visible = [tab.title for tab in tabs if tab.grid and not tab.hidden]
        if not visible:
            raise CatalogueError(f"{where}: the spreadsheet has no visible grid tab; name one with sheet_name")
        return visible[:1]
    if _is_pattern(str(name)):
        return [tab.title for tab in tabs if tab.grid and not tab.hidden and fnmatch.fnmatchcase(tab.title, str(name))]
    if not any(tab.title == name for tab in tabs):
        titles = ", ".join(repr(tab.title) for tab in tabs) or "none"
        raise CatalogueError(f"{where}: no tab {name!r}; its tabs are: {titles}")
    return [str(name)]


def _check_unique(resolved: Sequence[Mapping[str, Any]]) -> None:
    seen: dict[tuple[str, str, str], int] = {}
    keys: dict[str, int] = {}
    for index, entry in enumerate(resolved):
        place = (str(entry["spreadsheet_id"]), str(entry["sheet_name"]), str(entry["topic"]))
        if place in seen:
            raise CatalogueError(
                f"tab {place[1]!r} of spreadsheet {place[0]} goes to topic {place[2]!r} twice (from two entries, or a "
                f"pattern and a name): two tasks would publish the same rows; keep one entry"
            )
        seen[place] = index
        key = entry.get("watermark_key")
        if key:
            if key in keys:
                raise CatalogueError(
                    f"watermark_key {key!r} is shared by two tabs ({place[1]!r} and another): each tab needs its own "
                    f"watermark; drop watermark_key to use the default per spreadsheet, tab and topic"
                )
            keys[str(key)] = index


def label(entry: Mapping[str, Any]) -> str:
    """How a mapped task names its tab in the UI (``map_index_template``'s text): ``<tab> → <topic>``."""
    return f"{entry['sheet_name']} → {entry['topic']}"
