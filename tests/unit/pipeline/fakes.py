"""
In-memory stand-ins for what :class:`~airflow_provider_sheets.pipeline.batch.BatchRun` talks through
(:class:`~airflow_provider_sheets.pipeline.batch.Ports`): no broker, no Airflow DB, no Sheets server.

Every fake appends what it was asked to one shared :class:`Journal`, so a test can check the order
of the run's effects (lease claim, describe, confirm, begin, store read, produce, finish, store
write). Only calls made in the task process are journalled: with ``mapping_process=True`` the pages
are read in a forked child, whose appends the task process would never see, so the reader journals
``describe`` and ``read`` (called in the task process) but not the fetch of each later page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from airflow_provider_sheets.model.position import Watermark
from airflow_provider_sheets.model.sheet import Page, SheetInfo
from airflow_provider_sheets.pipeline.batch import BatchRun, Ports, RunContext
from airflow_provider_sheets.settings import BatchSettings

SPREADSHEET_ID = "1SheetId"
TITLE = "Form Responses 1"
SHEET_ID = 7
TOPIC = "responses"


class Journal(list):
    """``(event, *details)`` tuples in the order they happened."""

    def events(self) -> list[str]:
        return [entry[0] for entry in self]

    def first(self, event: str) -> int:
        """The position of the first entry named ``event``."""
        for position, entry in enumerate(self):
            if entry[0] == event:
                return position
        raise ValueError(f"{event!r} not in journal: {self.events()}")


def _trim(row: Sequence[Any]) -> list[Any]:
    """A row as the Sheets API returns it: trailing empty cells dropped."""
    cells = list(row)
    while cells and cells[-1] in ("", None):
        cells.pop()
    return cells


class ListReader:
    """
    A tab held as a list of rows (``rows[0]`` is sheet row 1), with what ``BatchRun`` uses of
    :class:`~airflow_provider_sheets.hooks.sheets.SheetsReader`.

    :param row_count: the grid's row count (default: as many as ``rows``, as they are when asked); rows
        past ``rows`` are empty.
    """

    def __init__(
        self,
        rows: list[list[Any]],
        *,
        row_count: int | None = None,
        column_count: int = 26,
        title: str = TITLE,
        sheet_id: int = SHEET_ID,
        time_zone: str = "Etc/UTC",
        locale: str = "en_US",
        journal: Journal | None = None,
    ) -> None:
        self.rows = rows
        self._row_count = row_count
        self.column_count = column_count
        self.title = title
        self.sheet_id = sheet_id
        self.time_zone = time_zone
        self.locale = locale
        self.journal = journal if journal is not None else Journal()
        self.requests = 0
        self.checked_row: list[Any] | None = None
        self.checked_rows: list[tuple[int, list[Any]]] = []
        self.first_page: Page | None = None
        #: the arguments of each read(), as keywords
        self.reads: list[dict[str, Any]] = []
        #: what accel.ReaderInChild looks at in a forked child (no Google client here)
        self.hook = None
        self.pacer = None  # no read budget

    @property
    def row_count(self) -> int:
        return len(self.rows) if self._row_count is None else self._row_count

    def after_fork(self) -> None:
        """Runs in a forked child first (the real reader makes a lock of its own there): nothing to do."""

    def cells(self, row: int) -> list[Any]:
        return _trim(self.rows[row - 1]) if 1 <= row <= len(self.rows) else []

    def span(self, first: int, last: int) -> list[list[Any]]:
        """Rows ``first..last`` as ``values:batchGet`` returns them: trailing empty rows dropped."""
        rows = [self.cells(row) for row in range(first, last + 1)]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def describe(self, spreadsheet_id: str, sheet_name: str | None = None) -> SheetInfo:
        self.requests += 1
        self.journal.append(("describe", spreadsheet_id, sheet_name))
        return SheetInfo(
            spreadsheet_id=spreadsheet_id,
            spreadsheet_title="Survey",
            time_zone=self.time_zone,
            sheet_id=self.sheet_id,
            title=sheet_name or self.title,
            row_count=self.row_count,
            column_count=self.column_count,
            tabs=(self.title,),
            locale=self.locale,
        )

    def read(
        self,
        info: SheetInfo,
        after_row: int,
        page_size: int = 5_000,
        header_row: int = 1,
        max_rows: int | None = None,
        check_row: int | None = None,
        check_rows: int = 1,
    ) -> tuple[list[Any], Iterator[Page]]:
        """The header and the pages after ``after_row``: one request now, one per later page when fetched."""
        self.reads.append(
            {
                "after_row": after_row,
                "page_size": page_size,
                "header_row": header_row,
                "max_rows": max_rows,
                "check_row": check_row,
            }
        )
        self.journal.append(("read", after_row, check_row))
        self.requests += 1
        end = info.row_count if max_rows is None else min(info.row_count, after_row + max_rows)
        self.checked_row = None if check_row is None else self.cells(check_row)
        self.checked_rows = []
        if check_row is not None:
            top = max(header_row + 1, check_row - check_rows + 1)
            self.checked_rows = [(row, self.cells(row)) for row in range(top, check_row + 1)]
        start = after_row + 1
        self.first_page = Page(
            start, min(start + page_size - 1, end), self.span(start, min(start + page_size - 1, end))
        )
        if start > end:
            self.first_page = None
        return self.cells(header_row), self._pages(start, end, page_size)

    def column(self, info: SheetInfo, col: int, first_row: int, last_row: int) -> Iterator[tuple[int, Any]]:
        """``(row, cell)`` for the non-empty cells of column ``col``, in one request (the cells as stored)."""
        self.journal.append(("column", col, first_row, last_row))
        self.requests += 1
        for row in range(first_row, min(last_row, len(self.rows)) + 1):
            cells = self.cells(row)
            if col <= len(cells) and cells[col - 1] not in ("", None):
                yield row, cells[col - 1]

    def _pages(self, start: int, end: int, page_size: int) -> Iterator[Page]:
        first = True
        while start <= end:
            last = min(start + page_size - 1, end)
            if not first:
                self.requests += 1
            first = False
            yield Page(start, last, self.span(start, last))
            start = last + 1


class FakeStore:
    """One watermark "Variable", kept as JSON text in a shared dict (so a round trip is exercised)."""

    def __init__(self, key: str, data: dict[str, str], journal: Journal) -> None:
        self.key = key
        self.data = data
        self.journal = journal

    def get(self) -> Watermark | None:
        self.journal.append(("store.get", self.key))
        text = self.data.get(self.key)
        return None if text is None else Watermark.from_json(text)

    def set(self, watermark: Watermark) -> Watermark:
        self.journal.append(("store.set", self.key, watermark.last_row))
        watermark.updated_at = "2026-11-02T09:00:00+00:00"
        self.data[self.key] = watermark.to_json()
        return watermark


@dataclass
class StoreFactory:
    """``Ports.store``: every store it makes shares ``data`` (Variable key → JSON)."""

    journal: Journal
    data: dict[str, str] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)

    def __call__(self, key: str) -> FakeStore:
        self.keys.append(key)
        return FakeStore(key, self.data, self.journal)

    def watermark(self, key: str) -> Watermark | None:
        text = self.data.get(key)
        return None if text is None else Watermark.from_json(text)

    def put(self, key: str, last_row: int, **fields: Any) -> None:
        self.data[key] = Watermark(last_row=last_row, **fields).to_json()


@dataclass
class Sent:
    """One record as the publisher was asked to produce it."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    #: the record's CreateTime in epoch ms (0: the publish time)
    timestamp: int = 0

    @property
    def header(self) -> dict[str, bytes]:
        return dict(self.headers)

    @property
    def json(self) -> Any:
        return json.loads(self.value)


class FakePublisher:
    """Records every call; ``settle`` answers ``settles`` (default: everything is acknowledged)."""

    def __init__(self, topic: str, transactional_id: str | None, journal: Journal, settles: bool = True) -> None:
        self.topic = topic
        self.transactional_id = transactional_id
        self.journal = journal
        self.settles = settles
        self.in_transaction = False
        self.produced = 0
        self.acked = 0
        self.sent: list[Sent] = []
        self.checked_topics: list[str] = []
        self.finished = False
        self.closed = False
        self.polls = 0
        self.settle_calls: list[float] = []
        self.restamped = 0
        self.time_limit = None

    def check_topic(self, topic: str | None = None, timeout: float = 15.0) -> int:
        name = topic or self.topic
        self.checked_topics.append(name)
        self.journal.append(("publisher.check_topic", name))
        return 3

    def begin(self, timeout: float = 60.0) -> None:
        self.journal.append(("publisher.begin", self.transactional_id))
        if self.transactional_id:
            self.in_transaction = True

    def send(self, key: bytes, value: bytes, headers, topic: str | None = None) -> None:
        name = topic or self.topic
        self.sent.append(Sent(name, key, value, list(headers)))
        self.journal.append(("publisher.send", name, key))
        self.produced += 1

    def send_many(self, messages, topic: str | None = None) -> None:
        name = topic or self.topic
        batch = [Sent(name, key, value, list(headers), stamp) for key, value, headers, stamp in messages]
        self.sent.extend(batch)
        self.journal.append(("publisher.send_many", name, len(batch)))
        self.produced += len(batch)

    def poll(self) -> None:
        self.polls += 1

    def settle(self, timeout: float) -> bool:
        self.settle_calls.append(timeout)
        self.journal.append(("publisher.settle", self.settles))
        if self.settles:
            self.acked = self.produced
        return self.settles

    def finish(self) -> int:
        self.journal.append(("publisher.finish", self.produced))
        self.finished = True
        self.in_transaction = False
        self.acked = self.produced
        return self.acked

    def close(self) -> None:
        self.journal.append(("publisher.close",))
        self.closed = True

    def to(self, topic: str) -> list[Sent]:
        return [sent for sent in self.sent if sent.topic == topic]


@dataclass
class PublisherFactory:
    """``Ports.publisher``: remembers every publisher it built (and the transactional id it was given)."""

    journal: Journal
    settles: bool = True
    built: list[FakePublisher] = field(default_factory=list)

    def __call__(self, settings: BatchSettings, transactional_id: str | None) -> FakePublisher:
        self.journal.append(("publisher.new", transactional_id))
        publisher = FakePublisher(settings.topic, transactional_id, self.journal, self.settles)
        self.built.append(publisher)
        return publisher

    @property
    def last(self) -> FakePublisher:
        return self.built[-1]


class FakeLease:
    """A lease that is always free: only the calls are recorded."""

    def __init__(self, watermark_key: str, owner: str, journal: Journal) -> None:
        self.key = f"{watermark_key}.lease"
        self.watermark_key = watermark_key
        self.owner = owner
        self.journal = journal
        self.held = False

    def claim(self) -> bool:
        self.journal.append(("lease.claim", self.watermark_key))
        return True

    def confirm(self) -> None:
        self.journal.append(("lease.confirm", self.watermark_key))
        self.held = True

    def renew(self) -> None:
        self.journal.append(("lease.renew", self.watermark_key))

    def keep(self) -> None:
        self.journal.append(("lease.keep", self.watermark_key))

    def release(self) -> None:
        self.journal.append(("lease.release", self.watermark_key))
        self.held = False


@dataclass
class LeaseFactory:
    """``Ports.lease``."""

    journal: Journal
    built: list[FakeLease] = field(default_factory=list)

    def __call__(self, key: str, owner: str, settings: BatchSettings) -> FakeLease:
        lease = FakeLease(key, owner, self.journal)
        self.built.append(lease)
        return lease


@dataclass
class CheckpointReader:
    """``Ports.checkpoint``: the committed checkpoint of a key in the state topic (``values[key]``)."""

    journal: Journal
    values: dict[str, bytes] = field(default_factory=dict)

    def __call__(self, settings: BatchSettings, key: str) -> bytes | None:
        self.journal.append(("checkpoint", settings.state_topic, key))
        return self.values.get(key)


@dataclass
class FingerprintReader:
    """``Ports.fingerprints``: the fingerprint topic as the finished publishers left it (the last per key)."""

    publishers: PublisherFactory

    def __call__(self, settings: BatchSettings) -> dict[bytes, tuple[int, str]]:
        from airflow_provider_sheets.model.reconcile import known_fingerprints

        sent = [m for p in self.publishers.built if p.finished for m in p.sent if m.topic == settings.fingerprint_topic]
        return known_fingerprints((m.key, m.value) for m in sent)

    def latest(self, topic: str) -> dict[bytes, bytes]:
        """What a consumer keeping the latest value per key of ``topic`` holds (a tombstone removes the key)."""
        view: dict[bytes, bytes] = {}
        for publisher in self.publishers.built:
            for message in publisher.sent if publisher.finished else []:
                if message.topic != topic:
                    continue
                if message.value is None:
                    view.pop(message.key, None)
                else:
                    view[message.key] = message.value
        return view


def settings(**values: Any) -> BatchSettings:
    """
    ``BatchSettings.check`` over every name with its default, plus ``values``; values are formatted
    (``typed_values=False``) unless asked: the fake readers serve the cells as the sheet shows them
    (typed values are tested through the real reader and the local Sheets server).
    """
    defaults = {f.name: f.default for f in fields(BatchSettings) if f.default is not MISSING}
    base = {name: defaults.get(name) for name in BatchSettings.names()}
    base.update(spreadsheet_id=SPREADSHEET_ID, topic=TOPIC, typed_values=False)
    base.update(values)
    return BatchSettings.check(base)


@dataclass
class Harness:
    """A reader and the fakes of one test, sharing a journal; :meth:`run` builds and executes a BatchRun."""

    rows: list[list[Any]]
    row_count: int | None = None
    journal: Journal = field(default_factory=Journal)

    def __post_init__(self) -> None:
        self.reader = ListReader(self.rows, row_count=self.row_count, journal=self.journal)
        self.stores = StoreFactory(self.journal)
        self.publishers = PublisherFactory(self.journal)
        self.leases = LeaseFactory(self.journal)
        self.checkpoints = CheckpointReader(self.journal)
        self.fingerprints = FingerprintReader(self.publishers)
        self.log = logging.getLogger("test")

    @property
    def ports(self) -> Ports:
        return Ports(
            reader=self.reader,  # type: ignore[arg-type]
            publisher=self.publishers,  # type: ignore[arg-type]
            store=self.stores,  # type: ignore[arg-type]
            lease=self.leases,  # type: ignore[arg-type]
            checkpoint=self.checkpoints,
            fingerprints=self.fingerprints,
        )

    def batch(self, run: RunContext | None = None, **values: Any) -> BatchRun:
        return BatchRun(settings(**values), run or RunContext("forms", "manual__1", "publish"), self.ports, self.log)

    def run(self, run: RunContext | None = None, **values: Any):
        return self.batch(run, **values).execute()

    @property
    def publisher(self) -> FakePublisher:
        """The publisher of the last run."""
        return self.publishers.last
