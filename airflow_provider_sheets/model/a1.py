"""A1 notation (pure): column letters, tab-name quoting, rectangular ranges."""

from __future__ import annotations

import re
from typing import NamedTuple

#: Google's largest column index (a sheet holds at most 18,278 columns: ``ZZZ``).
MAX_COLUMNS = 18_278

_CELL_RE = re.compile(r"^([A-Za-z]{0,3})(\d*)$")


def column_letter(index: int) -> str:
    """
    Return the A1 letters of a 1-based column index (1 → ``A``, 27 → ``AA``).

    :param index: column number, 1 to 18,278.
    """
    if not 1 <= index <= MAX_COLUMNS:
        raise ValueError(f"column index {index} is outside 1..{MAX_COLUMNS}")
    letters = ""
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def column_index(letters: str) -> int:
    """Return the 1-based index of A1 column letters (``A`` → 1, ``aa`` → 27)."""
    if not letters or not letters.isalpha() or len(letters) > 3:
        raise ValueError(f"{letters!r} is not a column reference such as 'A' or 'AB'")
    index = 0
    for char in letters.upper():
        index = index * 26 + (ord(char) - ord("A") + 1)
    if index > MAX_COLUMNS:
        raise ValueError(f"column {letters!r} is beyond the last column ZZZ")
    return index


def quote_sheet_name(title: str) -> str:
    """Quote a tab title for A1 notation: ``Form Responses 1`` → ``'Form Responses 1'``."""
    return "'" + title.replace("'", "''") + "'"


class A1Range(NamedTuple):
    """
    A rectangular A1 range on one tab; ``None`` bounds are open (``A2:J`` has no end row).

    ``str()`` gives the A1 notation back, with the tab title always quoted.
    """

    sheet: str
    start_col: int | None = None
    start_row: int | None = None
    end_col: int | None = None
    end_row: int | None = None

    def __str__(self) -> str:
        start = (column_letter(self.start_col) if self.start_col else "") + (
            str(self.start_row) if self.start_row else ""
        )
        end = (column_letter(self.end_col) if self.end_col else "") + (str(self.end_row) if self.end_row else "")
        cells = f"{start}:{end}" if end else start
        return f"{quote_sheet_name(self.sheet)}!{cells}" if cells else quote_sheet_name(self.sheet)

    @classmethod
    def rows(cls, sheet: str, first_row: int, last_row: int, last_col: int) -> A1Range:
        """The block ``A{first_row}:{last_col}{last_row}``."""
        if first_row < 1 or last_row < first_row:
            raise ValueError(f"invalid row span {first_row}..{last_row}")
        return cls(sheet, 1, first_row, last_col, last_row)

    @classmethod
    def parse(cls, text: str) -> A1Range:
        """Parse ``'Tab ''x'''!A2:J10``, ``Tab!A:A``, ``Tab!2:5`` or ``'Tab'``."""
        sheet, sep, cells = _split_sheet(text)
        if not sep:
            return cls(sheet)
        start, _, end = cells.partition(":")
        start_col, start_row = _parse_cell(start, text)
        end_col, end_row = _parse_cell(end, text) if end else (None, None)
        return cls(sheet, start_col, start_row, end_col, end_row)


def _split_sheet(text: str) -> tuple[str, str, str]:
    if text.startswith("'"):
        i = 1
        title = []
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":
                    title.append("'")
                    i += 2
                    continue
                rest = text[i + 1 :]
                if rest and not rest.startswith("!"):
                    break
                return "".join(title), rest[:1], rest[1:]
            title.append(text[i])
            i += 1
        raise ValueError(f"unbalanced quotes in A1 range {text!r}")
    sheet, sep, cells = text.rpartition("!")
    if not sep:
        return text, "", ""
    return sheet, sep, cells


def _parse_cell(cell: str, text: str) -> tuple[int | None, int | None]:
    match = _CELL_RE.match(cell)
    if not match or not cell:
        raise ValueError(f"{cell!r} in {text!r} is not an A1 cell reference")
    letters, digits = match.groups()
    return (column_index(letters) if letters else None, int(digits) if digits else None)
