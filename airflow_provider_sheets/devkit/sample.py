"""A sample Google Forms responses sheet: header and deterministic rows."""

from __future__ import annotations

from datetime import datetime, timedelta

FORMS_TAB = "Form Responses 1"
FORMS_HEADER = ["Timestamp", "Name", "Email Address", "How did you hear about us?", "Rating", "Comments"]

_NAMES = ["Ji-woo Kim", "Alex Morgan", "Zoë Martin", "Priya Shah", "Mateo García", "Hana Sato", "Sam Lee"]
_CHANNELS = ["Friend", "Meetup", "Search", "Newsletter", "Conference"]
_COMMENTS = ["", "Great session!", "More Kafka Connect, please 🙏", "", "카프카 스터디 최고", "Slides?"]


def forms_timestamp(value: datetime) -> str:
    """A timestamp as Google Forms writes it in an en_US sheet: ``11/2/2026 9:07:01``."""
    return f"{value.month}/{value.day}/{value.year} {value.hour}:{value.minute:02d}:{value.second:02d}"


def as_submitted(row: list[object]) -> list[str]:
    """A row as text, the way a form submission arrives through ``values.append``."""
    return [forms_timestamp(cell) if isinstance(cell, datetime) else str(cell) for cell in row]


def forms_rows(count: int, start: int = 0, first_time: datetime | None = None) -> list[list[object]]:
    """
    ``count`` responses numbered from ``start``; ragged like real Forms rows (an unanswered
    optional last question leaves the row shorter).
    """
    base = first_time or datetime(2026, 11, 2, 9, 0, 0)
    rows: list[list[object]] = []
    for n in range(start, start + count):
        name = _NAMES[n % len(_NAMES)]
        row: list[object] = [
            base + timedelta(minutes=7 * n, seconds=n % 60),
            name,
            name.split()[0].lower() + f"{n}@example.com",
            _CHANNELS[n % len(_CHANNELS)],
            1 + n % 5,
            _COMMENTS[n % len(_COMMENTS)],
        ]
        while row and row[-1] == "":
            row.pop()
        rows.append(row)
    return rows
