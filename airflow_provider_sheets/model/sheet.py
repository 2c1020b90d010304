"""What the Sheets API tells about a tab, and a page of its rows (plain values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SheetInfo:
    """What ``spreadsheets.get`` tells about one tab."""

    spreadsheet_id: str
    spreadsheet_title: str
    time_zone: str
    sheet_id: int
    title: str
    row_count: int
    column_count: int
    tabs: tuple[str, ...]


@dataclass(frozen=True)
class Page:
    """
    Rows ``first_row`` .. ``last_row`` of a tab (``rows`` may be shorter: trailing empties dropped).

    :param all_text: every cell is a ``str`` (the reader checked it while decoding), so the mapper
        need not check the cells' types.
    """

    first_row: int
    last_row: int
    rows: list[list[Any]]
    all_text: bool = False

    @property
    def full(self) -> bool:
        """Whether every row of the span came back (the tab may go on right after it)."""
        return bool(self.rows) and len(self.rows) == self.last_row - self.first_row + 1
