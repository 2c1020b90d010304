"""SheetToKafkaOperator end to end: real broker, real Google client over HTTP, real Airflow DB."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from tests.helpers import consume_all, get_variable, get_xcom, run_operator, use_kafka

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


SHEETS_HEADERS = [
    "sheets.spreadsheet_id",
    "sheets.sheet_name",
    "sheets.sheet_id",
    "sheets.header_hash",
    "sheets.row",
    "sheets.change",
]
AIRFLOW_HEADERS = ["airflow.dag_id", "airflow.run_id", "airflow.run_type", "airflow.task_id", "airflow.try_number"]


def _new_sheet(server, rows, tab=FORMS_TAB, header=FORMS_HEADER, **kwargs) -> str:
    spreadsheet_id = f"sheet-{uuid.uuid4().hex[:12]}"
    server.create_spreadsheet(spreadsheet_id, {tab: [header, *rows]} if header is not None else {tab: rows}, **kwargs)
    return spreadsheet_id


def _expected_value(row: list[object]) -> dict[str, object]:
    """What a FORMATTED_VALUE read of a sample row must map to, built independently of the mapper."""
    cells: list[object] = [
        cell.strftime("%-m/%-d/%Y %-H:%M:%S") if isinstance(cell, datetime) else str(cell) for cell in row
    ]
    cells += [None] * (len(FORMS_HEADER) - len(cells))
    return dict(zip(FORMS_HEADER, cells, strict=True))


def test_new_rows_then_appended_rows_then_nothing(connections, sheets_server, broker, topic):
    first = forms_rows(23)
    sid = _new_sheet(sheets_server, first)
    kwargs = {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"], "page_size": 10}

    result = run_operator(**kwargs)
    assert result.state == "success"
    messages = consume_all(broker.bootstrap_servers, topic)
    assert [m.row for m in messages] == list(range(2, 25))
    assert [m.key for m in messages] == [str(r) for r in range(2, 25)]
    assert [m.value for m in messages] == [_expected_value(r) for r in first]
    headers = messages[0].headers
    assert sorted(headers) == sorted(SHEETS_HEADERS + AIRFLOW_HEADERS)
    assert headers["sheets.spreadsheet_id"] == sid
    assert headers["sheets.sheet_name"] == FORMS_TAB
    assert headers["sheets.sheet_id"] == "0"
    assert headers["airflow.dag_id"] == "sheets_it"
    assert headers["airflow.run_id"] == result.run_id
    assert headers["airflow.task_id"] == "publish"
    assert len({m.partition for m in messages}) > 1, "keys should spread over the topic's partitions"
    summary = result.summary
    assert (summary["rows_published"], summary["first_row"], summary["last_row"]) == (23, 2, 24)
    assert summary["pages"] >= 3
    key = summary["watermark_key"]
    assert get_variable(key)["last_row"] == 24

    appended = forms_rows(7, start=23)
    sheets_server.append_rows(sid, FORMS_TAB, appended)
    result = run_operator(**kwargs)
    assert result.state == "success"
    messages = consume_all(broker.bootstrap_servers, topic)
    assert [m.row for m in messages] == list(range(2, 32))
    assert [m.value for m in messages[23:]] == [_expected_value(r) for r in appended]
    assert (result.summary["rows_published"], result.summary["first_row"], result.summary["last_row"]) == (7, 25, 31)
    assert get_variable(key)["last_row"] == 31

    sheets_server.reset_stats()
    result = run_operator(**{**kwargs, "page_size": 5000})
    assert result.state == "success"
    summary = result.summary
    assert (summary["rows_published"], summary["first_row"], summary["last_row"]) == (0, None, None)
    assert len(consume_all(broker.bootstrap_servers, topic)) == 30
    assert get_variable(key)["last_row"] == 31
    assert sheets_server.request_count() == 2, "nothing new: one spreadsheets.get and one values request"
    assert result.summary["sheets_requests"] == 2


@pytest.mark.parametrize("mapping_process", [None, False], ids=["mapping-process", "one-process"])
def test_gaps_half_filled_pages_and_empty_pages_lose_nothing(
    connections, sheets_server, broker, topic, mapping_process
):
    data = forms_rows(12)
    # rows 2..13 hold: 3 rows, 6 empty rows (a whole empty page at page_size 4), then the rest
    rows = [*data[:3], *([[]] * 6), *data[3:]]
    sid = _new_sheet(sheets_server, rows)
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": connections["api_endpoint"],
        "page_size": 4,
        "mapping_process": mapping_process,
    }
    sheets_server.reset_stats()
    result = run_operator(**kwargs)
    assert result.state == "success"
    got = consume_all(broker.bootstrap_servers, topic)
    assert [m.row for m in got] == [2, 3, 4, *range(11, 20)]
    assert [m.value for m in got] == [_expected_value(r) for r in data]
    assert result.summary["empty_rows_skipped"] == 6
    assert result.summary["last_row"] == 19
    assert result.summary["sheets_requests"] == sheets_server.request_count(), "requests made by either process"

    # a half-filled last page is not skipped when it fills up later
    sheets_server.append_rows(sid, FORMS_TAB, forms_rows(1, start=50))
    assert run_operator(**kwargs).state == "success"
    sheets_server.append_rows(sid, FORMS_TAB, forms_rows(2, start=51))
    result = run_operator(**kwargs)
    assert result.summary["first_row"] == 21
    assert [m.row for m in consume_all(broker.bootstrap_servers, topic)] == [2, 3, 4, *range(11, 23)]


def test_key_column_duplicate_and_blank_headers(connections, sheets_server, broker, topic):
    header = ["Timestamp", "Email", "", "Email", "Score"]
    rows = [["t1", "a@x", "note", "b@x", 5], ["t2", "c@x"]]
    sid = _new_sheet(sheets_server, rows, tab="Bob's answers", header=header)
    result = run_operator(
        spreadsheet_id=sid,
        sheet_name="Bob's answers",
        topic=topic,
        api_endpoint=connections["api_endpoint"],
        key_column="Email",
        airflow_headers=False,
    )
    assert result.state == "success"
    got = consume_all(broker.bootstrap_servers, topic)
    assert [m.key for m in got] == ["a@x", "c@x"]
    assert [sorted(m.headers) for m in got] == [sorted(SHEETS_HEADERS)] * 2, "airflow_headers=False: sheets.* only"
    assert [m.headers["sheets.row"] for m in got] == ["2", "3"]
    assert got[0].value == {"Timestamp": "t1", "Email": "a@x", "column_C": "note", "Email_2": "b@x", "Score": "5"}
    assert got[1].value == {"Timestamp": "t2", "Email": "c@x", "column_C": None, "Email_2": None, "Score": None}
    assert got[0].headers["sheets.sheet_name"] == "Bob's answers"


def test_default_tab_is_the_first_and_watermark_key_is_per_tab(connections, sheets_server, broker, topic):
    sid = f"sheet-{uuid.uuid4().hex[:12]}"
    sheets_server.create_spreadsheet(sid, {"First": [["h"], ["a"], ["b"]], "Second": [["h"], ["c"]]})
    first = run_operator(spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"])
    second = run_operator(
        spreadsheet_id=sid, sheet_name="Second", topic=topic, api_endpoint=connections["api_endpoint"]
    )
    assert first.summary["sheet_name"] == "First"
    assert first.summary["watermark_key"] != second.summary["watermark_key"]
    assert sorted(m.value["h"] for m in consume_all(broker.bootstrap_servers, topic)) == ["a", "b", "c"]


def test_failed_publish_leaves_watermark_unchanged(connections, sheets_server, spare_broker, monkeypatch):
    own = spare_broker
    name = f"stopped-{uuid.uuid4().hex[:8]}"
    sid = _new_sheet(sheets_server, forms_rows(5))
    own.create_topics([name], partitions=1)
    use_kafka(monkeypatch, own.bootstrap_servers)
    kwargs = {
        "spreadsheet_id": sid,
        "topic": name,
        "api_endpoint": connections["api_endpoint"],
        "producer_config": {"message.timeout.ms": 5000, "socket.connection.setup.timeout.ms": 2000},
        "flush_timeout": 10,
    }
    ok = run_operator(**kwargs)
    assert ok.state == "success"
    key = ok.summary["watermark_key"]
    assert get_variable(key)["last_row"] == 6
    own.stop()
    sheets_server.append_rows(sid, FORMS_TAB, forms_rows(3, start=5))
    failed = run_operator(**kwargs)
    assert failed.state == "failed"
    assert get_variable(key)["last_row"] == 6


def test_tab_not_found_lists_the_tabs(connections, sheets_server, topic):
    sid = _new_sheet(sheets_server, forms_rows(2))
    result = run_operator(
        spreadsheet_id=sid, sheet_name="Responses", topic=topic, api_endpoint=connections["api_endpoint"]
    )
    assert result.state == "failed"
    # the failed attempt still links to the spreadsheet (its tab is unknown): the link Airflow kept for the UI
    link = get_xcom("sheets_it", result.run_id, "publish", "_link_GoogleSheetLink")
    assert link == f"https://docs.google.com/spreadsheets/d/{sid}/edit"


def test_typed_values_and_event_time_on_apache_kafka(connections, sheets_server, broker, keeping_topic):
    """A German form, typed: the values as JSON types, each record's CreateTime the submission time."""
    from datetime import datetime, timezone

    topic = keeping_topic

    sid = f"typed-{uuid.uuid4().hex[:8]}"
    rows = [[datetime(2026, 11, 5, 9, 5, 3), "Ann", 4, True], [datetime(2026, 11, 5, 14, 30, 0), "Bob", 2.5, False]]
    sheets_server.create_spreadsheet(
        sid, {"Formularantworten 1": [["Zeitstempel", "Name", "Note", "Ja"], *rows]}, locale="de_DE",
        time_zone="Europe/Berlin",
    )  # fmt: skip
    result = run_operator(spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"], typed_values=True)
    assert result.state == "success"
    messages = consume_all(broker.bootstrap_servers, topic, expected=2)
    assert [m.value for m in messages] == [
        {"Zeitstempel": "2026-11-05T09:05:03+01:00", "Name": "Ann", "Note": 4, "Ja": True},
        {"Zeitstempel": "2026-11-05T14:30:00+01:00", "Name": "Bob", "Note": 2.5, "Ja": False},
    ]
    assert all(m.create_time for m in messages)
    assert [m.timestamp for m in messages] == [
        int(datetime(2026, 11, 5, 8, 5, 3, tzinfo=timezone.utc).timestamp() * 1000),
        int(datetime(2026, 11, 5, 13, 30, tzinfo=timezone.utc).timestamp() * 1000),
    ]


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({"retention.ms": "604800000"}, "retention.ms=604800000"),  # deleted at the next retention check
        ({"message.timestamp.before.max.ms": "86400000"}, "message.timestamp.before.max.ms=86400000"),  # refused
    ],
    ids=["retention", "before-max"],
)
def test_rows_older_than_the_topic_keeps_are_stamped_with_the_publish_time(
    connections, sheets_server, broker, capfd, config, setting
):
    """A month-old response in a topic that keeps a week (or accepts a day): published, kept, its value unchanged."""
    import time
    from datetime import timedelta, timezone

    topic = f"responses-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic], partitions=1, config=config)
    recent = (datetime.now(timezone.utc) - timedelta(minutes=10)).replace(microsecond=0, tzinfo=None)
    old = datetime(2026, 11, 1, 9, 5, 3)
    sid = _new_sheet(sheets_server, [[old, "Ann", "ann@x", "Friend", 4], [recent, "Bob", "bob@x", "Ad", 5]],
                     time_zone="Etc/UTC")  # fmt: skip
    capfd.readouterr()
    before = int(time.time() * 1000)
    result = run_operator(spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"], typed_values=True)
    after = int(time.time() * 1000)
    log = "".join(capfd.readouterr())
    assert result.state == "success", log[-3000:]
    assert result.summary["rows_published"] == 2
    assert result.summary["rows_restamped"] == 1
    old_record, recent_record = consume_all(broker.bootstrap_servers, topic, expected=2)
    assert before <= old_record.timestamp <= after, "the old row: the publish time"
    assert old_record.value["Timestamp"] == "2026-11-01T09:05:03+00:00", "the value keeps the event time"
    assert recent_record.timestamp == int(recent.replace(tzinfo=timezone.utc).timestamp() * 1000)
    assert "1 record(s) carry the publish time as their Kafka timestamp" in log
    assert f"topic {topic!r} keeps no record older than its {setting}" in log


def test_cloudevents_records_are_read_by_the_cloudevents_sdk(connections, sheets_server, broker, topic):
    """Every record of a cloudevents run is an event to the CloudEvents SDK's Kafka binding (binary mode)."""
    from datetime import datetime, timezone

    from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
    from cloudevents.core.formats.json import JSONFormat
    from confluent_kafka import Consumer, TopicPartition

    sid = f"events-{uuid.uuid4().hex[:8]}"
    rows = [[datetime(2026, 11, 5, 9, 5, 3), "Ann", 4], [datetime(2026, 11, 5, 9, 7, 0), "Bob", 5]]
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [["Timestamp", "Name", "Rating"], *rows]})
    kwargs = {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"]}
    result = run_operator(**kwargs, typed_values=True, value_format="cloudevents")
    assert result.state == "success"
    assert len(consume_all(broker.bootstrap_servers, topic, expected=2)) == 2
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": f"ce-{uuid.uuid4().hex[:6]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        events = []
        while len(events) < 2:
            msg = consumer.poll(10)
            assert msg is not None
            assert msg.error() is None
            message = KafkaMessage(headers=dict(msg.headers()), key=msg.key(), value=msg.value())
            events.append(from_binary(message, JSONFormat()))
    finally:
        consumer.close()
    events.sort(key=lambda event: event.get_id())
    assert [event.get_id() for event in events] == [f"{sid}/0/2", f"{sid}/0/3"]
    assert {event.get_source() for event in events} == {f"//sheets.googleapis.com/spreadsheets/{sid}/sheets/0"}
    assert {event.get_type() for event in events} == {"com.google.sheets.row.inserted"}
    assert [event.get_time() for event in events] == [
        datetime(2026, 11, 5, 9, 5, 3, tzinfo=timezone.utc),
        datetime(2026, 11, 5, 9, 7, 0, tzinfo=timezone.utc),
    ], "ce_time is the submission time"
    assert [event.get_data() for event in events] == [
        {"Timestamp": "2026-11-05T09:05:03+00:00", "Name": "Ann", "Rating": 4},
        {"Timestamp": "2026-11-05T09:07:00+00:00", "Name": "Bob", "Rating": 5},
    ]


def test_connect_json_records_are_read_by_a_kafka_connect_worker(connections, sheets_server, broker, topic, tmp_path):
    """
    A real Kafka Connect standalone worker (JsonConverter, schemas.enable=true, a FileStreamSink)
    reads every connect_json record as a Struct with the columns' types; one it cannot convert would
    stop its task (errors.tolerance=none) and leave lines missing.
    """
    import shutil
    from datetime import date, datetime, time

    from airflow_provider_sheets.devkit.kafka_connect import FileSinkWorker
    from tests.conftest import require_or_skip

    require_or_skip(shutil.which("java") is not None and shutil.which("mvn") is not None, "Java and Maven")
    sid = f"connect-{uuid.uuid4().hex[:8]}"
    header = ["Timestamp", "Name", "Rating", "Share", "Subscribed", "Day", "At"]
    rows = [
        [datetime(2026, 11, 5, 9, 5, 3), "Ann", 4, 0.5, True, date(2026, 11, 5), time(9, 30)],
        [datetime(2026, 11, 5, 14, 30, 0), "Bob", 2.5, "n/a", False, date(2026, 11, 6), time(17, 0, 15)],
    ]
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [header, *rows]})
    sheets_server.set_column_format(sid, FORMS_TAB, 4, "PERCENT", "0.00%")
    result = run_operator(
        spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"], value_format="connect_json"
    )
    assert result.state == "success"
    assert result.summary["typed_fallbacks"] == 1, "'n/a' in the percent column: null in the payload"
    with FileSinkWorker(broker.bootstrap_servers, topic, tmp_path / "connect") as worker:
        lines = worker.wait_lines(2)
        log = worker.log()
    assert len(lines) == 2, log[-4000:]
    assert "ERROR" not in "\n".join(line for line in log.splitlines() if "WorkerSinkTask" in line), log[-4000:]
    # Struct.toString(): a Timestamp field is a java.util.Date, Date a Date at midnight UTC, Time a Date on 1970-01-01
    assert sorted(lines) == [
        "Struct{Timestamp=Thu Nov 05 09:05:03 UTC 2026,Name=Ann,Rating=4.0,Share=0.5,Subscribed=true,"
        "Day=Thu Nov 05 00:00:00 UTC 2026,At=Thu Jan 01 09:30:00 UTC 1970}",
        "Struct{Timestamp=Thu Nov 05 14:30:00 UTC 2026,Name=Bob,Rating=2.5,Subscribed=false,"
        "Day=Fri Nov 06 00:00:00 UTC 2026,At=Thu Jan 01 17:00:15 UTC 1970}",
    ]


@pytest.mark.parametrize("key_column", [None, "Name"], ids=["row-number", "key-column"])
def test_connect_json_keys_are_read_by_a_kafka_connect_worker(
    connections, sheets_server, broker, topic, tmp_path, key_column
):
    """key_format=connect_json: a worker reading keys with the JsonConverter too converts every record."""
    import shutil
    from datetime import datetime

    from airflow_provider_sheets.devkit.kafka_connect import FileSinkWorker
    from tests.conftest import require_or_skip

    require_or_skip(shutil.which("java") is not None and shutil.which("mvn") is not None, "Java and Maven")
    sid = f"connect-keys-{uuid.uuid4().hex[:8]}"
    rows = [[datetime(2026, 11, 5, 9, 5, 3), "Ann", 4], [datetime(2026, 11, 5, 9, 6, 0), "Bob", 5]]
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [["Timestamp", "Name", "Rating"], *rows]})
    result = run_operator(
        spreadsheet_id=sid,
        topic=topic,
        api_endpoint=connections["api_endpoint"],
        value_format="connect_json",
        key_format="connect_json",
        key_column=key_column,
    )
    assert result.state == "success"
    messages = consume_all(broker.bootstrap_servers, topic, expected=2)
    assert [json.loads(m.key) for m in messages] == (
        [{"schema": {"type": "int64", "optional": False}, "payload": row} for row in (2, 3)]
        if key_column is None
        else [{"schema": {"type": "string", "optional": False}, "payload": name} for name in ("Ann", "Bob")]
    )
    assert [m.row for m in messages] == [2, 3], "sheets.row still says the row"
    with FileSinkWorker(broker.bootstrap_servers, topic, tmp_path / "connect", json_keys=True) as worker:
        lines = worker.wait_lines(2)
        log = worker.log()
    assert len(lines) == 2, log[-4000:]


def test_values_are_typed_by_default(connections, sheets_server, broker, topic):
    """Without typed_values, a form's answers arrive typed (a number, a boolean, an ISO date-time)."""
    from datetime import datetime

    sid = f"default-typed-{uuid.uuid4().hex[:8]}"
    sheets_server.create_spreadsheet(
        sid, {FORMS_TAB: [["Timestamp", "Name", "Rating", "OK"], [datetime(2026, 11, 5, 9, 5, 3), "Ann", 4, True]]}
    )
    result = run_operator(spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"], typed_values=None)
    assert result.state == "success"
    (message,) = consume_all(broker.bootstrap_servers, topic, expected=1)
    assert message.value == {"Timestamp": "2026-11-05T09:05:03+00:00", "Name": "Ann", "Rating": 4, "OK": True}
