"""Where the publish loop's records go: the publisher (with the run's headers), or a dry run's preview."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_sheets.adapters.publisher import Publisher
from airflow_provider_sheets.model.headers import Message, RecordHeaders
from airflow_provider_sheets.model.loop import LoopResult
from airflow_provider_sheets.model.mapping import Record, RowMappingError
from airflow_provider_sheets.model.reconcile import Reconciliation, fingerprint_value
from airflow_provider_sheets.pipeline.progress import Progress

#: Records shown in the task log by a dry run.
DRY_RUN_PREVIEW = 5


def restamped_warning(publisher: Publisher, since: int = 0) -> str | None:
    """
    What the log says of the records the publisher stamped with the publish time (past ``since``
    of them), because the topic keeps no record as old as their event time; ``None`` when none were.
    """
    count, limit = publisher.restamped - since, publisher.time_limit
    if count <= 0 or limit is None:
        return None
    return (
        f"{count} record(s) carry the publish time as their Kafka timestamp, not their event time: topic "
        f"{publisher.topic!r} keeps no record older than its {limit.setting}, and stamped with their event time "
        f"they would be deleted (or refused) as soon as they are written. Their values keep the event time. To "
        f"stamp records that old with it, raise the topic's limit, e.g. kafka-configs.sh --alter --entity-type "
        f"topics --entity-name {publisher.topic} --add-config retention.ms=-1"
    )


class PublishSink:
    """
    Produce each page's records with the run's headers, dead letters to ``dead_letter_topic``, and
    serve delivery reports after each page.
    """

    def __init__(
        self,
        publisher: Publisher,
        headers: RecordHeaders,
        progress: Progress | None,
        dead_letter_topic: str | None,
        fingerprint_topic: str | None = None,
        reconciliation: Reconciliation | None = None,
    ) -> None:
        """
        :param fingerprint_topic: also write each record's fingerprint there (what a reconcile compares with).
        :param reconciliation: a reconcile run's: publish only the records it finds changed, saying how.
        """
        self.publisher = publisher
        self.headers = headers
        self.progress = progress
        self.dead_letter_topic = dead_letter_topic
        self.fingerprint_topic = fingerprint_topic
        self.reconciliation = reconciliation
        #: records handed to the topic (dead letters not counted; tombstones are)
        self.published = 0

    def dead_letter(self, error: RowMappingError, cells: list[Any]) -> None:
        key, value, headers = self.headers.dead_letter(error, cells)
        self.publisher.send(key, value, headers, topic=self.dead_letter_topic)

    def records(self, records: Sequence[Record]) -> None:
        if self.reconciliation is None:
            messages = self.headers.messages(records)
        else:
            changes = [(record, self.reconciliation.change(record)) for record in records]
            records = [record for record, change in changes if change is not None]
            messages = [self.headers.message(record, change) for record, change in changes if change is not None]
        self.publisher.send_many(messages)
        if self.fingerprint_topic:
            prints: list[Message] = [(k, fingerprint_value(r, v), [], 0) for r, k, v, _ in records]
            self.publisher.send_many(prints, topic=self.fingerprint_topic)
        self.published += len(records)

    def tombstones(self) -> int:
        """A reconcile run's end: a tombstone for each key no row holds now (in the fingerprint topic too)."""
        if self.reconciliation is None:
            return 0
        gone = self.reconciliation.gone()
        for key, row in gone:
            self.publisher.send(*self.headers.tombstone(key, row))
            if self.fingerprint_topic:
                self.publisher.send(key, None, [], topic=self.fingerprint_topic)
        self.published += len(gone)
        return len(gone)

    def page_done(self, result: LoopResult) -> None:
        self.publisher.poll()
        if self.progress is not None:
            self.progress.page_done(result)


class PreviewSink:
    """A dry run's sink: keeps the first :data:`DRY_RUN_PREVIEW` records as log lines, publishes nothing."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress
        self.lines: list[str] = []

    def dead_letter(self, error: RowMappingError, cells: list[Any]) -> None:
        return None

    def records(self, records: Sequence[Record]) -> None:
        for row, key, value, _ in records[: DRY_RUN_PREVIEW - len(self.lines)]:
            self.lines.append(f"row {row} key={key.decode()} {value.decode()[:300]}")

    def page_done(self, result: LoopResult) -> None:
        if self.progress is not None:
            self.progress.page_done(result)
