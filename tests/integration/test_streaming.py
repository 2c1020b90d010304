"""The streaming runner end to end: ``sheets-to-kafka stream`` as a subprocess, real broker, local Sheets server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, as_submitted, forms_rows
from tests.conftest import REPO
from tests.helpers import consume_all, latest_per_key

pytestmark = pytest.mark.integration

POLL = 0.5


class Runner:
    """One ``sheets-to-kafka stream`` process, its output in a file."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "airflow_provider_sheets.cli", "stream", *args],
                cwd=REPO,
                env=os.environ.copy(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_streaming(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "Streaming " not in self.log:
            if self.process.poll() is not None:
                raise AssertionError(f"runner exited with {self.process.returncode}:\n{self.log[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"runner did not start within {timeout} s:\n{self.log[-3000:]}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)


class Watcher:
    """A consumer assigned to every partition of a topic that notes when each sheet row first arrives."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"watch-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 20,
            }
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self.first_seen: dict[int, float] = {}

    def until_rows(self, rows: range, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(r in self.first_seen for r in rows):
            if time.monotonic() > deadline:
                missing = [r for r in rows if r not in self.first_seen]
                raise AssertionError(f"rows {missing[:10]}… not in Kafka after {timeout} s")
            msg = self.consumer.poll(0.02)
            if msg is not None and not msg.error():
                row = int(dict(msg.headers())["sheets.row"])
                self.first_seen.setdefault(row, time.monotonic())

    def close(self) -> None:
        self.consumer.close()


def _new_sheet(server, count: int, **kwargs) -> str:
    spreadsheet_id = f"stream-{uuid.uuid4().hex[:10]}"
    server.create_spreadsheet(
        spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *[as_submitted(r) for r in forms_rows(count)]]}, **kwargs
    )
    return spreadsheet_id


def _append(server, spreadsheet_id: str, count: int, start: int) -> range:
    first, last = server.append_rows(
        spreadsheet_id, FORMS_TAB, [as_submitted(r) for r in forms_rows(count, start=start)]
    )
    return range(first, last + 1)


def _runner_args(spreadsheet_id, topic, broker, server, *extra: str) -> list[str]:
    """The stream's options; values formatted (the expected records' cells as shown) unless --typed-values is given."""
    if "--typed-values" not in extra:
        extra = ("--no-typed-values", *extra)
    return [
        "--spreadsheet-id", spreadsheet_id, "--topic", topic, "--bootstrap-servers", broker.bootstrap_servers,
        "--api-endpoint", server.url, "--poll-interval", str(POLL), "--status-interval", "2",
        "--sheets-quota-per-minute", "0", *extra,  # a poll every 0.5 s: more than Google's 60 a minute
    ]  # fmt: skip


def _positions(bootstrap: str, topic: str) -> list[tuple[str, dict]]:
    """Every record of the position topic, in order, as (key, JSON value)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"pos-{uuid.uuid4().hex[:8]}"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        out, quiet = [], time.monotonic()
        while time.monotonic() - quiet < 1.5:
            msg = consumer.poll(0.1)
            if msg is not None and not msg.error():
                out.append((msg.key().decode(), json.loads(msg.value())))
                quiet = time.monotonic()
        return out
    finally:
        consumer.close()


def _rows(messages) -> Counter:
    return Counter(m.row for m in messages)


def test_stream_latency_backoff_sigterm_flush_and_restart(tmp_path, broker, sheets_server, topic):
    from confluent_kafka.admin import AdminClient, ConfigResource

    sid = _new_sheet(sheets_server, 5)
    args = _runner_args(sid, topic, broker, sheets_server, "--num-retries", "0")
    runner = Runner(tmp_path / "runner1.log", *args)
    watcher = Watcher(broker.bootstrap_servers, topic)
    try:
        runner.wait_streaming()
        watcher.until_rows(range(2, 7))

        # the position topic was created compacted
        resource = ConfigResource("topic", f"{topic}.position")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        configs = admin.describe_configs([resource])[resource].result(timeout=10)
        assert configs["cleanup.policy"].value == "compact"

        # appended rows reach Kafka within two poll intervals (plus a little slack for the consumer)
        next_row = 5
        for _ in range(4):
            time.sleep(0.37)
            appended_at = time.monotonic()
            rows = _append(sheets_server, sid, 2, next_row)
            next_row += 2
            watcher.until_rows(rows, timeout=10)
            latency = max(watcher.first_seen[r] for r in rows) - appended_at
            assert latency <= 2 * POLL + 0.5, f"rows {list(rows)} took {latency:.2f} s"

        # quota errors are retried with backoff, nothing is lost
        sheets_server.fail_next(429, count=3, path_regex=sid)
        rows = _append(sheets_server, sid, 3, next_row)
        next_row += 3
        watcher.until_rows(rows, timeout=20)
        assert "SheetsQuotaError" in runner.log
        assert "backing off" in runner.log

        # rows appended right before SIGTERM are published before the runner exits 0
        rows = _append(sheets_server, sid, 25, next_row)
        next_row += 25
        assert runner.stop() == 0, runner.log[-3000:]
        assert "Stopped:" in runner.log
        counts = _rows(consume_all(broker.bootstrap_servers, topic))
        assert sorted(counts) == list(range(2, rows[-1] + 1))
        assert set(counts.values()) == {1}, "a clean stop must not duplicate"

        # a restart continues after the saved position: nothing lost, nothing duplicated
        last_saved = _positions(broker.bootstrap_servers, f"{topic}.position")[-1]
        assert last_saved[0] == f"{sid}:0"
        assert last_saved[1]["last_row"] == rows[-1]
        runner = Runner(tmp_path / "runner2.log", *args)
        runner.wait_streaming()
        assert f"from row {rows[-1] + 1} " in runner.log
        rows = _append(sheets_server, sid, 4, next_row)
        watcher.until_rows(rows)
        assert runner.stop() == 0, runner.log[-3000:]
        messages = consume_all(broker.bootstrap_servers, topic)
        counts = _rows(messages)
        assert sorted(counts) == list(range(2, rows[-1] + 1))
        assert set(counts.values()) == {1}
        headers = messages[-1].headers
        assert headers["sheets.spreadsheet_id"] == sid
        assert headers["sheets.sheet_name"] == FORMS_TAB
        assert headers["sheets.sheet_id"] == "0"
        assert headers["sheets.row"] == str(rows[-1])
        assert headers["stream.runner"].endswith(f"/{runner.process.pid}")
        assert messages[-1].key == str(rows[-1])
    finally:
        watcher.close()
        if runner.process.poll() is None:
            runner.process.kill()


def test_sigkill_loses_nothing_and_duplicates_only_after_the_saved_position(tmp_path, broker, sheets_server, topic):
    total, page = 3000, 50
    sid = _new_sheet(sheets_server, total, row_count=total + 1)
    args = _runner_args(sid, topic, broker, sheets_server, "--page-size", str(page))
    runner = Runner(tmp_path / "killed.log", *args)
    watcher = Watcher(broker.bootstrap_servers, topic)
    try:
        runner.wait_streaming()
        deadline = time.monotonic() + 30
        while len(watcher.first_seen) < 400 and time.monotonic() < deadline:
            msg = watcher.consumer.poll(0.01)
            if msg is not None and not msg.error():
                watcher.first_seen.setdefault(int(dict(msg.headers())["sheets.row"]), 0.0)
        runner.stop(signal.SIGKILL)
    finally:
        watcher.close()
    saved = [value["last_row"] for key, value in _positions(broker.bootstrap_servers, f"{topic}.position")]
    position = saved[-1] if saved else 1
    assert position < total + 1, "the runner should have been killed before the end of the tab"

    runner = Runner(tmp_path / "restarted.log", *args)
    try:
        runner.wait_streaming()
        assert f"from row {position + 1} " in runner.log
        messages = consume_all(broker.bootstrap_servers, topic, expected=total, timeout=40)
        assert runner.stop() == 0, runner.log[-3000:]
    finally:
        if runner.process.poll() is None:
            runner.process.kill()
    counts = _rows(messages)
    assert sorted(counts) == list(range(2, total + 2)), "a row is missing after SIGKILL + restart"
    duplicated = sorted(row for row, n in counts.items() if n > 1)
    assert all(position < row <= position + page for row in duplicated), (
        f"duplicates {duplicated[:5]}… are not limited to the batch after the saved position {position}"
    )


def test_rows_changed_above_the_position_stop_the_runner_until_told_to_continue(tmp_path, broker, sheets_server, topic):
    sid = _new_sheet(sheets_server, 20)
    args = _runner_args(sid, topic, broker, sheets_server)
    runner = Runner(tmp_path / "first.log", *args)
    try:
        runner.wait_streaming()
        assert len(consume_all(broker.bootstrap_servers, topic, expected=20)) == 20
        assert runner.stop() == 0, runner.log[-3000:]
    finally:
        if runner.process.poll() is None:
            runner.process.kill()
    assert _positions(broker.bootstrap_servers, f"{topic}.position")[-1][1]["last_row"] == 21

    sheets_server.delete_rows(sid, FORMS_TAB, 5, 1)  # row 21, the last one published, now holds another response
    appended = _append(sheets_server, sid, 3, start=20)
    assert list(appended) == [21, 22, 23]
    stopped = Runner(tmp_path / "drift.log", *args)
    try:
        assert stopped.process.wait(60) == 2, stopped.log[-3000:]
    finally:
        if stopped.process.poll() is None:
            stopped.process.kill()
    errors = [line for line in stopped.log.splitlines() if line.startswith("sheets-to-kafka: error:")]
    assert len(errors) == 1, stopped.log[-3000:]
    assert (
        "1 row was deleted above the position of tab 'Form Responses 1': the last row already published, row 21, is "
        "now row 20"
    ) in errors[0]
    assert "--on-drift continue" in errors[0]
    assert len(consume_all(broker.bootstrap_servers, topic)) == 20, "nothing published after the drift"

    resumed = Runner(tmp_path / "continue.log", *args, "--on-drift", "continue")
    try:
        resumed.wait_streaming()
        messages = consume_all(broker.bootstrap_servers, topic, expected=23)
        assert resumed.stop() == 0, resumed.log[-3000:]
    finally:
        if resumed.process.poll() is None:
            resumed.process.kill()
    # continue reads on after row 20, where the last published row is now: the response that moved into
    # row 21 is not skipped, and rows 22 and 23 go once each
    assert sorted(_rows(messages).elements()) == sorted([*range(2, 22), 21, 22, 23])
    assert "on_drift='continue'" in resumed.log


def test_an_edited_last_row_is_published_again_while_streaming(tmp_path, broker, sheets_server, topic):
    """A respondent edits the last response while the runner streams: the edit goes again, same key, no halt."""
    sid = _new_sheet(sheets_server, 5)
    runner = Runner(tmp_path / "edit.log", *_runner_args(sid, topic, broker, sheets_server))
    try:
        runner.wait_streaming()
        assert len(consume_all(broker.bootstrap_servers, topic, expected=5)) == 5
        sheets_server.set_cell(sid, FORMS_TAB, 6, 2, "Edited Name")
        messages = consume_all(broker.bootstrap_servers, topic, expected=6)
        _append(sheets_server, sid, 1, start=5)
        messages = consume_all(broker.bootstrap_servers, topic, expected=7)
        assert runner.process.poll() is None, runner.log[-3000:]
        assert runner.stop() == 0, runner.log[-3000:]
    finally:
        if runner.process.poll() is None:
            runner.process.kill()
    assert sorted(_rows(messages).elements()) == [2, 3, 4, 5, 6, 6, 7]
    last_six = max((m for m in messages if m.row == 6), key=lambda m: m.offset)
    assert last_six.value["Name"] == "Edited Name"
    assert "was edited since: publishing it again (same key)" in runner.log


def test_a_reconcile_start_makes_the_topic_match_the_tab(tmp_path, broker, sheets_server, topic):
    """Rows deleted and edited while the runner was stopped; ``--reconcile`` on the next start sets the topic right."""
    prints = f"{topic}.fingerprints"
    broker.create_topics([prints], config={"cleanup.policy": "compact"})
    sid = _new_sheet(sheets_server, 10)  # rows 2..11
    args = _runner_args(sid, topic, broker, sheets_server, "--fingerprint-topic", prints)
    first = Runner(tmp_path / "first.log", *args)
    try:
        first.wait_streaming()
        assert len(consume_all(broker.bootstrap_servers, topic, expected=10)) == 10
        assert first.stop() == 0, first.log[-3000:]
    finally:
        if first.process.poll() is None:
            first.process.kill()

    sheets_server.delete_rows(sid, FORMS_TAB, 3, 2)  # rows 2..9 remain
    sheets_server.set_cell(sid, FORMS_TAB, 2, 2, "Edited Name")
    reconciled = Runner(tmp_path / "reconcile.log", *args, "--reconcile")
    try:
        reconciled.wait_streaming()
        deadline = time.monotonic() + 30
        while "Reconcile done" not in reconciled.log and time.monotonic() < deadline:
            time.sleep(0.2)
        messages = consume_all(broker.bootstrap_servers, topic)
        assert reconciled.stop() == 0, reconciled.log[-3000:]
    finally:
        if reconciled.process.poll() is None:
            reconciled.process.kill()
    assert "Reconcile done: 0 rows were already right, 2 tombstones sent" in reconciled.log
    latest = latest_per_key(messages)
    rows = sheets_server.get_rows(sid, FORMS_TAB)
    assert sorted(latest, key=int) == [str(row) for row in range(2, len(rows) + 1)]
    assert [latest[str(r)]["Name"] for r in range(2, len(rows) + 1)] == [cells[1] for cells in rows[1:]]
    assert sorted(m.key for m in messages if m.value is None) == ["10", "11"]
    # the first start's 10 inserts; then row 2 edited and rows 3..9 holding the responses that moved up
    assert Counter(m.headers["sheets.change"] for m in messages) == {"insert": 10, "update": 8, "delete": 2}


def test_the_stream_runner_types_values_and_event_times_as_the_operator(tmp_path, broker, sheets_server, keeping_topic):
    """--typed-values --value-format cloudevents: the operator's encoders (one implementation)."""
    from datetime import datetime, timezone

    topic = keeping_topic

    sid = _new_sheet(sheets_server, 0)
    sheets_server.append_rows(sid, FORMS_TAB, [[datetime(2026, 11, 5, 9, 5, 3), "Ann", "ann@x", "Friend", 4]])
    args = _runner_args(sid, topic, broker, sheets_server, "--typed-values", "--value-format", "cloudevents")
    runner = Runner(tmp_path / "typed.log", *args)
    try:
        runner.wait_streaming()
        (message,) = consume_all(broker.bootstrap_servers, topic, expected=1)
        assert runner.stop() == 0, runner.log[-3000:]
    finally:
        if runner.process.poll() is None:
            runner.process.kill()
    assert message.value[FORMS_HEADER[0]] == "2026-11-05T09:05:03+00:00"
    assert message.value[FORMS_HEADER[4]] == 4
    assert message.timestamp == int(datetime(2026, 11, 5, 9, 5, 3, tzinfo=timezone.utc).timestamp() * 1000)
    assert (message.headers["ce_id"], message.headers["ce_time"]) == (f"{sid}/0/2", "2026-11-05T09:05:03.000Z")


def test_the_stream_runner_writes_avro_through_the_schema_registry(
    tmp_path, broker, sheets_server, topic, schema_registry
):
    """--value-format avro --schema-registry: the operator's schema and serializer, read back with AvroDeserializer."""
    from datetime import datetime, timezone

    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    sid = _new_sheet(sheets_server, 0)
    sheets_server.append_rows(sid, FORMS_TAB, [[datetime(2026, 11, 5, 9, 5, 3), "Ann", "ann@x", "Friend", 4]])
    args = _runner_args(
        sid, topic, broker, sheets_server, "--value-format", "avro", "--schema-registry", schema_registry.url
    )
    runner = Runner(tmp_path / "avro.log", *args)
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": schema_registry.url}))

    def decode(value: bytes):
        return deserializer(value, SerializationContext(topic, MessageField.VALUE))

    try:
        runner.wait_streaming()
        (message,) = consume_all(broker.bootstrap_servers, topic, expected=1, decode=decode)
        assert runner.stop() == 0, runner.log[-3000:]
    finally:
        if runner.process.poll() is None:
            runner.process.kill()
    assert message.value["Timestamp"] == datetime(2026, 11, 5, 9, 5, 3, tzinfo=timezone.utc)
    assert message.value["Rating"] == 4.0
    assert message.value["Name"] == "Ann"


def test_on_drift_republish_publishes_the_tab_again_as_it_is_now(tmp_path, broker, sheets_server, topic):
    """A row deleted above the position: with --on-drift republish every row goes again, from the header on."""
    sid = _new_sheet(sheets_server, 10)
    args = _runner_args(sid, topic, broker, sheets_server, "--on-drift", "republish")
    runner = Runner(tmp_path / "first.log", *args)
    try:
        runner.wait_streaming()
        assert len(consume_all(broker.bootstrap_servers, topic, expected=10)) == 10
        assert runner.stop() == 0, runner.log[-3000:]
    finally:
        if runner.process.poll() is None:
            runner.process.kill()

    sheets_server.delete_rows(sid, FORMS_TAB, 5, 1)  # rows move up: row 11, the last one published, is empty …
    assert list(_append(sheets_server, sid, 2, start=10)) == [11, 12]  # … until another response lands there
    republished = Runner(tmp_path / "republish.log", *args)
    try:
        republished.wait_streaming()
        messages = consume_all(broker.bootstrap_servers, topic, expected=10 + 11)
        assert republished.stop() == 0, republished.log[-3000:]
    finally:
        if republished.process.poll() is None:
            republished.process.kill()
    assert len(messages) == 21, "the first 10, then every row of the tab as it is now, once"
    assert sorted(_rows(messages).elements()) == sorted([*range(2, 12), *range(2, 13)])
    latest = {}
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        latest[message.key] = message.value  # one key, one partition: the higher offset is the later record
    rows = sheets_server.get_rows(sid, FORMS_TAB)
    header, data = rows[0], rows[1:]
    assert latest == {
        str(row): {name: cells[i] if i < len(cells) else None for i, name in enumerate(header)}
        for row, cells in enumerate(data, start=2)
    }, "a consumer keeping the latest value per key holds the tab as it is now"
    assert (
        "1 row was deleted above the position of tab 'Form Responses 1': the last row already published, row 11, is "
        "now row 10"
    ) in republished.log
    assert "on_drift='republish'" in republished.log
    assert _positions(broker.bootstrap_servers, f"{topic}.position")[-1][1]["last_row"] == 12


def test_an_idle_poll_of_a_forms_grid_is_one_request_and_inserted_rows_all_arrive(
    tmp_path, broker, sheets_server, topic
):
    """A Forms responses tab's grid is its data, grown by one row per response: an idle poll describes, no more."""
    sid = _new_sheet(sheets_server, 3, row_count=4)
    runner = Runner(tmp_path / "forms.log", *_runner_args(sid, topic, broker, sheets_server))
    try:
        runner.wait_streaming()
        assert len(consume_all(broker.bootstrap_servers, topic, expected=3)) == 3
        time.sleep(1.0)
        start = len(sheets_server.requests)
        time.sleep(3.0)  # about six polls, every row published
        idle = [r.kind for r in sheets_server.requests[start:] if r.kind != "other"]
        appended = _append(sheets_server, sid, 2, start=3)
        messages = consume_all(broker.bootstrap_servers, topic, expected=5)
        assert runner.stop() == 0, runner.log[-3000:]
    finally:
        if runner.process.poll() is None:
            runner.process.kill()
    assert idle, "the runner went on polling"
    assert set(idle) == {"spreadsheets.get"}, idle
    assert len(idle) <= 3.0 / POLL + 2
    assert list(appended) == [5, 6]
    assert sorted(_rows(messages)) == list(range(2, 7))


def test_missing_settings_and_missing_tab_exit_2(tmp_path, broker, sheets_server, topic, capsys):
    from airflow_provider_sheets.cli import main

    assert main(["stream", "--topic", "t", "--bootstrap-servers", broker.bootstrap_servers]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--spreadsheet-id" in err
    assert "/d/" in err
    assert main(["stream", "--spreadsheet-id", "x", "--topic", "t"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--bootstrap-servers" in err

    sid = _new_sheet(sheets_server, 1)
    runner = Runner(tmp_path / "missing.log", *_runner_args(sid, topic, broker, sheets_server), "--sheet-name", "Nope")
    try:
        assert runner.process.wait(60) == 2
    finally:
        if runner.process.poll() is None:
            runner.process.kill()
    errors = [line for line in runner.log.splitlines() if line.startswith("sheets-to-kafka: error:")]
    assert len(errors) == 1, runner.log[-2000:]
    assert "'Nope' not found" in errors[0]
    assert repr(FORMS_TAB) in errors[0]


def test_backoff_grows_with_jitter_up_to_the_cap():
    from airflow_provider_sheets.streaming import Backoff

    low, high = Backoff(2.0, cap=60.0, rng=lambda: 0.0), Backoff(2.0, cap=60.0, rng=lambda: 0.999999)
    lows = [low.next_delay() for _ in range(8)]
    highs = [high.next_delay() for _ in range(8)]
    assert lows == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert [round(h, 3) for h in highs] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    low.reset()
    assert low.next_delay() == 1.0


def test_kafka_config_files(tmp_path):
    from airflow_provider_sheets.cli import UsageError, read_kafka_config

    props = tmp_path / "client.properties"
    props.write_text("# comment\nbootstrap.servers = b1:9092,b2:9092\n! other\nsecurity.protocol=SASL_SSL\n\n")
    assert read_kafka_config(str(props)) == {"bootstrap.servers": "b1:9092,b2:9092", "security.protocol": "SASL_SSL"}
    as_json = tmp_path / "client.json"
    as_json.write_text('{"bootstrap.servers": "b:9092", "linger.ms": 5}')
    assert read_kafka_config(str(as_json)) == {"bootstrap.servers": "b:9092", "linger.ms": 5}
    bad = tmp_path / "bad.properties"
    bad.write_text("bootstrap.servers\n")
    with pytest.raises(UsageError, match="line 1"):
        read_kafka_config(str(bad))
    with pytest.raises(UsageError, match="does not exist"):
        read_kafka_config(str(tmp_path / "missing.properties"))
