"""What a batch run did: the operator's return value (XCom) and its last log line."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Summary:
    """
    One batch run, as counted (not derived): ``rows_published`` are the records the run handed to
    the topic and Kafka acknowledged (``0`` in a dry run); ``rows_selected`` the rows the run chose
    (all after the watermark, or a backfill's interval); ``empty_rows_skipped`` the fully empty rows
    among those read.
    """

    run_type: str
    mode: str
    dry_run: bool
    spreadsheet_id: str
    sheet_name: str
    sheet_id: int
    topic: str
    watermark_key: str
    watermark_before: int
    watermark_after: int
    rows_published: int
    rows_selected: int
    rows_dead_lettered: int
    delivery: str
    empty_rows_skipped: int
    first_row: int | None
    last_row: int | None
    pages: int
    sheets_requests: int
    duration_s: float
    interval: tuple[datetime, datetime] | None = None
    #: a reconcile run's records already right in the topic (not published again), and tombstones sent
    rows_unchanged: int = 0
    rows_deleted: int = 0
    #: typed values: cells kept as their text because they disagree with their column's number format
    typed_fallbacks: int = 0
    #: records stamped with the publish time: their event time is older than the topic keeps
    rows_restamped: int = 0
    #: the tab's field names and their columns' number format types (lineage's schema; not in the XCom)
    fields: tuple[str, ...] = ()
    column_types: tuple[str | None, ...] = ()

    @property
    def rows_per_s(self) -> float | None:
        return round(self.rows_published / self.duration_s, 1) if self.duration_s > 0 else None

    def as_xcom(self) -> dict[str, Any]:
        """JSON-serialisable; ``rows_acked`` repeats ``rows_published`` (every published row is acknowledged)."""
        values: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if name not in ("interval", "fields", "column_types"):
                values[name] = value
            if name == "rows_published":
                values["rows_acked"] = value
        values["rows_per_s"] = self.rows_per_s
        interval = self.interval
        if interval is not None:
            values["interval_start"] = interval[0].isoformat()
            values["interval_end"] = interval[1].isoformat()
        return values
