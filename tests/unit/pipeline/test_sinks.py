"""The publish loop's sinks: the publisher with the run's headers, and a dry run's preview."""

from __future__ import annotations

import json

import pytest

from airflow_provider_sheets.model.headers import RecordHeaders
from airflow_provider_sheets.model.loop import LoopOptions, LoopResult, run_pages
from airflow_provider_sheets.model.mapping import Record, RowMapper, RowMappingError
from airflow_provider_sheets.model.sheet import Page
from airflow_provider_sheets.pipeline.sinks import DRY_RUN_PREVIEW, PreviewSink, PublishSink

from .fakes import FakePublisher, Journal, Sent

STATIC = [("sheets.spreadsheet_id", b"s"), ("airflow.dag_id", b"d")]


def records(*rows: int) -> list[Record]:
    return [Record(row, str(row).encode(), json.dumps({"n": row}).encode()) for row in rows]


class RecordingProgress:
    def __init__(self) -> None:
        self.results: list[LoopResult] = []

    def page_done(self, result: LoopResult) -> None:
        self.results.append(result)


@pytest.fixture
def publisher():
    return FakePublisher("responses", None, Journal())


@pytest.mark.parametrize("pages", [[], [[2]], [[2, 3], [4]], [[2, 3, 4, 5, 6], [], [9]]])
def test_publish_sink_sends_each_page_in_one_batch_and_counts_it(publisher, pages):
    sink = PublishSink(publisher, RecordHeaders(STATIC, True), None, "dlq")
    for rows in pages:
        sink.records(records(*rows))
    sent_rows = [row for rows in pages for row in rows]
    assert sink.published == len(sent_rows)
    assert publisher.sent == [
        Sent(
            "responses",
            str(row).encode(),
            json.dumps({"n": row}).encode(),
            [*STATIC, ("sheets.row", str(row).encode()), ("sheets.change", b"insert")],
        )
        for row in sent_rows
    ]
    assert [e[2] for e in publisher.journal if e[0] == "publisher.send_many"] == [len(rows) for rows in pages]


def test_publish_sink_uses_the_row_number_for_sheets_row_when_keyed_by_a_column(publisher):
    sink = PublishSink(publisher, RecordHeaders(STATIC, keys_by_row=False), None, None)
    sink.records([Record(7, b"ID-7", b"{}")])
    assert publisher.sent[0].key == b"ID-7"
    assert publisher.sent[0].header["sheets.row"] == b"7"


@pytest.mark.parametrize("dead_letter_topic", ["responses.dlq", "other-topic"])
def test_dead_letters_go_to_the_dead_letter_topic_and_are_not_counted(publisher, dead_letter_topic):
    sink = PublishSink(publisher, RecordHeaders(STATIC, True), None, dead_letter_topic)
    sink.dead_letter(RowMappingError(5, "the key column 'id' is empty"), ["", "x"])
    sink.records(records(6))
    assert sink.published == 1
    dead, good = publisher.sent
    assert (dead.topic, dead.key) == (dead_letter_topic, b"5")
    assert json.loads(dead.value) == {"row": 5, "cells": ["", "x"], "error": "the key column 'id' is empty"}
    assert dead.headers == [*STATIC, ("sheets.row", b"5"), ("sheets.error", b"the key column 'id' is empty")]
    assert good.topic == "responses"


@pytest.mark.parametrize("with_progress", [True, False])
def test_publish_sink_serves_delivery_reports_after_each_page(publisher, with_progress):
    tracker = RecordingProgress() if with_progress else None
    sink = PublishSink(publisher, RecordHeaders(STATIC, True), tracker, None)  # type: ignore[arg-type]
    first, second = LoopResult(pages=1), LoopResult(pages=2)
    sink.page_done(first)
    sink.page_done(second)
    assert publisher.polls == 2
    if tracker is not None:
        assert tracker.results == [first, second]


def test_publish_sink_through_the_loop(publisher):
    """What the loop hands a PublishSink ends up produced in this order: a page's dead letters first."""
    sink = PublishSink(publisher, RecordHeaders([], True), None, "dlq")
    pages = [Page(2, 4, [["a", "1"], ["", "2"], ["c", "3"]]), Page(5, 5, [["e", "5"]])]
    run_pages(pages, RowMapper(["id", "n"], "id"), sink, LoopOptions(dead_letters=True))
    assert [(s.topic, s.key) for s in publisher.sent] == [
        ("dlq", b"3"),
        ("responses", b"a"),
        ("responses", b"c"),
        ("responses", b"e"),
    ]
    assert sink.published == 3
    assert publisher.polls == 2


# -- PreviewSink -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pages", "lines"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param([[2, 3]], [2, 3], id="fewer-than-five"),
        pytest.param([[2, 3, 4, 5, 6]], [2, 3, 4, 5, 6], id="exactly-five"),
        pytest.param([[2, 3, 4, 5, 6, 7, 8]], [2, 3, 4, 5, 6], id="more-in-one-page"),
        pytest.param([[2, 3], [4], [], [5, 6, 7], [8]], [2, 3, 4, 5, 6], id="across-pages"),
    ],
)
def test_preview_sink_keeps_the_first_five_records(pages, lines):
    sink = PreviewSink()
    for rows in pages:
        sink.records(records(*rows))
    assert DRY_RUN_PREVIEW == 5
    assert sink.lines == [f'row {row} key={row} {{"n": {row}}}' for row in lines]


def test_preview_lines_cut_long_values_at_300_characters():
    sink = PreviewSink()
    value = json.dumps({"text": "é" * 1000}, ensure_ascii=False).encode()
    sink.records([Record(2, "키".encode(), value)])
    (line,) = sink.lines
    assert line == f"row 2 key=키 {value.decode()[:300]}"
    assert len(line) == len("row 2 key=키 ") + 300


def test_preview_sink_ignores_dead_letters_and_passes_pages_on():
    tracker = RecordingProgress()
    sink = PreviewSink(tracker)  # type: ignore[arg-type]
    sink.dead_letter(RowMappingError(3, "bad"), ["x"])
    assert sink.lines == []
    result = LoopResult(pages=1)
    sink.page_done(result)
    assert tracker.results == [result]
    PreviewSink().page_done(result)  # without progress: nothing to do


def test_preview_sink_takes_plain_tuples_as_the_forked_path_hands_them_over():
    sink = PreviewSink()
    sink.records([(2, b"2", b"{}", 0)])  # type: ignore[list-item]
    assert sink.lines == ["row 2 key=2 {}"]
