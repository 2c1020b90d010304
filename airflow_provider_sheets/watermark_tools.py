"""Watermark tools: show, set, reset, and rebuild from the topic's ``sheets.row`` headers."""

from __future__ import annotations

from typing import Any

from airflow_provider_sheets.errors import WatermarkError
from airflow_provider_sheets.kafka import scan_topic
from airflow_provider_sheets.watermark import Watermark, WatermarkStore


def highest_published_row(
    config: dict[str, Any], topic: str, spreadsheet_id: str, sheet_id: int, timeout: float = 120.0
) -> tuple[int | None, int]:
    """
    Scan ``topic`` from the start and return the highest ``sheets.row`` header among the records of
    this spreadsheet and tab (``sheets.spreadsheet_id`` and ``sheets.sheet_id``), and how many
    records were scanned.
    """
    want_sheet = spreadsheet_id.encode()
    want_gid = str(sheet_id).encode()
    highest: int | None = None
    scanned = 0
    for msg in scan_topic(config, topic, timeout):
        scanned += 1
        headers = dict(msg.headers() or [])
        if headers.get("sheets.spreadsheet_id") == want_sheet and headers.get("sheets.sheet_id") == want_gid:
            row = int(headers.get("sheets.row", b"0") or 0)
            highest = row if highest is None else max(highest, row)
    return highest, scanned


def set_watermark(key: str, last_row: int, **fields: Any) -> Watermark:
    """Set ``last_row`` (keeping the other fields of an existing watermark, minus its row hash)."""
    if last_row < 1:
        raise WatermarkError(f"last_row must be at least 1 (1 = only the header is done), got {last_row}")
    store = WatermarkStore(key)
    current = store.get()
    watermark = current or Watermark(last_row=last_row)
    watermark.last_row = last_row
    watermark.last_row_hash = None  # the row behind the new position was not seen by a run
    for name, value in fields.items():
        setattr(watermark, name, value)
    return store.set(watermark)


def reset_watermark(key: str) -> bool:
    """Delete the watermark Variable (the next run publishes every row); ``False`` if it was absent."""
    from airflow.sdk import Variable

    if WatermarkStore(key).get() is None:
        return False
    Variable.delete(key)
    return True
