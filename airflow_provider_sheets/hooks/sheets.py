"""Read the rows of one tab after a given row, page by page, through the google provider's hook."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, TypeVar

from airflow.providers.google.common.hooks.base_google import get_field
from airflow.providers.google.suite.hooks.sheets import GSheetsHook

from airflow_provider_sheets.errors import SheetNotFoundError, SheetsAccessError
from airflow_provider_sheets.hooks.quota import DEFAULT_QUOTA_PER_MINUTE, ReadPacer, pacer
from airflow_provider_sheets.hooks.shared_quota import SharedWindow, configured_url
from airflow_provider_sheets.model.a1 import A1Range
from airflow_provider_sheets.model.catalogue import Tab
from airflow_provider_sheets.model.sheet import Page, SheetInfo
from airflow_provider_sheets.settings import DEFAULT_PAGE_SIZE, as_int

__all__ = ["DEFAULT_PAGE_SIZE", "ClientTuning", "Page", "SheetInfo", "SheetsConnection", "SheetsReader"]

log = logging.getLogger(__name__)

T = TypeVar("T")


#: After empty pages the span grows up to this many times ``page_size`` …
MAX_EMPTY_SPAN_FACTOR = 16
#: … and never past this many cells in one request.
MAX_PAGE_CELLS = 500_000

#: Google recommends at most ~2 MB per request: after a page, the next one asks for fewer than
#: ``page_size`` rows when rows as wide as this page's would make the response larger than this.
MAX_PAGE_BYTES = 2_000_000
#: Rows of a page looked at to estimate how many bytes a row takes in the response …
ROW_SAMPLE = 32
#: … counting this many bytes per cell besides its text (quotes, comma, white space).
CELL_OVERHEAD = 6


#: A page request that timed out is asked again for half its rows this many times at most.
SHRINK_ATTEMPTS = 3

#: Rows of one column a request of :meth:`SheetsReader.column` asks for (~20 bytes each as serial numbers).
COLUMN_CHUNK = 50_000

#: What :meth:`SheetsReader.describe` needs of ``spreadsheets.get``: a partial response, without the
#: merges, conditional formats, named ranges and the rest a whole spreadsheet's metadata holds.
DESCRIBE_FIELDS = (
    "properties(title,timeZone,locale),"
    "sheets.properties(sheetId,title,index,sheetType,hidden,gridProperties(rowCount,columnCount))"
)
#: What :meth:`SheetsReader.number_formats` needs of ``spreadsheets.get`` with grid data, and how many
#: of the first data rows it looks at.
FORMAT_FIELDS = "sheets.data.rowData.values(effectiveValue,effectiveFormat.numberFormat.type)"
FORMAT_SAMPLE_ROWS = 20
#: What a ``values:batchGet`` response needs to carry.
VALUES_FIELDS = "spreadsheetId,valueRanges(range,majorDimension,values)"


#: Waits for a 429's ``Retry-After`` honoured at most, each of at most this many seconds.
RETRY_AFTER_ATTEMPTS = 3
MAX_RETRY_AFTER = 120.0


def retry_after(err: Any) -> float | None:
    """
    The seconds a 429 answer asks to wait (its ``Retry-After`` header, in seconds, up to
    :data:`MAX_RETRY_AFTER`), with up to 10% of jitter so that waiting readers do not return
    together; ``None`` for any other answer, or a 429 without the header.
    """
    response: Any = getattr(err, "resp", None)
    if int(getattr(response, "status", 0) or 0) != 429 or not hasattr(response, "get"):
        return None
    try:
        seconds = float(response.get("retry-after"))
    except (TypeError, ValueError):  # absent, or an HTTP date: the client's backoff was the wait
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER) * (1 + random.random() / 10)


def _kind_of(cell: dict[str, Any]) -> str | None:
    """A cell's number format type, or for the "Automatic" format what its value is (a number, a checkbox)."""
    kind = cell.get("effectiveFormat", {}).get("numberFormat", {}).get("type")
    if kind:
        return str(kind)
    value = cell.get("effectiveValue", {})
    return "BOOLEAN" if "boolValue" in value else "NUMBER" if "numberValue" in value else None


def _get(service: Any, **kwargs: Any) -> Any:
    """`spreadsheets.get <https://developers.google.com/workspace/sheets/api/reference/rest/v4/spreadsheets/get>`_"""
    return service.spreadsheets().get(**kwargs)


def _batch_get(service: Any, **kwargs: Any) -> Any:
    """`spreadsheets.values.batchGet <https://developers.google.com/workspace/sheets/api/reference/rest/v4/spreadsheets.values/batchGet>`_"""
    return service.spreadsheets().values().batchGet(**kwargs)


class ClientTuning(Protocol):
    """
    How the Google client is made faster (:mod:`airflow_provider_sheets.accel.google_client`); a
    reader without one uses the client as it comes.
    """

    def prepare(self, service: Any) -> None:
        """Adjust the client's ``Resource`` once, before its first request."""

    def all_text(self, rows: list[list[Any]]) -> bool:
        """Whether the decoder found every cell of these rows to be a string."""


@dataclass(frozen=True)
class SheetsConnection:
    """
    Where and as whom the Sheets API is called: the settings every reader of a caller (operator,
    sensor, trigger, watermark operator, stream runner) is built from, so none leaves one out.

    :param gcp_conn_id: the ``google_cloud_platform`` connection id.
    :param api_endpoint: a custom Sheets API endpoint (private endpoint or a local server).
    :param impersonation_chain: service account(s) to impersonate (one, or a chain).
    :param sheets_quota_per_minute: read requests a minute this process makes at most through the
        connection; ``None``: the connection's ``sheets_quota_per_minute`` extra, else 60 (Google's
        default per user); 0: no pacing.
    """

    gcp_conn_id: str = "google_cloud_default"
    api_endpoint: str | None = None
    impersonation_chain: str | Sequence[str] | None = None
    sheets_quota_per_minute: int | None = None

    def reader(
        self, value_render_option: str = "FORMATTED_VALUE", tuning: ClientTuning | None = None, typed: bool = False
    ) -> SheetsReader:
        """
        The one way a reader is built (callers get the tuned one from :func:`~.accel.reader`).

        :param typed: read unformatted values with serial-number date-times (typed values), whatever
            ``value_render_option`` says.
        """
        return SheetsReader(
            gcp_conn_id=self.gcp_conn_id,
            api_endpoint=self.api_endpoint or None,
            impersonation_chain=self.impersonation_chain,
            value_render_option="UNFORMATTED_VALUE" if typed else value_render_option,
            date_time_render_option="SERIAL_NUMBER" if typed else "FORMATTED_STRING",
            tuning=tuning,
            quota_per_minute=self.sheets_quota_per_minute,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable (a trigger's kwargs): a chain as a list."""
        chain = self.impersonation_chain
        return {
            "gcp_conn_id": self.gcp_conn_id,
            "api_endpoint": self.api_endpoint or None,
            "impersonation_chain": chain if chain is None or isinstance(chain, str) else list(chain),
            "sheets_quota_per_minute": self.sheets_quota_per_minute,
        }


class SheetsReader:
    """
    Incremental reader of a tab, built on :class:`GSheetsHook`.

    The hook handles the ``google_cloud_platform`` connection (key file, ADC, impersonation),
    ``api_endpoint`` and ``num_retries`` (429/5xx retried with exponential backoff by the client).

    :param gcp_conn_id: the Google connection id.
    :param api_endpoint: a custom Sheets API endpoint (private endpoint or a local server).
    :param impersonation_chain: service account(s) to impersonate.
    :param value_render_option: ``FORMATTED_VALUE`` (what a person sees; default),
        ``UNFORMATTED_VALUE`` or ``FORMULA``.
    :param date_time_render_option: ``SERIAL_NUMBER`` or ``FORMATTED_STRING`` (used with
        ``UNFORMATTED_VALUE``).
    :param tuning: makes the Google client faster (see :class:`ClientTuning`); ``None``: as it comes.
    :param quota_per_minute: the read budget (see :class:`SheetsConnection`); every request waits
        until it fits (:mod:`airflow_provider_sheets.hooks.quota`).
    """

    def __init__(
        self,
        gcp_conn_id: str = "google_cloud_default",
        api_endpoint: str | None = None,
        impersonation_chain: str | Sequence[str] | None = None,
        value_render_option: str = "FORMATTED_VALUE",
        date_time_render_option: str = "FORMATTED_STRING",
        tuning: ClientTuning | None = None,
        quota_per_minute: int | None = None,
    ) -> None:
        self.tuning = tuning
        self.quota_per_minute = quota_per_minute
        self.gcp_conn_id = gcp_conn_id
        self.api_endpoint = api_endpoint or None
        self.impersonation_chain = impersonation_chain
        self.value_render_option = value_render_option
        self.date_time_render_option = date_time_render_option
        self.requests = 0
        #: the cells of ``check_row`` from the last :meth:`read` (``[]`` when that row is empty)
        self.checked_row: list[Any] | None = None
        #: ``(row, cells)`` of the ``check_rows`` rows ending at ``check_row`` from the last :meth:`read`
        self.checked_rows: list[tuple[int, list[Any]]] = []
        #: the first page of the last :meth:`read` (also the first its iterator yields), or ``None``:
        #: what a drift check looks at without starting the iterator (whose prefetch thread must
        #: start in the process that iterates, a forked one maybe)
        self.first_page: Page | None = None
        #: rows a page asks for at most, since a request for more timed out (:meth:`_shrinking`)
        self.span_cap: int | None = None
        self._prepared = False
        # one request at a time: the page prefetch thread and the caller share one HTTP client
        self._lock = threading.Lock()

    @cached_property
    def hook(self) -> GSheetsHook:
        return GSheetsHook(
            gcp_conn_id=self.gcp_conn_id,
            impersonation_chain=self.impersonation_chain,
            api_endpoint=self.api_endpoint,
        )

    @cached_property
    def pacer(self) -> ReadPacer | None:
        """The process's read budget for this connection, or ``None`` when pacing is off (a budget of 0)."""
        budget = self.quota_per_minute
        if budget is None:
            extra = get_field(self.hook.extras, "sheets_quota_per_minute")
            name = f"the sheets_quota_per_minute extra of connection {self.gcp_conn_id!r}"
            budget = DEFAULT_QUOTA_PER_MINUTE if extra in (None, "") else as_int(name, extra, minimum=0)
        return pacer(self.gcp_conn_id, budget, self._shared_window) if budget > 0 else None

    def _shared_window(self) -> SharedWindow | None:
        """The fleet's window if ``[sheets_to_kafka] quota_redis_url`` is set: per service account, else connection."""
        url = configured_url()
        if not url:
            return None
        account = self._account()
        if account is None:
            log.info(
                "The fleet's Sheets read quota counts per connection (%s): its credentials name no service account.",
                self.gcp_conn_id,
            )
        return SharedWindow(url, account or f"connection:{self.gcp_conn_id}")

    def _call(self, what: str, spreadsheet_id: str, request: Callable[..., Any], /, **kwargs: Any) -> Any:
        """
        Make one request on the hook's client (``request(service, **kwargs)`` builds it), compact and
        with the connection's ``num_retries``; an ``HttpError`` becomes an error that names the fix.
        """
        from googleapiclient.errors import HttpError

        service = self.hook.get_conn()
        if not self._prepared:
            if self.tuning is not None:
                self.tuning.prepare(service)
            self._prepared = True
        attempt = 0
        while True:
            try:
                with self._lock:
                    if self.pacer is not None:
                        self.pacer.acquire(log)
                    self.requests += 1
                    return request(service, prettyPrint=False, **kwargs).execute(num_retries=self.hook.num_retries)
            except HttpError as err:
                attempt += 1
                wait = retry_after(err)
                if wait is None or attempt > RETRY_AFTER_ATTEMPTS:
                    raise SheetsAccessError.from_http_error(err, what, spreadsheet_id, self._account()) from None
                log.warning(
                    "Sheets answered 429 (quota) to %s, after the client's retries, with Retry-After: waiting "
                    "%.1f s (attempt %s of %s).",
                    what,
                    wait,
                    attempt,
                    RETRY_AFTER_ATTEMPTS,
                )
                time.sleep(wait)

    def after_fork(self) -> None:
        """In a forked child: a lock of this process's own (the parent's may be held by its thread)."""
        self._lock = threading.Lock()

    def _account(self) -> str | None:
        """The service account's e-mail (never its key), to say whom to share the sheet with."""
        try:
            email = getattr(self.hook.get_credentials(), "service_account_email", None)
        except Exception:  # noqa: BLE001 - only used to improve an error message
            return None
        return email if isinstance(email, str) and "@" in email else None

    def describe(self, spreadsheet_id: str, sheet_name: str | None = None) -> SheetInfo:
        """
        Resolve a tab (default: the first one) and its grid size with one ``spreadsheets.get``.

        :raises SheetNotFoundError: the tab does not exist; the message lists the tabs.
        """
        meta = self._metadata(spreadsheet_id)
        sheets = [s["properties"] for s in meta.get("sheets", [])]
        tabs = tuple(p["title"] for p in sheets)
        props = self._pick_tab(spreadsheet_id, sheets, sheet_name)
        grid = props.get("gridProperties", {})
        return SheetInfo(
            spreadsheet_id=spreadsheet_id,
            spreadsheet_title=meta.get("properties", {}).get("title", ""),
            time_zone=meta.get("properties", {}).get("timeZone", "Etc/UTC"),
            locale=meta.get("properties", {}).get("locale", "en_US"),
            sheet_id=int(props.get("sheetId", 0)),
            title=props["title"],
            row_count=int(grid.get("rowCount", 0)),
            column_count=int(grid.get("columnCount", 26)),
            tabs=tabs,
        )

    def _metadata(self, spreadsheet_id: str) -> dict[str, Any]:
        """The spreadsheet's title, time zone, locale and tabs (one ``spreadsheets.get`` with a ``fields`` mask)."""
        what = "read the spreadsheet's metadata"
        return self._call(what, spreadsheet_id, _get, spreadsheetId=spreadsheet_id, fields=DESCRIBE_FIELDS)

    def tabs(self, spreadsheet_id: str) -> list[Tab]:
        """Every tab of a spreadsheet, in order (one ``spreadsheets.get``): its title, gid, kind and visibility."""
        meta = self._call(
            "read the spreadsheet's metadata",
            spreadsheet_id,
            _get,
            spreadsheetId=spreadsheet_id,
            fields=DESCRIBE_FIELDS,
        )
        return [
            Tab(p["title"], int(p.get("sheetId", 0)), p.get("sheetType", "GRID") == "GRID", bool(p.get("hidden")))
            for p in (s["properties"] for s in meta.get("sheets", []))
        ]

    def number_formats(self, info: SheetInfo, first_row: int, rows: int = FORMAT_SAMPLE_ROWS) -> list[list[str | None]]:
        """
        The number format type (``DATE_TIME``, ``PERCENT``…) of each cell of ``rows`` rows from
        ``first_row``, with one ``spreadsheets.get`` (grid data, a ``fields`` mask); a cell in the
        "Automatic" format is ``NUMBER`` or ``BOOLEAN`` by its value, else ``None``.
        """
        last = min(first_row + rows - 1, info.row_count)
        if last < first_row:
            return []
        block = A1Range.rows(info.title, first_row, last, max(info.column_count, 1))
        meta = self._call(
            "read the columns' number formats",
            info.spreadsheet_id,
            _get,
            spreadsheetId=info.spreadsheet_id,
            ranges=[str(block)],
            includeGridData=True,
            fields=FORMAT_FIELDS,
        )
        found = []
        for sheet in meta.get("sheets", [])[:1]:
            for grid in sheet.get("data", [])[:1]:
                for row in grid.get("rowData", []):
                    found.append([_kind_of(cell) for cell in row.get("values", [])])
        return found

    def all_text(self, rows: list[list[Any]]) -> bool:
        """Whether the tuned decoder found every cell of ``rows`` to be a string."""
        return self.tuning is not None and self.tuning.all_text(rows)

    @staticmethod
    def _pick_tab(spreadsheet_id: str, sheets: list[dict[str, Any]], sheet_name: str | None) -> dict[str, Any]:
        """
        The tab named ``sheet_name`` (hidden or not), or the first visible grid tab: chart sheets
        (``sheetType: OBJECT``) hold no cells, and a hidden tab is not the one a person sees first.
        """
        tabs = ", ".join(repr(p["title"]) for p in sheets)
        if sheet_name:
            props = next((p for p in sheets if p["title"] == sheet_name), None)
            if props is None:
                raise SheetNotFoundError(
                    f"tab {sheet_name!r} not found in spreadsheet {spreadsheet_id!r}; tabs are: {tabs}. Set "
                    f"sheet_name to one of them (or leave it empty for the first visible tab)."
                )
        else:
            grids = [p for p in sheets if p.get("sheetType", "GRID") == "GRID" and not p.get("hidden")]
            if not grids:
                raise SheetNotFoundError(
                    f"spreadsheet {spreadsheet_id!r} has no visible tab of cells (tabs: {tabs or 'none'}); set "
                    f"sheet_name to the tab to read."
                )
            props = min(grids, key=lambda p: p.get("index", 0))
        if props.get("sheetType", "GRID") != "GRID":
            raise SheetNotFoundError(
                f"tab {props['title']!r} of spreadsheet {spreadsheet_id!r} is a {props.get('sheetType')} sheet (a "
                f"chart), not a tab of cells; set sheet_name to one of the other tabs: {tabs}."
            )
        return props

    def batch_get(
        self, spreadsheet_id: str, ranges: list[A1Range], *, serial: bool = False, major: str = "ROWS"
    ) -> list[list[list[Any]]]:
        """
        Fetch several ranges in one ``values:batchGet`` request; a missing ``values`` is ``[]``.

        :param serial: ask for ``UNFORMATTED_VALUE`` with ``SERIAL_NUMBER`` date-times whatever
            the reader's render options (cells as numbers, not as the locale shows them).
        :param major: ``ROWS``, or ``COLUMNS`` (each value list is a column).
        """
        response = self._call(
            "read values",
            spreadsheet_id,
            _batch_get,
            spreadsheetId=spreadsheet_id,
            ranges=[str(r) for r in ranges],
            majorDimension=major,
            valueRenderOption="UNFORMATTED_VALUE" if serial else self.value_render_option,
            dateTimeRenderOption="SERIAL_NUMBER" if serial else self.date_time_render_option,
            fields=VALUES_FIELDS,
        )
        value_ranges = response.get("valueRanges", [])
        if len(value_ranges) != len(ranges):
            raise SheetsAccessError(
                f"values:batchGet returned {len(value_ranges)} ranges for {len(ranges)} requested: "
                + json.dumps([str(r) for r in ranges])
            )
        return [vr.get("values", []) for vr in value_ranges]

    def column(
        self, info: SheetInfo, col: int, first_row: int, last_row: int, chunk: int = COLUMN_CHUNK
    ) -> Iterator[tuple[int, Any]]:
        """
        ``(row, cell)`` for the non-empty cells of column ``col`` (1-based) in rows ``first_row`` ..
        ``last_row``, read as serial numbers (see :meth:`batch_get`), ``chunk`` rows a request.
        """
        for start in range(first_row, last_row + 1, chunk):
            stop = min(start + chunk - 1, last_row)
            (values,) = self.batch_get(
                info.spreadsheet_id, [A1Range(info.title, col, start, col, stop)], serial=True, major="COLUMNS"
            )
            for offset, cell in enumerate(values[0] if values else []):
                if cell not in ("", None):
                    yield start + offset, cell

    def read(
        self,
        info: SheetInfo,
        after_row: int,
        page_size: int = DEFAULT_PAGE_SIZE,
        header_row: int = 1,
        max_rows: int | None = None,
        check_row: int | None = None,
        check_rows: int = 1,
    ) -> tuple[list[Any], Iterator[Page]]:
        """
        Return the header row and an iterator over pages of the rows after ``after_row``.

        The header and the first page come from one ``values:batchGet`` made here, so a run with
        nothing new costs one ``spreadsheets.get`` (:meth:`describe`) and one values request.
        Pages go on to the end of the tab's grid (no cell exists beyond it), so an empty or
        half-filled page never ends the read while rows follow it, and the cursor moves by the
        page's span, never by the number of rows returned.

        :param after_row: the last row already handled (the watermark).
        :param max_rows: read at most this many rows after ``after_row``.
        :param check_row: also fetch this row in the same request (the last published row, for
            drift detection); its cells are left in :attr:`checked_row`.
        :param check_rows: fetch this many rows ending at ``check_row`` (not above the header), all
            in :attr:`checked_rows` as ``(row, cells)``.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        last_col = max(info.column_count, 1)
        end = info.row_count if max_rows is None else min(info.row_count, after_row + max_rows)
        ranges = [A1Range.rows(info.title, header_row, header_row, last_col)]
        checking = check_row is not None and 1 <= check_row <= info.row_count
        if check_row is not None and checking:
            ranges.append(
                A1Range.rows(info.title, max(header_row + 1, check_row - check_rows + 1, 1), check_row, last_col)
            )
        start = after_row + 1

        def first_request(stop: int) -> list[list[list[Any]]]:
            page = [A1Range.rows(info.title, start, stop, last_col)] if start <= stop else []
            return self.batch_get(info.spreadsheet_id, ranges + page)

        first_end, values = self._shrinking(info, start, min(start + page_size - 1, end), first_request)
        header = values[0][0] if values[0] else []
        self.checked_row, self.checked_rows = None, []
        if check_row is not None:
            if checking and ranges[1].start_row is not None:
                top = ranges[1].start_row
                self.checked_rows = [(top + i, cells) for i, cells in enumerate(values[1])]
            cells_of = dict(self.checked_rows)
            self.checked_row = cells_of.get(check_row, [])
        self.first_page = None
        if start > end:
            return header, iter(())
        first = self.first_page = Page(start, first_end, values[-1], self.all_text(values[-1]))
        return header, self._pages(info, first, end, page_size, last_col)

    def _pages(self, info: SheetInfo, first: Page, end: int, page_size: int, last_col: int) -> Iterator[Page]:
        """
        Yield ``first``, then the following pages; while the caller works on a page, the next one is
        fetched in a background thread. At most one request runs ahead of the caller: the next
        page is requested only once the previous one has arrived, and when the caller stops
        iterating, nothing more is requested (a request already under way is waited for).
        """
        pool: ThreadPoolExecutor | None = None
        pending: Future[Page] | None = None
        try:
            page = first
            span = limit = page_size
            while True:
                if page.rows:
                    span = limit = min(self._rows_per_page(page.rows, page_size), self.span_cap or page_size)
                else:
                    span = self._grow(span, limit, last_col)
                start = page.last_row + 1
                if start <= end:
                    if pool is None:
                        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sheets-reader")
                    pending = pool.submit(self._fetch, info, start, min(start + span - 1, end), last_col)
                yield page
                if pending is None:
                    return
                page, pending = pending.result(), None
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, info: SheetInfo, start: int, stop: int, last_col: int) -> Page:
        def request(end: int) -> list[list[Any]]:
            (rows,) = self.batch_get(info.spreadsheet_id, [A1Range.rows(info.title, start, end, last_col)])
            return rows

        stop, rows = self._shrinking(info, start, stop, request)
        return Page(start, stop, rows, self.all_text(rows))

    def _shrinking(self, info: SheetInfo, start: int, stop: int, request: Callable[[int], T]) -> tuple[int, T]:
        """
        ``request(stop)`` (rows ``start`` .. ``stop``), and when it times out (the client's socket
        timeout, or Google's 504 at its 180 s limit) again for half the rows, up to
        :data:`SHRINK_ATTEMPTS` times; the pages after it keep to the smaller size.

        :return: the last row asked for, and the answer.
        """
        for attempt in range(SHRINK_ATTEMPTS + 1):
            try:
                return stop, request(stop)
            except (TimeoutError, SheetsAccessError) as err:
                if not isinstance(err, TimeoutError) and getattr(err, "status", 0) != 504:
                    raise
                rows = stop - start + 1
                if attempt == SHRINK_ATTEMPTS or rows <= 1:
                    raise SheetsAccessError(
                        f"reading rows {start}..{stop} of tab {info.title!r} timed out {attempt + 1} times, the last "
                        f"time asking for {rows} rows ({type(err).__name__}). Lower page_size, or check the network "
                        f"to the Sheets API; the task can be retried."
                    ) from None
                stop = start + rows // 2 - 1
                self.span_cap = stop - start + 1
                log.warning(
                    "Reading %s rows of tab %r from row %s timed out (%s); asking again for %s rows.",
                    rows,
                    info.title,
                    start,
                    type(err).__name__,
                    self.span_cap,
                )
        raise AssertionError("unreachable")

    @staticmethod
    def _rows_per_page(rows: list[list[Any]], page_size: int) -> int:
        """
        ``page_size``, or fewer rows when rows like these (a sample of them, measured as UTF-8
        text) would make a response larger than :data:`MAX_PAGE_BYTES`.
        """
        sample = rows[:: max(1, len(rows) // ROW_SAMPLE)]
        size = sum(len(str(cell).encode("utf-8", "replace")) + CELL_OVERHEAD for row in sample for cell in row)
        row_bytes = max(1, size // len(sample) + CELL_OVERHEAD)
        return max(1, min(page_size, MAX_PAGE_BYTES // row_bytes))

    @staticmethod
    def _grow(span: int, page_size: int, last_col: int) -> int:
        """
        Double the span after an empty page, so a tab whose grid runs far past its last row costs a
        few requests, not one per page; capped so a dense region found later stays a bounded page.
        """
        cap = max(page_size, min(MAX_EMPTY_SPAN_FACTOR * page_size, MAX_PAGE_CELLS // max(last_col, 1)))
        return min(span * 2, cap)
