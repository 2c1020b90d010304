"""The speed layer: poll one tab continuously and publish new rows, with the position in a compacted topic.

:class:`SheetStream` is the long-running counterpart of :class:`SheetToKafkaOperator`, built on
the same :class:`~airflow_provider_sheets.hooks.sheets.SheetsReader`,
:class:`~airflow_provider_sheets.rows.RowMapper` and :class:`~airflow_provider_sheets.kafka.Publisher`,
so a record published by either has the same key, value and ``sheets.*`` headers.

Its position is a :class:`~airflow_provider_sheets.watermark.Watermark` kept in a compacted Kafka
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
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property, partial
from typing import Any

from airflow_provider_sheets.core import (
    mapper_for,
    provenance_headers,
    publish_pages,
    row_drift,
    row_hash,
    sender,
    watermark_for,
)
from airflow_provider_sheets.errors import (
    DriftError,
    KafkaConfigError,
    KafkaPublishError,
    SheetNotFoundError,
    SheetsAccessError,
    SheetsConfigError,
    WatermarkError,
)
from airflow_provider_sheets.hooks.sheets import DEFAULT_PAGE_SIZE, SheetInfo, SheetsConnection, SheetsReader
from airflow_provider_sheets.kafka import Publisher, client_config
from airflow_provider_sheets.rows import RowMapper, RowMappingError, fingerprint
from airflow_provider_sheets.watermark import Watermark

log = logging.getLogger(__name__)

#: Seconds between two polls of the tab.
DEFAULT_POLL_INTERVAL = 5.0
#: Seconds between two status lines in the log.
DEFAULT_STATUS_INTERVAL = 30.0
#: The longest wait between two attempts after 429s or transient errors.
BACKOFF_CAP = 300.0
#: Suffix of the default position topic.
POSITION_TOPIC_SUFFIX = ".position"
#: Reading the position topic stops after this many seconds without a record …
POSITION_IDLE = 1.0
#: … or, while no record at all has arrived yet, after this many.
POSITION_FIRST_WAIT = 3.0
#: Seconds a runner waits for the acknowledgements of one batch before backing off and re-sending.
DEFAULT_FLUSH_TIMEOUT = 60.0
#: After a poll window came back entirely empty while the grid goes on, rows may follow a gap wider
#: than a page: the whole rest of the grid is scanned after this many seconds, doubling (up to
#: :data:`GAP_SCAN_MAX_INTERVAL`) after each scan that found nothing.
GAP_SCAN_INTERVAL = 60.0
GAP_SCAN_MAX_INTERVAL = 1800.0
#: Polls made at most after a stop request, to publish what was appended before it.
MAX_DRAIN_POLLS = 10


def position_key(spreadsheet_id: str, sheet_id: int) -> str:
    """The position record's key: ``<spreadsheet_id>:<gid>`` (renaming the tab keeps it)."""
    return f"{spreadsheet_id}:{sheet_id}"


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


class PositionStore:
    """
    The runner's position in a compacted topic: key ``<spreadsheet_id>:<gid>``, value a
    :class:`Watermark` as JSON.

    :param topic: the position topic.
    :param kafka_config_id: the ``kafka`` connection (its extra is the librdkafka configuration).
    :param flush_timeout: seconds to wait for a position record's acknowledgement.
    """

    def __init__(self, topic: str, kafka_config_id: str, flush_timeout: float = DEFAULT_FLUSH_TIMEOUT) -> None:
        self.topic = topic
        self.kafka_config_id = kafka_config_id
        self.flush_timeout = flush_timeout

    @cached_property
    def client_config(self) -> dict[str, Any]:
        """The connection's librdkafka settings that apply to admin clients and consumers."""
        return client_config(self.kafka_config_id)

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(self.topic, self.kafka_config_id, flush_timeout=self.flush_timeout)

    def reset_publisher(self) -> None:
        """Drop the producer after a failure; the next :meth:`save` builds a new one."""
        self.__dict__.pop("publisher", None)

    def ensure_topic(self, timeout: float = 15.0) -> bool:
        """
        Create the topic (one partition, ``cleanup.policy=compact``) unless it exists.

        :return: whether it was created.
        """
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.client_config)
        future = admin.create_topics(
            [NewTopic(self.topic, num_partitions=1, replication_factor=-1, config={"cleanup.policy": "compact"})],
            operation_timeout=timeout,
        )[self.topic]
        try:
            future.result(timeout=timeout)
        except KafkaException as err:
            text = str(err)
            if "TOPIC_ALREADY_EXISTS" not in text and "already exists" not in text.lower():
                raise KafkaConfigError(
                    f"cannot create the position topic {self.topic!r} ({text}). Create it yourself with "
                    f"cleanup.policy=compact (kafka-topics.sh --create --topic {self.topic} --partitions 1 "
                    f"--config cleanup.policy=compact), or grant this principal CREATE on it."
                ) from None
            self._check_compacted(admin, timeout)
            return False
        log.info("Created the position topic %r (cleanup.policy=compact).", self.topic)
        return True

    def _check_compacted(self, admin, timeout: float) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import ConfigResource

        resource = ConfigResource("topic", self.topic)
        try:
            configs = admin.describe_configs([resource])[resource].result(timeout=timeout)
        except KafkaException as err:
            log.debug("Could not read the configuration of %r: %s", self.topic, err)
            return
        policy = configs.get("cleanup.policy")
        if policy is not None and "compact" not in str(policy.value):
            log.warning(
                "The position topic %r has cleanup.policy=%s: old positions will be deleted by retention "
                "and, once the latest one is, a restart republishes the tab. Fix: kafka-configs.sh --alter "
                "--entity-type topics --entity-name %s --add-config cleanup.policy=compact",
                self.topic,
                policy.value,
                self.topic,
            )

    def load(self, key: str, idle: float = POSITION_IDLE, first_wait: float = POSITION_FIRST_WAIT) -> Watermark | None:
        """
        The latest position stored under ``key``, or ``None`` (never written, or a tombstone).

        Reads every partition from the beginning until no record arrived for ``idle`` seconds
        (brokers' high-watermark offsets are not relied on).
        """
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

        consumer = Consumer(
            {
                **self.client_config,
                "group.id": f"sheets-stream-position-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
            }
        )
        wanted = key.encode("utf-8")
        latest: bytes | None = None
        found = False
        try:
            try:
                metadata = consumer.list_topics(self.topic, timeout=15)
            except KafkaException as err:
                raise KafkaPublishError(
                    f"cannot read the position topic {self.topic!r} ({err}). Check bootstrap.servers and the "
                    f"connection's credentials."
                ) from None
            partitions = sorted(metadata.topics[self.topic].partitions)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            started = last_seen = time.monotonic()
            records = 0
            while True:
                msg = consumer.poll(0.1)
                now = time.monotonic()
                if msg is None:
                    quiet = now - last_seen if records else now - started
                    if quiet >= (idle if records else max(idle, first_wait)):
                        break
                    continue
                if msg.error():
                    log.warning("Reading the position topic %r: %s", self.topic, msg.error())
                    continue
                records += 1
                last_seen = now
                if msg.key() == wanted:
                    found = True
                    latest = msg.value()
        finally:
            consumer.close()
        if not found or latest is None:
            return None
        try:
            return Watermark.from_json(key, latest.decode("utf-8"))
        except (WatermarkError, UnicodeDecodeError) as err:
            raise WatermarkError(
                f"the latest position record for key {key!r} in topic {self.topic!r} is unusable ({err}). Produce "
                f'a valid one, e.g. {{"last_row": 1}} to start after the header, or a tombstone (null value) '
                f"to start over."
            ) from None

    def save(self, key: str, watermark: Watermark, headers: list[tuple[str, bytes]] | None = None) -> None:
        """Write ``watermark`` under ``key`` and wait for its acknowledgement."""
        watermark.updated_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self.publisher.send(key.encode("utf-8"), watermark.to_json().encode("utf-8"), headers or [])
        self.publisher.finish()


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
        ``"continue"`` logs a warning and publishes the rows after the position as they are now.
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
    ) -> None:
        if on_drift not in ("fail", "continue"):
            raise SheetsConfigError(f"on_drift must be 'fail' or 'continue', got {on_drift!r}")
        if poll_interval <= 0:
            raise SheetsConfigError(f"poll_interval must be positive, got {poll_interval!r}")
        if page_size < 1:
            raise SheetsConfigError(f"page_size must be a positive integer, got {page_size!r}")
        if header_row < 1:
            raise SheetsConfigError(f"header_row must be a positive integer, got {header_row!r}")
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
        self.runner = runner_id()
        self.stats = StreamStats()
        self.positions = PositionStore(self.position_topic, kafka_config_id, flush_timeout)
        self.backoff = Backoff(poll_interval)
        self._stop = threading.Event()
        self._info: SheetInfo | None = None
        self._after_row = header_row
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
        return SheetsConnection(self.gcp_conn_id, self.api_endpoint, self.impersonation_chain).reader(
            self.value_render_option
        )

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
        self.positions.ensure_topic()
        self._describe()
        stored = self.positions.load(self._position_key)
        if stored is not None:
            if stored.last_row < self.header_row:
                raise WatermarkError(
                    f"the position {self.key!r} in {self.position_topic!r} says last_row={stored.last_row}, above "
                    f"the header row {self.header_row}; produce a position with last_row >= {self.header_row}."
                )
            self._after_row = self._saved_row = stored.last_row
            self._header_hash = stored.header_hash
            self._last_row_hash = stored.last_row_hash
            self._check_grid(self.info)
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
            self.__dict__.pop("publisher", None)
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
        if self._after_row > info.row_count:
            raise WatermarkError(
                f"the position {position_key(self.spreadsheet_id, info.sheet_id)!r} in {self.position_topic!r} says "
                f"rows up to {self._after_row} are in Kafka, but tab {info.title!r} now has only {info.row_count} "
                f"rows: rows were deleted. Check the topic, then produce a position with the last row already "
                f"published (or a tombstone to republish the tab)."
            )

    def _caught_up(self, since: float) -> None:
        self.stats.caught_up_at = since

    def poll_once(self) -> bool:
        """
        Publish what is new after the position, then save the position.

        :return: whether to poll again at once (the page came back full).
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
        max_rows = None if scan else self.page_size
        # the last row published comes back in the same request, to check that it did not move
        check_row = self._after_row if self._last_row_hash and self._after_row > self.header_row else None
        read = partial(
            self.reader.read,
            page_size=self.page_size,
            header_row=self.header_row,
            max_rows=max_rows,
            check_row=check_row,
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
        header_before = self._header_hash
        mapper = self._mapper(header, info)
        if check_row is not None and self._last_row_hash and header_before == mapper.header_hash:
            # (after a header change the row maps to other field names: that change is logged instead)
            self._check_drift(mapper, check_row, info)
        static_headers = [
            *provenance_headers(self.spreadsheet_id, info, mapper),
            ("stream.runner", self.runner.encode()),
        ]
        publisher = self.publisher
        produced_before = publisher.produced
        failed: RowMappingError | None = None
        try:
            result = publish_pages(
                pages,
                mapper,
                static_headers,
                sender(publisher),
                after_page=lambda page, progress: publisher.poll(),
            )
        except RowMappingError as err:
            # the rows before it are produced: publish them and keep their position, then stop
            failed, result = err, err.result  # type: ignore[attr-defined]  # set by publish_pages
        publisher.finish()
        published = publisher.produced - produced_before
        last_row, last_value = result.last_row, result.last_value
        widest = max(len(header), result.widest)
        last_page = result.last_page
        if last_row is not None:
            self._after_row, self._last_value = last_row, last_value
            self._last_row_hash = fingerprint([last_value])
            self._header_hash = mapper.header_hash
            self.stats.rows_published += published
            self.stats.batches += 1
            self.stats.last_row = last_row
            self._position_dirty = True
            self._save_position()
            log.debug("Published %s rows up to row %s.", published, last_row)
        if failed is not None:
            raise SheetsConfigError(
                f"tab {info.title!r}, row {failed.row}: {failed.reason}. Rows before it are published (position "
                f"{self._after_row}); fill the cell in the sheet or restart without --key-column to key by row."
            )

        if widest >= info.column_count:
            self._describe_due = True  # the grid may have grown to the right
        if scan:
            self._last_gap_scan = polled_at
            self._gap_pending = False
            self._gap_interval = (
                GAP_SCAN_INTERVAL if last_row is not None else min(self._gap_interval * 2, GAP_SCAN_MAX_INTERVAL)
            )
        elif last_page is not None and not last_page.rows and last_page.last_row < info.row_count:
            self._gap_pending = True
        if (
            last_page is not None
            and last_page.rows
            and len(last_page.rows) == last_page.last_row - last_page.first_row + 1
        ):
            return True
        self._caught_up(polled_at)
        return False

    def _check_drift(self, mapper: RowMapper, row: int, info: SheetInfo) -> None:
        drift = row_drift(mapper, row, self.reader.checked_row or [], self._last_row_hash or "", info.title, "position")
        if drift is None:
            return
        if self.on_drift == "fail":
            raise DriftError(
                f"{drift} Nothing more was published; the position {self.key!r} in {self.position_topic!r} stays at "
                f"row {row}. To proceed: check the topic, then restart with --on-drift continue (publish the rows "
                f"after row {row} as they are now), or produce a tombstone for that key to stream the tab from the "
                f"start."
            )
        log.warning("%s on_drift='continue': publishing the rows after row %s as they are now.", drift, row)
        self._last_row_hash = row_hash(mapper, row, self.reader.checked_row or [])

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
        return mapper

    def _save_position(self) -> None:
        watermark = watermark_for(
            self.spreadsheet_id,
            self.info,
            self.topic,
            None,
            self._after_row,
            self._last_value,
            header_hash=self._header_hash,
            extra={"runner": self.runner},
        )
        try:
            self.positions.save(self._position_key, watermark, headers=[("stream.runner", self.runner.encode())])
        except KafkaPublishError:
            self.positions.reset_publisher()
            raise
        self._position_dirty = False
        self._saved_row = watermark.last_row
