"""The speed layer: poll one tab continuously and publish new rows, with the position in a compacted topic.

:class:`SheetStream` is the long-running counterpart of :class:`SheetToKafkaOperator`, built on
the same :class:`~airflow_provider_sheets.hooks.sheets.SheetsReader`,
:class:`~airflow_provider_sheets.model.mapping.RowMapper` and
:class:`~airflow_provider_sheets.adapters.publisher.Publisher`,
so a record published by either has the same key, value and ``sheets.*`` headers.

Its position is a :class:`~airflow_provider_sheets.model.position.Watermark` kept in a compacted Kafka
topic (default ``<topic>.position``), keyed ``<spreadsheet_id>:<gid>`` — the analogue of Kafka
Connect's offsets topic, with no Airflow metadata database involved.

Delivery semantics (at-least-once): each poll publishes a batch, waits until every record of it is
acknowledged (``acks=all``, idempotent producer), and only then writes the new position. A process
killed between the two re-sends, after its restart, the rows after the last saved position, with
the same keys and ``sheets.row`` headers; nothing before that position is sent again and no row is
skipped.

Cost: the tab is described (one ``spreadsheets.get``) at start and again only when the cached grid is
exhausted or a row reaches its last column; a poll that finds nothing new costs one values request.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

from airflow_provider_sheets import accel
from airflow_provider_sheets.adapters.publisher import Publisher
from airflow_provider_sheets.adapters.state_topic import DEFAULT_FLUSH_TIMEOUT, PositionStore
from airflow_provider_sheets.errors import (
    KafkaPublishError,
    SheetNotFoundError,
    SheetsAccessError,
    SheetsConfigError,
    WatermarkError,
    with_fix,
)
from airflow_provider_sheets.hooks.registry import SchemaRegistryHook, TopicSchemas
from airflow_provider_sheets.hooks.sheets import SheetInfo, SheetsConnection, SheetsReader
from airflow_provider_sheets.model import checks, headers
from airflow_provider_sheets.model.formats import KEY_FORMATS, VALUE_FORMATS
from airflow_provider_sheets.model.loop import LoopOptions, LoopResult, leading_rows
from airflow_provider_sheets.model.mapping import RowMapper, RowMappingError, fingerprint
from airflow_provider_sheets.model.position import RECENT_ROWS, PositionOf, position_key
from airflow_provider_sheets.model.reconcile import Reconciliation
from airflow_provider_sheets.model.sheet import RENDER_OPTIONS
from airflow_provider_sheets.pipeline.drift import on_drift as apply_drift_policy
from airflow_provider_sheets.pipeline.encoding import Encoding
from airflow_provider_sheets.pipeline.sinks import PublishSink, restamped_warning
from airflow_provider_sheets.pipeline.tab import mapper_for
from airflow_provider_sheets.settings import (
    DEFAULT_PAGE_SIZE,
    as_choice,
    as_int,
    as_optional_int,
    as_positive,
    typed_values_for,
)

log = logging.getLogger(__name__)

#: Seconds between two polls of the tab.
DEFAULT_POLL_INTERVAL = 5.0
#: Seconds between two status lines in the log.
DEFAULT_STATUS_INTERVAL = 30.0
#: The longest wait between two attempts after 429s or transient errors.
BACKOFF_CAP = 300.0
#: Suffix of the default position topic.
POSITION_TOPIC_SUFFIX = ".position"
#: After a poll window came back entirely empty while the grid goes on, rows may follow a gap wider
#: than a page: the whole rest of the grid is scanned after this many seconds, doubling (up to
#: :data:`GAP_SCAN_MAX_INTERVAL`) after each scan that found nothing.
GAP_SCAN_INTERVAL = 60.0
GAP_SCAN_MAX_INTERVAL = 1800.0
#: Polls made at most after a stop request, to publish what was appended before it.
MAX_DRAIN_POLLS = 10


def default_position_topic(topic: str) -> str:
    """The position topic used when none is given: ``<topic>.position``."""
    return topic + POSITION_TOPIC_SUFFIX


def runner_id() -> str:
    """``hostname/pid``: the value of the ``stream.runner`` header."""
    return f"{socket.gethostname()}/{os.getpid()}"


class Backoff:
    """
    Exponential backoff with jitter: attempt ``n`` waits between half and all of
    ``min(cap, base * 2**n)`` seconds.

    :param base: the first delay's upper bound, in seconds.
    :param cap: the largest delay.
    :param rng: a ``random.random``-like source (for tests).
    """

    def __init__(self, base: float, cap: float = BACKOFF_CAP, rng: Callable[[], float] = random.random) -> None:
        self.base = max(base, 0.1)
        self.cap = cap
        self.rng = rng
        self.attempts = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.attempts, 32))
        self.attempts += 1
        return ceiling / 2 + self.rng() * ceiling / 2

    def reset(self) -> None:
        self.attempts = 0


@dataclass
class StreamStats:
    """Counters for the status line (``requests`` is read from the reader)."""

    started: float = field(default_factory=time.monotonic)
    polls: int = 0
    batches: int = 0
    rows_published: int = 0
    describes: int = 0
    retries: int = 0
    last_row: int | None = None
    caught_up_at: float | None = None


class SheetStream:
    """
    Poll one tab and publish the rows that appear after the position, until :meth:`stop`.

    The Google and Kafka connections are ordinary Airflow connection ids (``google_cloud_platform``
    and ``kafka``); the ``sheets-to-kafka stream`` command defines them as ``AIRFLOW_CONN_*``
    environment variables in its own process, so no Airflow database is needed.

    Records carry the operator's headers (``sheets.spreadsheet_id``, ``sheets.sheet_name``,
    ``sheets.sheet_id``, ``sheets.row``, ``sheets.header_hash``) plus ``stream.runner``
    (``hostname/pid``) instead of the ``airflow.*`` ones.

    :param spreadsheet_id: the spreadsheet id (from its URL).
    :param topic: the destination topic; it must exist.
    :param sheet_name: the tab title; default: the first tab.
    :param gcp_conn_id: the ``google_cloud_platform`` connection.
    :param kafka_config_id: the ``kafka`` connection.
    :param api_endpoint: a custom Sheets API endpoint (private endpoint or a local server).
    :param impersonation_chain: service account(s) to impersonate.
    :param poll_interval: seconds between the starts of two polls.
    :param page_size: rows per values request; a poll reads at most this many rows, and polls
        again at once when the page came back full.
    :param key_column: a header whose cell becomes the record key; default: the row number.
    :param position_topic: the compacted topic holding the position; default ``<topic>.position``.
    :param status_interval: seconds between status lines in the log.
    :param header_row: the row holding the field names.
    :param value_render_option: ``FORMATTED_VALUE`` (default), ``UNFORMATTED_VALUE`` or ``FORMULA``.
    :param flush_timeout: seconds to wait for a batch's acknowledgements before backing off.
    :param producer_config: librdkafka settings applied over the connection's.
    :param on_drift: what to do when the last row already published has changed (rows inserted,
        deleted or edited above the position): ``"fail"`` (default) stops with
        :class:`~airflow_provider_sheets.errors.DriftError` before publishing anything more;
        ``"continue"`` logs a warning and publishes the rows after the position as they are now;
        ``"republish"`` logs a warning and publishes every row again, from the header row on (the
        same keys and ``sheets.row`` headers, so a consumer keeping the latest value per key ends up
        holding the tab as it is now); ``"reconcile"`` reconciles (see ``reconcile``).
    :param sheets_quota_per_minute: the read budget (see the operator's); a catch-up that re-polls at
        once while pages come back full waits for it.
    :param fingerprint_topic: a compacted topic where each record's key and value hash are written
        (what a reconcile compares with; see the operator's ``fingerprint_topic``).
    :param value_format: ``json``, ``cloudevents`` or ``connect_json``, as the operator's.
    :param typed_values: typed record values, as the operator's.
    :param event_time_column: with typed values, the column whose date-time is each record's
        timestamp; default: ``Timestamp`` (or Forms' column in another language) when present.
    :param reconcile: start with a reconcile pass: read every row, publish the rows changed since
        they were published and those never published, then a tombstone for each key no row holds;
        then stream on. Needs ``fingerprint_topic``.
    """

    def __init__(
        self,
        spreadsheet_id: str,
        topic: str,
        *,
        sheet_name: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        kafka_config_id: str = "kafka_default",
        api_endpoint: str | None = None,
        impersonation_chain: str | Sequence[str] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        page_size: int = DEFAULT_PAGE_SIZE,
        key_column: str | None = None,
        position_topic: str | None = None,
        status_interval: float = DEFAULT_STATUS_INTERVAL,
        header_row: int = 1,
        value_render_option: str = "FORMATTED_VALUE",
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
        producer_config: dict[str, Any] | None = None,
        on_drift: str = "fail",
        sheets_quota_per_minute: int | None = None,
        fingerprint_topic: str | None = None,
        reconcile: bool = False,
        value_format: str = "json",
        typed_values: bool | None = None,
        event_time_column: str | None = None,
        key_format: str = "text",
        schema_registry_conn_id: str = "schema_registry_default",
    ) -> None:
        on_drift = as_choice("on_drift", on_drift, checks.DRIFT_POLICIES)
        if (reconcile or on_drift == checks.RECONCILE) and not fingerprint_topic:
            raise SheetsConfigError(
                "a reconcile compares the tab with the fingerprints of what was published: give --fingerprint-topic "
                "(a compacted topic; the stream writes every record's fingerprint there), from the first start on"
            )
        poll_interval = as_positive("poll_interval", poll_interval)
        status_interval = as_positive("status_interval", status_interval)
        flush_timeout = as_positive("flush_timeout", flush_timeout)
        page_size = as_int("page_size", page_size, minimum=1)
        header_row = as_int("header_row", header_row, minimum=1)
        value_render_option = as_choice("value_render_option", value_render_option, RENDER_OPTIONS)
        self.spreadsheet_id = spreadsheet_id
        self.topic = topic
        self.sheet_name = sheet_name or None
        self.gcp_conn_id = gcp_conn_id
        self.kafka_config_id = kafka_config_id
        self.api_endpoint = api_endpoint or None
        self.impersonation_chain = impersonation_chain
        self.poll_interval = poll_interval
        self.page_size = page_size
        self.key_column = key_column or None
        self.position_topic = position_topic or default_position_topic(topic)
        self.status_interval = status_interval
        self.header_row = header_row
        self.value_render_option = value_render_option
        self.flush_timeout = flush_timeout
        self.producer_config = producer_config
        self.on_drift = on_drift
        self.fingerprint_topic = fingerprint_topic or None
        #: how records are encoded: the operator's rules (one implementation)
        self.encoding = Encoding(
            as_choice("value_format", value_format, VALUE_FORMATS),
            typed_values_for(typed_values, value_render_option, "--typed-values"),
            "Timestamp",
            event_time_column,
            header_row,
            as_choice("key_format", key_format, KEY_FORMATS),
        )
        self.encoding.check("--event-time-column")
        self.schema_registry_conn_id = schema_registry_conn_id
        #: the columns' number format types, while the header is the one they were read for
        self._kinds: tuple[str, list[str | None] | None] | None = None
        self._reconcile_pending = reconcile
        #: the reconcile pass under way (from the start, or after a drift), until caught up
        self._reconciliation: Reconciliation | None = None
        self._sink: PublishSink | None = None
        self.sheets_quota_per_minute = as_optional_int("sheets_quota_per_minute", sheets_quota_per_minute, 0)
        self.runner = runner_id()
        self.stats = StreamStats()
        self.positions = PositionStore(self.position_topic, kafka_config_id, flush_timeout)
        self.backoff = Backoff(poll_interval)
        self._stop = threading.Event()
        self._info: SheetInfo | None = None
        self._after_row = header_row
        #: the highest row published so far (the rows up to it go again as updates)
        self._published_through = header_row
        self._header_hash: str | None = None
        self._last_value = b""
        #: the record hash of the last row published (row ``_after_row``), for the drift check.
        self._last_row_hash: str | None = None
        self._describe_due = True
        self._position_dirty = False
        self._saved_row: int | None = None
        self._gap_pending = False
        self._gap_interval = GAP_SCAN_INTERVAL
        self._last_gap_scan = -math.inf

    @cached_property
    def reader(self) -> SheetsReader:
        connection = SheetsConnection(
            self.gcp_conn_id, self.api_endpoint, self.impersonation_chain, self.sheets_quota_per_minute
        )
        return accel.reader(connection, self.value_render_option, typed=self.encoding.typed)

    @cached_property
    def schemas(self) -> TopicSchemas:
        """The topic's value schemas in the registry (the ``avro`` and ``json_schema`` formats)."""
        hook = SchemaRegistryHook(self.schema_registry_conn_id)
        return TopicSchemas(hook.get_conn(), self.topic, f"connection {self.schema_registry_conn_id!r}")

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(
            self.topic,
            kafka_config_id=self.kafka_config_id,
            flush_timeout=self.flush_timeout,
            producer_config=self.producer_config,
        )

    @property
    def after_row(self) -> int:
        """Every row up to and including this one is in Kafka."""
        return self._after_row

    @property
    def key(self) -> str | None:
        """The position key, once the tab is known."""
        return position_key(self.spreadsheet_id, self._info.sheet_id) if self._info else None

    @property
    def info(self) -> SheetInfo:
        """The tab as last described (by :meth:`start`, then whenever the grid may have changed)."""
        if self._info is None:
            raise RuntimeError("the stream has not described its tab yet: call start() first")
        return self._info

    @property
    def _position_key(self) -> str:
        return position_key(self.spreadsheet_id, self.info.sheet_id)

    # -- lifecycle -------------------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """
        Ask :meth:`run` to return: it finishes the current batch (all acked, position saved), polls
        once more to publish what was appended before the request, and saves the position.
        """
        if self._stop.is_set():
            log.warning("Already stopping after the current batch; send SIGKILL to abort it.")
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        """Check the topic, ensure the position topic, describe the tab and load the position."""
        self.publisher.check_topic()
        if self.fingerprint_topic:
            self.publisher.check_topic(self.fingerprint_topic)
        self.positions.ensure_topic()
        self._describe()
        stored = self.positions.load(self._position_key)
        if stored is not None:
            above = checks.above_header(stored.last_row, self.header_row)
            if above is not None:
                raise WatermarkError(
                    f"the position {self.key!r} in {self.position_topic!r} {above}; produce a position with "
                    f"last_row >= {self.header_row}."
                )
            self._after_row = self._saved_row = self._published_through = stored.last_row
            self._header_hash = stored.header_hash
            self._last_row_hash = stored.last_row_hash
            if not self._reconcile_pending:
                self._check_grid(self.info)
        if self._reconcile_pending:
            self._begin_reconcile()
        log.info(
            "Streaming %r (tab %r, gid %s) into %r from row %s (position %r in %r, %s); polling every %.1f s.",
            self.spreadsheet_id,
            self.info.title,
            self.info.sheet_id,
            self.topic,
            self._after_row + 1,
            self.key,
            self.position_topic,
            "stored" if stored is not None else "new",
            self.poll_interval,
        )

    def run(self) -> None:
        """
        :meth:`start`, then poll until :meth:`stop`, then poll once more so that every row appended
        before the stop request is published, and return with the position saved.

        Quota (429) and transient Sheets or Kafka errors are retried with :class:`Backoff`; errors that
        need a fix (:class:`SheetsConfigError`) are raised.
        """
        self.start()
        next_poll = time.monotonic()
        next_status = time.monotonic() + self.status_interval
        while not self.stopping:
            try:
                more = self.poll_once()
            except SheetsConfigError:
                raise
            except (SheetsAccessError, KafkaPublishError, OSError) as err:
                self._on_transient_error(err)
                next_poll = time.monotonic()
                continue
            self.backoff.reset()
            now = time.monotonic()
            if now >= next_status:
                self.log_status()
                next_status = now + self.status_interval
            if more:
                continue
            next_poll += self.poll_interval
            if next_poll <= now:
                next_poll = now + self.poll_interval
            self._stop.wait(next_poll - now)
        self._drain()
        self.log_status(final=True)

    def _drain(self) -> None:
        """
        After a stop request: publish what was appended before it, then make sure the position is saved.
        Skipped while polls are failing (the next start continues from the saved position).
        """
        if self.backoff.attempts:
            return
        try:
            for _ in range(MAX_DRAIN_POLLS):
                if not self.poll_once():
                    break
            if self._position_dirty:
                self._save_position()
        except (SheetsAccessError, KafkaPublishError, OSError) as err:
            log.warning(
                "The last poll before stopping failed (%s: %s); the saved position is row %s and the next start "
                "continues from there.",
                type(err).__name__,
                err,
                self._saved_row,
            )

    def _on_transient_error(self, err: BaseException) -> None:
        self.stats.retries += 1
        if isinstance(err, KafkaPublishError):
            publisher = self.__dict__.pop("publisher", None)
            if publisher is not None:
                publisher.close()
        delay = self.backoff.next_delay()
        log.warning(
            "Poll failed (%s: %s); backing off %.1f s (attempt %s). The position stays at row %s.",
            type(err).__name__,
            err,
            delay,
            self.backoff.attempts,
            self._after_row,
        )
        self._stop.wait(delay)

    def log_status(self, final: bool = False) -> None:
        """
        One line: rows published, polls, Sheets requests, last row, and lag — the seconds since the
        start of the last poll that found every row of the tab published (at most about one poll
        interval while the runner keeps up; growing while polls fail).
        """
        stats = self.stats
        lag = time.monotonic() - stats.caught_up_at if stats.caught_up_at is not None else None
        log.info(
            "%s: %s rows published in %s batches, %s polls, %s Sheets requests (%s describes), %s retries, "
            "last row %s, lag %s (up %.0f s).",
            "Stopped" if final else "Status",
            stats.rows_published,
            stats.batches,
            stats.polls,
            self.reader.requests,
            stats.describes,
            stats.retries,
            self._after_row,
            f"{lag:.1f} s" if lag is not None else "n/a",
            time.monotonic() - stats.started,
        )

    # -- one poll ---------------------------------------------------------------------------------------

    def _describe(self) -> SheetInfo:
        info = self.reader.describe(self.spreadsheet_id, self.sheet_name)
        self.stats.describes += 1
        if self._info is not None and info.sheet_id != self._info.sheet_id:
            raise SheetsConfigError(
                f"the tab being streamed changed identity: gid {self._info.sheet_id} ({self._info.title!r}) is now "
                f"gid {info.sheet_id} ({info.title!r}). Restart with --sheet-name naming the tab to stream."
            )
        self._check_grid(info)
        self._info = info
        self._describe_due = False
        return info

    def _check_grid(self, info: SheetInfo) -> None:
        beyond = checks.beyond_tab(self._after_row, info)
        if beyond is not None:
            raise WatermarkError(
                f"the position {position_key(self.spreadsheet_id, info.sheet_id)!r} in {self.position_topic!r} "
                f"{beyond}. Check the topic, then produce a position with the last row already published (or a "
                f"tombstone to republish the tab)."
            )

    def _caught_up(self, since: float) -> None:
        self.stats.caught_up_at = since
        if self._reconciliation is not None:
            self._end_reconcile()

    def _begin_reconcile(self) -> None:
        """Read every row again, publishing only what differs from the fingerprints (until caught up)."""
        from airflow_provider_sheets.adapters.fingerprints import load_fingerprints

        assert self.fingerprint_topic is not None
        known = load_fingerprints(self.positions.client_config, self.fingerprint_topic)
        log.info("Reconcile: %s fingerprints in %r to compare the tab with.", len(known), self.fingerprint_topic)
        self._reconciliation = Reconciliation(known)
        self._reconcile_pending = False
        self._after_row, self._last_value, self._last_row_hash = self.header_row, b"", None
        self._position_dirty = True

    def _end_reconcile(self) -> None:
        """Every row read: the tombstones of the keys no row holds now."""
        done, self._reconciliation = self._reconciliation, None
        assert done is not None
        sink = self._sink
        if sink is None:  # no row read in the pass: the tombstones carry the tab's provenance only
            static = headers.provenance(self.spreadsheet_id, self.info, self._header_hash or "")
            sink = PublishSink(self.publisher, headers.RecordHeaders(static), None, None, self.fingerprint_topic)
        sink.reconciliation = done
        deleted = sink.tombstones()
        self.publisher.finish()
        self.stats.rows_published += deleted
        log.info(
            "Reconcile done: %s rows were already right, %s tombstones sent for rows that no longer exist.",
            done.unchanged,
            deleted,
        )

    def poll_once(self) -> bool:
        """
        Publish what is new after the position, then save the position.

        :return: whether to poll again at once (the page came back full, or a drift restarts the tab).
        """
        self.stats.polls += 1
        polled_at = time.monotonic()
        if self._position_dirty:
            self._save_position()
        described = False
        if self._describe_due or self._info is None or self._after_row >= self._info.row_count:
            self._describe()
            described = True
        info = self.info
        if self._after_row >= info.row_count:
            self._caught_up(polled_at)
            return False
        scan = self._gap_pending and polled_at - self._last_gap_scan >= self._gap_interval
        # the last row published comes back in the same request, to check that it did not move
        check_row = self._after_row if self._last_row_hash and self._after_row > self.header_row else None
        info, header, pages = self._read(info, described, None if scan else self.page_size, check_row)
        header_before = self._header_hash
        mapper = self._mapper(header, info)
        # (after a header change the row maps to other field names: that change is logged instead)
        checking = check_row is not None and self._last_row_hash and header_before == mapper.header_hash
        if checking and check_row is not None and self._check_drift(mapper, check_row, info):
            return True
        result = self._publish(info, mapper, pages)
        self._after_batch(info, max(len(header), result.widest), result, scan, polled_at)
        last_page = result.last_page
        if last_page is not None and last_page.full:
            return True
        self._caught_up(polled_at)
        return False

    def _read(
        self, info: SheetInfo, described: bool, max_rows: int | None, check_row: int | None
    ) -> tuple[SheetInfo, list[Any], Any]:
        """The header and the pages after the position; a tab renamed since it was described is described again."""
        read = partial(
            self.reader.read,
            page_size=self.page_size,
            header_row=self.header_row,
            max_rows=max_rows,
            check_row=check_row,
            check_rows=RECENT_ROWS,
        )
        try:
            header, pages = read(info, self._after_row)
        except SheetNotFoundError:
            raise
        except SheetsConfigError:
            # HTTP 400: usually a range naming a tab that was renamed since it was described.
            if described:
                raise
            info = self._describe()
            header, pages = read(info, self._after_row)
        return info, header, pages

    def _publish(self, info: SheetInfo, mapper: RowMapper, pages: Any) -> LoopResult:
        """Publish the pages and wait for every acknowledgement; save the position of what was published."""
        static = [
            *headers.provenance(self.spreadsheet_id, info, mapper.header_hash),
            (headers.STREAM_RUNNER, self.runner.encode()),
        ]
        record_headers = self.encoding.record_headers(
            self.spreadsheet_id, info, static, mapper.keys_by_row, self._published_through
        )
        sink = PublishSink(self.publisher, record_headers, None, None, self.fingerprint_topic, self._reconciliation)
        self._sink = sink
        failed: RowMappingError | None = None
        restamped = self.publisher.restamped
        try:
            result = accel.publish_pages(
                pages, mapper, sink, LoopOptions(), accel.Switches.from_env(forked=False), self.reader
            )
        except RowMappingError as err:
            # the rows before it are produced: publish them and keep their position, then stop
            failed, result = err, err.result
        self.publisher.finish()
        warning = restamped_warning(self.publisher, since=restamped)
        if warning is not None:
            log.warning(warning)
        if result.last_row is not None:
            self._after_row, self._last_value = result.last_row, result.last_value
            self._published_through = max(self._published_through, result.last_row)
            self._last_row_hash = fingerprint([result.last_value])
            self._header_hash = mapper.header_hash
            self.stats.rows_published += sink.published
            self.stats.batches += 1
            self.stats.last_row = result.last_row
            self._position_dirty = True
            self._save_position()
            log.debug("Published %s rows up to row %s.", sink.published, result.last_row)
        if failed is not None:
            raise SheetsConfigError(
                f"tab {info.title!r}, row {failed.row}: {failed.reason}. Rows before it are published (position "
                f"{self._after_row}); fill the cell in the sheet or restart without --key-column to key by row."
            )
        return result

    def _after_batch(self, info: SheetInfo, widest: int, result: LoopResult, scan: bool, polled_at: float) -> None:
        """Plan the next describe and gap scan from what this poll saw."""
        if widest >= info.column_count:
            self._describe_due = True  # the grid may have grown to the right
        last_page = result.last_page
        if scan:
            self._last_gap_scan = polled_at
            self._gap_pending = False
            found = result.last_row is not None
            self._gap_interval = GAP_SCAN_INTERVAL if found else min(self._gap_interval * 2, GAP_SCAN_MAX_INTERVAL)
        elif last_page is not None and not last_page.returned and last_page.last_row < info.row_count:
            self._gap_pending = True

    def _check_drift(self, mapper: RowMapper, row: int, info: SheetInfo) -> bool:
        """
        Compare the last row published with the rows at and after it now: an edit is published again
        (benign); rows deleted or inserted above it are a drift for ``on_drift``.

        :return: whether to poll again at once (from another row: the edit, the shifted rows, or the header).
        """
        now = checks.hashes(mapper, [*self.reader.checked_rows, *leading_rows(self.reader.first_page, RECENT_ROWS)])
        rows = checks.recent_change({row: self._last_row_hash or ""}, now, row, info.title, "position")
        if rows.drift is None:
            if rows.edited or rows.cleared:
                log.warning(
                    "Row %s of tab %r, the last row published, was %s since: %s.",
                    row,
                    info.title,
                    "edited" if rows.edited else "cleared",
                    "publishing it again (same key)" if rows.edited else "nothing to publish for it",
                )
                self._last_row_hash = None  # no check of the row before it: it was not the last one published
                if rows.edited:
                    self._after_row = row - 1
                    return True
            return False
        fix = (
            f"Nothing more was published; the position {self.key!r} in {self.position_topic!r} stays at row {row}. "
            f"To proceed: check the topic, then restart with --on-drift continue (publish the rows after where row "
            f"{row} is now) or --on-drift republish (publish every row again), or produce a tombstone for that "
            f"key to stream the tab from the start."
        )
        if apply_drift_policy(self.on_drift, rows.drift, fix, log):
            if self.on_drift == checks.RECONCILE:
                self._begin_reconcile()
                return True
            self._after_row, self._last_value, self._last_row_hash = self.header_row, b"", None
            self._position_dirty = True
            return True
        self._after_row, self._last_row_hash = row + rows.shift, None
        self._position_dirty = True
        return True

    def _mapper(self, header: list[Any], info: SheetInfo) -> RowMapper:
        mapper = mapper_for(header, self.header_row, info, self.key_column, "--header-row")
        if self._header_hash is not None and mapper.header_hash != self._header_hash:
            log.warning(
                "The header of tab %r changed (fields now: %s); records from row %s on use the new field names.",
                info.title,
                ", ".join(mapper.fields),
                self._after_row + 1,
            )
            self._header_hash = mapper.header_hash
        known = self._kinds[1] if self._kinds is not None and self._kinds[0] == mapper.header_hash else None
        schemas = self.schemas if self.encoding.registry else None
        self._kinds = (mapper.header_hash, self.encoding.apply(mapper, info, self.reader, known, schemas))
        return mapper

    def _save_position(self) -> None:
        position = PositionOf(
            self.spreadsheet_id,
            self.info,
            self.topic,
            None,
            {"header_hash": self._header_hash, "extra": {"runner": self.runner}},
        )
        watermark = position.at(self._after_row, self._last_value)
        try:
            self.positions.save(self._position_key, watermark, headers=[(headers.STREAM_RUNNER, self.runner.encode())])
        except KafkaPublishError as err:
            self.positions.reset_publisher()
            saved = (
                f"stays at row {self._saved_row}"
                if self._saved_row is not None
                else "is not saved yet (a start begins after the header row)"
            )
            raise with_fix(err, f"The saved position {saved}.").with_traceback(err.__traceback__) from None
        self._position_dirty = False
        self._saved_row = watermark.last_row
