"""Read the rows of one tab after a given row, page by page, through the google provider's hook."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgspec
from airflow.providers.google.suite.hooks.sheets import GSheetsHook
from googleapiclient.model import JsonModel

from airflow_provider_sheets.errors import SheetNotFoundError, SheetsAccessError
from airflow_provider_sheets.rows import A1Range, TextRows

log = logging.getLogger(__name__)

#: Default number of rows per values request; Google advises payloads of at most ~2 MB.
DEFAULT_PAGE_SIZE = 5_000

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
    """Rows ``first_row`` .. ``last_row`` of a tab (``rows`` may be shorter: trailing empties dropped)."""

    first_row: int
    last_row: int
    rows: list[list[Any]]


@dataclass(frozen=True)
class SheetsConnection:
    """
    Where and as whom the Sheets API is called: the settings every reader of a caller (operator,
    sensor, trigger, watermark operator, stream runner) is built from, so none leaves one out.

    :param gcp_conn_id: the ``google_cloud_platform`` connection id.
    :param api_endpoint: a custom Sheets API endpoint (private endpoint or a local server).
    :param impersonation_chain: service account(s) to impersonate (one, or a chain).
    """

    gcp_conn_id: str = "google_cloud_default"
    api_endpoint: str | None = None
    impersonation_chain: str | Sequence[str] | None = None

    def reader(self, value_render_option: str = "FORMATTED_VALUE") -> SheetsReader:
        return SheetsReader(
            gcp_conn_id=self.gcp_conn_id,
            api_endpoint=self.api_endpoint or None,
            impersonation_chain=self.impersonation_chain,
            value_render_option=value_render_option,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable (a trigger's kwargs): a chain as a list."""
        chain = self.impersonation_chain
        return {
            "gcp_conn_id": self.gcp_conn_id,
            "api_endpoint": self.api_endpoint or None,
            "impersonation_chain": chain if chain is None or isinstance(chain, str) else list(chain),
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
    """

    def __init__(
        self,
        gcp_conn_id: str = "google_cloud_default",
        api_endpoint: str | None = None,
        impersonation_chain: str | Sequence[str] | None = None,
        value_render_option: str = "FORMATTED_VALUE",
        date_time_render_option: str = "FORMATTED_STRING",
    ) -> None:
        self.gcp_conn_id = gcp_conn_id
        self.api_endpoint = api_endpoint or None
        self.impersonation_chain = impersonation_chain
        self.value_render_option = value_render_option
        self.date_time_render_option = date_time_render_option
        self.requests = 0
        #: the cells of ``check_row`` from the last :meth:`read` (``[]`` when that row is empty)
        self.checked_row: list[Any] | None = None
        self._lean = False
        # one request at a time: the page prefetch thread and the caller share one HTTP client
        self._lock = threading.Lock()

    @cached_property
    def hook(self) -> GSheetsHook:
        return GSheetsHook(
            gcp_conn_id=self.gcp_conn_id,
            impersonation_chain=self.impersonation_chain,
            api_endpoint=self.api_endpoint,
        )

    def _call(self, what: str, spreadsheet_id: str, func, /, **kwargs):
        from googleapiclient.errors import HttpError

        if not self._lean:
            service = self.hook.get_conn()
            _skip_schema_docs(service)
            _decode_with_msgspec(service)
            self._lean = True
        try:
            with self._lock:
                self.requests += 1
                return func(**kwargs)
        except HttpError as err:
            raise SheetsAccessError.from_http_error(err, what, spreadsheet_id, self._account()) from None

    def after_fork(self) -> None:
        """
        In a forked child: forget the HTTP connections inherited from the parent (closing only this
        process's descriptors; the parent's connections stay open) so that each process talks over
        its own.
        """
        self._lock = threading.Lock()
        service = getattr(self.hook, "_conn", None)
        http = getattr(service, "_http", None)
        connections = getattr(getattr(http, "http", http), "connections", None)
        if isinstance(connections, dict):
            for connection in list(connections.values()):
                with contextlib.suppress(Exception):
                    connection.close()
            connections.clear()

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
        meta = self._call(
            "read the spreadsheet's metadata",
            spreadsheet_id,
            self.hook.get_spreadsheet,
            spreadsheet_id=spreadsheet_id,
        )
        sheets = [s["properties"] for s in meta.get("sheets", [])]
        tabs = tuple(p["title"] for p in sheets)
        if not sheets:
            raise SheetNotFoundError(f"spreadsheet {spreadsheet_id!r} has no tabs")
        if sheet_name:
            matches = [p for p in sheets if p["title"] == sheet_name]
            if not matches:
                raise SheetNotFoundError(
                    f"tab {sheet_name!r} not found in spreadsheet {spreadsheet_id!r}; tabs are: "
                    + ", ".join(repr(t) for t in tabs)
                    + ". Set sheet_name to one of them (or leave it empty for the first tab)."
                )
            props = matches[0]
        else:
            props = min(sheets, key=lambda p: p.get("index", 0))
        grid = props.get("gridProperties", {})
        return SheetInfo(
            spreadsheet_id=spreadsheet_id,
            spreadsheet_title=meta.get("properties", {}).get("title", ""),
            time_zone=meta.get("properties", {}).get("timeZone", "Etc/UTC"),
            sheet_id=int(props.get("sheetId", 0)),
            title=props["title"],
            row_count=int(grid.get("rowCount", 0)),
            column_count=int(grid.get("columnCount", 26)),
            tabs=tabs,
        )

    def batch_get(self, spreadsheet_id: str, ranges: list[A1Range]) -> list[list[list[Any]]]:
        """Fetch several ranges in one ``values:batchGet`` request; a missing ``values`` is ``[]``."""
        response = self._call(
            "read values",
            spreadsheet_id,
            self.hook.batch_get_values,
            spreadsheet_id=spreadsheet_id,
            ranges=[str(r) for r in ranges],
            major_dimension="ROWS",
            value_render_option=self.value_render_option,
            date_time_render_option=self.date_time_render_option,
        )
        value_ranges = response.get("valueRanges", [])
        if len(value_ranges) != len(ranges):
            raise SheetsAccessError(
                f"values:batchGet returned {len(value_ranges)} ranges for {len(ranges)} requested: "
                + json.dumps([str(r) for r in ranges])
            )
        return [vr.get("values", []) for vr in value_ranges]

    def read(
        self,
        info: SheetInfo,
        after_row: int,
        page_size: int = DEFAULT_PAGE_SIZE,
        header_row: int = 1,
        max_rows: int | None = None,
        check_row: int | None = None,
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
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        last_col = max(info.column_count, 1)
        end = info.row_count if max_rows is None else min(info.row_count, after_row + max_rows)
        ranges = [A1Range.rows(info.title, header_row, header_row, last_col)]
        if check_row is not None and 1 <= check_row <= info.row_count:
            ranges.append(A1Range.rows(info.title, check_row, check_row, last_col))
        start = after_row + 1
        first_end = min(start + page_size - 1, end)
        if start <= end:
            ranges.append(A1Range.rows(info.title, start, first_end, last_col))
        values = self.batch_get(info.spreadsheet_id, ranges)
        header = values[0][0] if values[0] else []
        self.checked_row = None
        if check_row is not None:
            checked = values[1] if len(ranges) > 1 and ranges[1].start_row == check_row else []
            self.checked_row = checked[0] if checked else []
        if start > end:
            return header, iter(())
        return header, self._pages(info, Page(start, first_end, values[-1]), end, page_size, last_col)

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
                    span = limit = self._rows_per_page(page.rows, page_size)
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
        (rows,) = self.batch_get(info.spreadsheet_id, [A1Range.rows(info.title, start, stop, last_col)])
        return Page(start, stop, rows)

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


def _skip_schema_docs(service: Any) -> None:
    """
    Keep the Google client from writing huge docstrings on every call.

    Each ``service.spreadsheets()`` call (``GSheetsHook`` makes one per request) builds a
    ``Resource`` whose methods get docstrings that pretty-print their whole request and response
    schemas: for Sheets, ~20 MB of text and ~60 ms of CPU per call, and ~0.5 s and ~55 MB more for
    the first one. Pre-filling the client's cache of pretty-printed schemas with a one-line
    placeholder leaves short docstrings and changes nothing else; on a client without that cache
    this does nothing.
    """
    schema = getattr(service, "_schema", None)
    pretty = getattr(schema, "pretty", None)
    schemas = getattr(schema, "schemas", None)
    if isinstance(pretty, dict) and isinstance(schemas, dict):
        for name in schemas:
            pretty.setdefault(name, "{},\n")


class _TextRange(msgspec.Struct, forbid_unknown_fields=True):
    range: str | msgspec.UnsetType = msgspec.UNSET
    majorDimension: str | msgspec.UnsetType = msgspec.UNSET  # noqa: N815 - the API's name
    values: list[list[str]] | msgspec.UnsetType = msgspec.UNSET

    def as_dict(self) -> dict[str, Any]:
        """The fields the body had, as ``json`` gives them, with the rows as :class:`TextRows`."""
        body = {name: value for name in self.__struct_fields__ if (value := getattr(self, name)) is not msgspec.UNSET}
        if "values" in body:
            body["values"] = TextRows(body["values"])
        return body


class _TextBatch(msgspec.Struct, forbid_unknown_fields=True):
    spreadsheetId: str  # noqa: N815 - the API's name
    valueRanges: list[_TextRange]  # noqa: N815 - the API's name


#: A ``values:batchGet`` response whose cells are all strings, and nothing else: any other body
#: (another response, another field, a value that is not a string) fails its checks.
_decode_text_batch = msgspec.json.Decoder(_TextBatch).decode


class MsgspecJsonModel(JsonModel):
    """
    The Google client's :class:`JsonModel`, decoding response bodies with msgspec: the same Python
    objects as ``json.loads``, about 3x faster on a 1 MB page of values. A body msgspec rejects
    (``NaN``, integers beyond 64 bits, not JSON at all) goes through ``JsonModel`` as before.

    A ``values:batchGet`` response whose cells are all strings (every one with
    ``FORMATTED_VALUE``) is checked for that while it is decoded, at no measurable cost, and its
    rows come as :class:`~airflow_provider_sheets.rows.TextRows`, which the row mapper need not
    check again (0.22 µs a row of 10 cells). A response with other values (``UNFORMATTED_VALUE``
    numbers) fails that check at its first such cell and is decoded as any other body.
    """

    def deserialize(self, content):
        try:
            batch = _decode_text_batch(content)
        except (msgspec.DecodeError, TypeError):  # ValidationError is a DecodeError
            pass
        else:
            return {"spreadsheetId": batch.spreadsheetId, "valueRanges": [vr.as_dict() for vr in batch.valueRanges]}
        try:
            body = msgspec.json.decode(content)
        except (msgspec.DecodeError, TypeError):
            return super().deserialize(content)
        if self._data_wrapper and isinstance(body, dict) and "data" in body:
            body = body["data"]
        return body


def _decode_with_msgspec(service: Any) -> None:
    """
    Give the client's ``Resource`` (and the resources it creates from now on) a
    :class:`MsgspecJsonModel`, through the ``model`` it was built with (``build(model=...)``).
    """
    model = getattr(service, "_model", None)
    if model is not None and type(model) is JsonModel:
        service._model = MsgspecJsonModel(data_wrapper=model._data_wrapper)
