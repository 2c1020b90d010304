"""What the Sheets API tells about a tab, and a page of its rows (plain values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: ``valueRenderOption`` of a values request: what a person sees, the raw values, or the formulas.
RENDER_OPTIONS = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")


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
    #: ``properties.locale``: how the spreadsheet formats dates and numbers (``en_US``, ``en_GB``…)
    locale: str = "en_US"


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
