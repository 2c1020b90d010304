"""The downstream helpers: the topic of an asset URI, which records an event names, the watcher's apply function."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from airflow_provider_sheets.transfers.downstream import _expected_rows, _wanted, new_response, topic_of


@dataclass
class StandInMessage:
    """A stand-in for confluent_kafka.Message (which Python code cannot build), with its accessors."""

    _headers: list[tuple[str, bytes]]
    _value: bytes | None = b"{}"

    def headers(self):
        return self._headers

    def value(self):
        return self._value

    def topic(self):
        return "form-responses"

    def partition(self):
        return 2

    def offset(self):
        return 41


def headers(row: int, change: str = "insert", spreadsheet: str = "S1", sheet: str = "0") -> list[tuple[str, bytes]]:
    return [
        ("sheets.spreadsheet_id", spreadsheet.encode()),
        ("sheets.sheet_id", sheet.encode()),
        ("sheets.row", str(row).encode()),
        ("sheets.change", change.encode()),
    ]


@pytest.mark.parametrize(
    ("uri", "topic"),
    [("kafka://broker:9092/form-responses", "form-responses"), ("kafka://a:1,b:2/t.x", "t.x")],
)
def test_the_topic_of_an_asset_uri(uri, topic):
    assert topic_of(uri) == topic


@pytest.mark.parametrize("uri", ["kafka://broker:9092/", "s3://bucket/key", "kafka://broker:9092"])
def test_a_uri_that_names_no_topic_is_refused(uri):
    with pytest.raises(ValueError, match="not a kafka://<server>/<topic> asset URI"):
        topic_of(uri)


EXTRA = {"spreadsheet_id": "S1", "sheet_id": 0, "first_row": 5, "last_row": 7}


@pytest.mark.parametrize(
    ("record_headers", "row"),
    [
        (headers(5), 5),
        (headers(7, "update"), 7),
        (headers(4), None),
        (headers(8), None),
        (headers(6, spreadsheet="S2"), None),
        (headers(6, sheet="9"), None),
        ([("sheets.spreadsheet_id", b"S1"), ("sheets.sheet_id", b"0")], None),
        ([], None),
    ],
)
def test_the_records_an_event_names(record_headers, row):
    assert _wanted(record_headers, EXTRA) == row


def test_the_watcher_takes_new_responses_only():
    assert new_response(StandInMessage(headers(12))) == {
        "spreadsheet_id": "S1",
        "sheet_id": "0",
        "row": 12,
        "topic": "form-responses",
        "partition": 2,
        "offset": 41,
    }
    assert new_response(StandInMessage(headers(12, "update"))) is None, "an edit published again"
    assert new_response(StandInMessage(headers(12, "delete"), None)) is None, "a tombstone"
    assert new_response(StandInMessage([("other", b"x")])) is None, "another producer's record"


def test_an_event_listed_under_the_asset_and_its_alias_is_read_once():
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from airflow_provider_sheets.transfers.downstream import published_events

    def event(run: str, minute: int, first_row: int) -> SimpleNamespace:
        return SimpleNamespace(
            asset=SimpleNamespace(uri="kafka://b:9092/t"),
            extra={"first_row": first_row},
            source_dag_id="sheets_to_kafka",
            source_run_id=run,
            source_task_id="publish_new_responses",
            source_map_index=-1,
            timestamp=datetime(2026, 11, 5, 9, minute, tzinfo=timezone.utc),
        )

    later, earlier = event("r2", 30, 8), event("r1", 15, 2)
    by_key = {"asset": [later, earlier], "alias": [earlier, later]}
    assert published_events(by_key) == [("kafka://b:9092/t", {"first_row": 2}), ("kafka://b:9092/t", {"first_row": 8})]
    assert published_events(None) == []


@pytest.mark.parametrize(
    ("first", "last", "published", "expected", "deleted"),
    [
        (2, 6, 5, 5, 0),
        (2, 7, 7, 6, 0),  # a row published twice in the run (an edit republished): its latest record counts once
        (2, 9, 3, 3, 0),  # empty rows skipped, or a reconcile that found the others right
        (5, 5, 0, 0, 0),
        (2, 7, 7, 5, 2),  # a reconcile: 5 rows changed, tombstones for rows 8 and 9 (no value to read)
        (2, 3, 2, 0, 2),  # a reconcile that only deleted
    ],
)
def test_an_event_holds_its_distinct_rows(first, last, published, expected, deleted):
    extra = {"first_row": first, "last_row": last, "rows_published": published, "rows_deleted": deleted}
    assert _expected_rows(extra) == expected
