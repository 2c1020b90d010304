"""Count the rows after the watermark with one small request: the check shared by the sensor and the trigger."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from airflow_provider_sheets.errors import SheetsAccessError, SheetsConfigError
from airflow_provider_sheets.hooks.sheets import SheetsReader
from airflow_provider_sheets.model.a1 import A1Range
from airflow_provider_sheets.model.mapping import is_empty_row
from airflow_provider_sheets.model.sheet import SheetInfo
from airflow_provider_sheets.pipeline.tab import check_watermark
from airflow_provider_sheets.settings import as_int

log = logging.getLogger(__name__)

#: Rows one probe looks at after the watermark when ``probe_rows`` is not given (at least ``min_rows``).
DEFAULT_PROBE_ROWS = 200

#: Transient failures in a row tolerated (logged, counted as "nothing new yet") before a probe gives up.
MAX_TRANSIENT_FAILURES = 5


def default_probe_rows(min_rows: int) -> int:
    """The probe window when ``probe_rows`` is not given: ``max(min_rows, 200)``."""
    return max(min_rows, DEFAULT_PROBE_ROWS)


def probe_range(info: SheetInfo, after_row: int, probe_rows: int) -> A1Range | None:
    """
    The block ``A{after_row+1}:{last column}{after_row+probe_rows}`` of the tab, or ``None`` when
    ``after_row`` is the grid's last row (no cell exists after it, so there is nothing to ask).

    The end may lie past the grid: the API clips it, so rows added since ``info`` was read still count.
    """
    if after_row >= info.row_count:
        return None
    return A1Range.rows(info.title, after_row + 1, after_row + probe_rows, max(info.column_count, 1))


def count_filled(rows: Sequence[Sequence[Any]]) -> int:
    """The number of rows holding at least one non-blank cell."""
    return sum(1 for row in rows if not is_empty_row(row))


def is_retryable(err: BaseException) -> bool:
    """
    True for failures that a later poll may not meet: quota (429), server errors (5xx) and the
    network, each already retried by the Google client (the connection's ``num_retries``).
    A missing sheet, a denied permission, a bad range or a bad watermark are not retryable.
    """
    if isinstance(err, SheetsConfigError):
        return False
    if isinstance(err, (SheetsAccessError, OSError)):
        return True
    try:
        from google.auth.exceptions import TransportError
        from httplib2 import HttpLib2Error
    except ImportError:  # pragma: no cover - both ship with the google provider
        return False
    return isinstance(err, (TransportError, HttpLib2Error))


class NewRowsProbe:
    """
    Counts the non-empty rows after a watermark row, one bounded ``values:batchGet`` per call.

    The tab is resolved (``spreadsheets.get``) once and cached. When the cached grid ends at the
    watermark, the tab is described again (at most once per call): the grid grows as rows arrive.
    Not thread-safe; use one probe per poller.

    :param reader: the Sheets reader (holds the ``GSheetsHook``).
    :param spreadsheet_id: the spreadsheet id.
    :param sheet_name: the tab title; ``None`` for the first tab.
    :param probe_rows: how many rows after the watermark one call looks at.
    :param watermark_key: the watermark Variable's key, named in error messages.
    :param logger: where to log tolerated failures (the task's or the trigger's log).
    """

    def __init__(
        self,
        reader: SheetsReader,
        spreadsheet_id: str,
        sheet_name: str | None,
        probe_rows: int,
        watermark_key: str | None = None,
        logger: Any = None,
    ) -> None:
        self.reader = reader
        self.spreadsheet_id = spreadsheet_id
        self.sheet_name = sheet_name
        self.probe_rows = as_int("probe_rows", probe_rows, minimum=1)
        self.watermark_key = watermark_key
        self.info: SheetInfo | None = None
        self.after_row: int | None = None
        self.transient_failures = 0
        self.log = logger or log

    def describe(self) -> SheetInfo:
        """Resolve the tab again (one ``spreadsheets.get``) and cache it."""
        self.info = self.reader.describe(self.spreadsheet_id, self.sheet_name)
        return self.info

    def tab(self) -> SheetInfo:
        """The cached tab, resolved on first use."""
        return self.info if self.info is not None else self.describe()

    def count(self, after_row: int | Callable[[SheetInfo], int]) -> int:
        """
        Non-empty rows among ``after_row + 1 .. after_row + probe_rows``.

        :param after_row: the watermark row, or a function of the tab giving it (the default
            watermark key contains the tab's id); the value used is kept in :attr:`after_row`.
        :raises WatermarkError: the tab now ends before ``after_row`` (rows were deleted).
        """
        fresh = self.info is None
        info = self.tab()
        if callable(after_row):
            after_row = after_row(info)
        self.after_row = after_row
        if after_row >= info.row_count and not fresh:
            info, fresh = self.describe(), True
        self._check(after_row, info)
        block = probe_range(info, after_row, self.probe_rows)
        if block is None:
            return 0
        try:
            (rows,) = self.reader.batch_get(self.spreadsheet_id, [block])
        except SheetsConfigError:
            if fresh:
                raise
            # HTTP 400 on a cached tab: its grid shrank ("exceeds grid limits") or it was renamed.
            # Described afresh, the range is asked again once: a second 400 is the caller's.
            info = self.describe()
            self._check(after_row, info)
            block = probe_range(info, after_row, self.probe_rows)
            if block is None:
                return 0
            (rows,) = self.reader.batch_get(self.spreadsheet_id, [block])
        return count_filled(rows)

    def poll(self, after_row: int | Callable[[SheetInfo], int]) -> int | None:
        """
        :meth:`count`, but a retryable failure is logged and gives ``None`` ("try again later"),
        up to :data:`MAX_TRANSIENT_FAILURES` in a row; then, or for any other failure, it raises.
        """
        try:
            found = self.count(after_row)
        except Exception as err:
            if not is_retryable(err):
                raise
            self.transient_failures += 1
            if self.transient_failures >= MAX_TRANSIENT_FAILURES:
                raise
            self.log.warning(
                "Probing spreadsheet %r failed (%s/%s in a row, will try again at the next poke): %s",
                self.spreadsheet_id,
                self.transient_failures,
                MAX_TRANSIENT_FAILURES,
                err,
            )
            return None
        self.transient_failures = 0
        return found

    def _check(self, after_row: int, info: SheetInfo) -> None:
        check_watermark(self.watermark_key, after_row, info=info)
