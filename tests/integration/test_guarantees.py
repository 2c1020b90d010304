"""Delivery guarantees under faults, drift detection, dead letters, bad inputs and secrets hygiene.

Every fault test ends by reading the whole topic back and checking that each sheet row is present
and duplicated only where the mode allows it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from tests.conftest import REPO
from tests.helpers import consume_all, get_variable, run_operator

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


def _sheet(server, rows, header=FORMS_HEADER, tab=FORMS_TAB, **kwargs) -> str:
    sid = f"sheet-{uuid.uuid4().hex[:12]}"
    server.create_spreadsheet(sid, {tab: ([header] if header is not None else []) + list(rows)}, **kwargs)
    return sid


def _run(capfd, **kwargs):
    """Run the operator; return the result and everything the run logged."""
    capfd.readouterr()
    result = run_operator(**kwargs)
    out, err = capfd.readouterr()
    return result, out + err


def _set_watermark(key: str, text: str) -> None:
    from airflow.models.variable import Variable

    Variable.set(key, text)


def _rows_of(messages) -> list[int]:
    return [m.row for m in messages]


# -- faults -----------------------------------------------------------------------------------


def test_broker_killed_mid_run_then_rerun_loses_nothing(connections, sheets_server, tmp_path, monkeypatch, capfd):
    from airflow_provider_sheets.devkit.broker import LocalBroker

    total = 3000
    sid = _sheet(sheets_server, forms_rows(total))
    own = LocalBroker(log_path=tmp_path / "tansu.log").start()
    try:
        own.create_topics(["responses"], partitions=3)
        monkeypatch.setenv(
            "AIRFLOW_CONN_KAFKA_DEFAULT",
            json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": own.bootstrap_servers}}),
        )
        kwargs = {
            "spreadsheet_id": sid,
            "topic": "responses",
            "api_endpoint": connections["api_endpoint"],
            "page_size": 100,
            "producer_config": {"socket.connection.setup.timeout.ms": 1000},
            "flush_timeout": 8,
        }
        sheets_server.latency = 0.05  # ~30 pages: the broker dies while pages are still being read
        killer = threading.Timer(0.8, own.stop, kwargs={"kill": True})
        capfd.readouterr()
        killer.start()
        failed = run_operator(**kwargs)
        killer.join()
        sheets_server.latency = 0
        assert failed.state == "failed"
        key = f"sheets_to_kafka.{sid}.gid0.responses"
        assert get_variable(key) is None, "the watermark must not move when delivery failed"
        log = "".join(capfd.readouterr())
        assert "KafkaPublishError" in log, log[-4000:]

        own.start()  # same port, empty memory storage
        own.create_topics(["responses"], partitions=3)
        ok = run_operator(**kwargs)
        assert ok.state == "success"
        got = consume_all(own.bootstrap_servers, "responses", expected=total, idle=2.0)
        assert _rows_of(got) == list(range(2, total + 2)), "every row exactly once, nothing late from the failed run"
        assert get_variable(key)["last_row"] == total + 1
    finally:
        sheets_server.latency = 0
        own.stop()


def test_records_count_as_acknowledged_only_once_the_broker_acknowledged_them(tmp_path, monkeypatch):
    """A frozen broker acknowledges nothing: settle() (a checkpoint's wait) claims nothing until it thaws."""
    from airflow_provider_sheets.devkit.broker import LocalBroker
    from airflow_provider_sheets.kafka import Publisher

    with LocalBroker(log_path=tmp_path / "tansu.log") as own:
        own.create_topics(["acks"], partitions=3)
        monkeypatch.setenv(
            "AIRFLOW_CONN_KAFKA_ACKS",
            json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": own.bootstrap_servers}}),
        )
        publisher = Publisher("acks", "kafka_acks", flush_timeout=30)
        try:
            publisher.check_topic()
            os.kill(own.process.pid, signal.SIGSTOP)
            try:
                for row in range(2, 52):
                    publisher.send(str(row).encode(), b"{}", [("sheets.row", str(row).encode())])
                assert publisher.settle(1.0) is False, "nothing can be acknowledged by a frozen broker"
                assert publisher.acked == 0
            finally:
                os.kill(own.process.pid, signal.SIGCONT)
            assert publisher.settle(30.0) is True
            assert publisher.acked == 50
        finally:
            publisher.close()
        assert _rows_of(consume_all(own.bootstrap_servers, "acks", expected=50)) == list(range(2, 52))


def test_sheets_429_and_503_bursts_are_retried(connections, sheets_server, broker, topic):
    sid = _sheet(sheets_server, forms_rows(5))
    sheets_server.fail_next(429, count=1, path_regex="batchGet")
    sheets_server.fail_next(503, count=1, path_regex=rf"/v4/spreadsheets/{sid}$")
    result = run_operator(spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"])
    assert result.state == "success"
    assert _rows_of(consume_all(broker.bootstrap_servers, topic, expected=5)) == list(range(2, 7))


def test_persistent_429_fails_clearly_and_keeps_the_watermark(connections, sheets_server, topic, capfd):
    sid = _sheet(sheets_server, forms_rows(5))
    sheets_server.fail_next(429, count=50, path_regex=sid)
    try:
        result, log = _run(capfd, spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"])
    finally:
        sheets_server.clear_faults()
    assert result.state == "failed"
    assert "Google Sheets quota exhausted" in log
    assert "the watermark was not moved" in log
    assert get_variable(f"sheets_to_kafka.{sid}.gid0.{topic}") is None


# -- drift ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s, sid: s.delete_rows(sid, FORMS_TAB, 3, 1), "rows above the watermark were inserted, deleted"),
        (lambda s, sid: s.set_cell(sid, FORMS_TAB, 6, 2, "Someone Else"), "holds different cells"),
        (lambda s, sid: s.insert_rows(sid, FORMS_TAB, 2, [["x", "y"]]), "rows above the watermark were inserted"),
        (lambda s, sid: s.set_cell(sid, FORMS_TAB, 1, 2, "Full name"), "removed or renamed 'Name'"),
        (lambda s, sid: s.set_cell(sid, FORMS_TAB, 1, 7, "New question"), "added 'New question'"),
    ],
    ids=["row-deleted", "row-edited", "row-inserted", "header-renamed", "question-added"],
)
def test_drift_above_the_watermark_is_detected(
    change, expected, connections, sheets_server, broker, topic, capfd
):
    sid = _sheet(sheets_server, forms_rows(5))
    kwargs = {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"]}
    assert run_operator(**kwargs).state == "success"
    change(sheets_server, sid)
    sheets_server.append_rows(sid, FORMS_TAB, forms_rows(2, start=5))
    result, log = _run(capfd, **kwargs)
    assert result.state == "failed"
    assert expected in log
    assert "on_drift='continue'" in log
    assert get_variable(f"sheets_to_kafka.{sid}.gid0.{topic}")["last_row"] == 6
    assert len(consume_all(broker.bootstrap_servers, topic)) == 5, "nothing published by the drifting run"


def test_drift_policies(connections, sheets_server, broker, topic):
    sid = _sheet(sheets_server, forms_rows(4))
    kwargs = {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"]}
    assert run_operator(**kwargs).state == "success"
    sheets_server.set_cell(sid, FORMS_TAB, 3, 2, "Edited")
    sheets_server.append_rows(sid, FORMS_TAB, forms_rows(1, start=4))
    cont = run_operator(**kwargs, on_drift="continue")
    assert (cont.state, cont.summary["first_row"], cont.summary["last_row"]) == ("success", 6, 6)
    sheets_server.set_cell(sid, FORMS_TAB, 6, 2, "Edited again")
    again = run_operator(**kwargs, on_drift="republish")
    assert (again.state, again.summary["mode"], again.summary["rows_published"]) == ("success", "full_refresh", 5)
    rows = _rows_of(consume_all(broker.bootstrap_servers, topic))
    assert rows == sorted([2, 3, 4, 5, 6, 2, 3, 4, 5, 6])


# -- dead letters -----------------------------------------------------------------------------


def test_rows_without_a_key_go_to_the_dead_letter_topic(connections, sheets_server, broker, topic):
    dlq = f"{topic}.dlq"
    broker.create_topics([dlq], partitions=1)
    header = ["Timestamp", "Email"]
    sid = _sheet(sheets_server, [["t1", "a@x"], ["t2"], ["t3", "c@x"]], header=header)
    result = run_operator(
        spreadsheet_id=sid,
        topic=topic,
        api_endpoint=connections["api_endpoint"],
        key_column="Email",
        dead_letter_topic=dlq,
    )
    assert result.state == "success"
    assert (result.summary["rows_published"], result.summary["rows_dead_lettered"]) == (2, 1)
    assert [m.key for m in consume_all(broker.bootstrap_servers, topic)] == ["a@x", "c@x"]
    (dead,) = consume_all(broker.bootstrap_servers, dlq)
    assert dead.row == 3
    assert dead.headers["sheets.error"] == "the key column 'Email' is empty"
    assert dead.value == {"row": 3, "cells": ["t2"], "error": "the key column 'Email' is empty"}
    assert result.summary["last_row"] == 4


def test_without_a_dead_letter_topic_an_unmappable_row_fails_the_run(connections, sheets_server, topic, capfd):
    sid = _sheet(sheets_server, [["t1", "a@x"], ["t2"]], header=["Timestamp", "Email"])
    kwargs = {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"], "key_column": "Email"}
    result, log = _run(capfd, **kwargs)
    assert result.state == "failed"
    assert "row 3 cannot be mapped (the key column 'Email' is empty)" in log
    assert get_variable(f"sheets_to_kafka.{sid}.gid0.{topic}") is None


# -- bad input catalogue ----------------------------------------------------------------------


def _bad_watermark_json(server, key_fn):
    sid = _sheet(server, forms_rows(2))
    _set_watermark(key_fn(sid), "{not json")
    return sid, {}


def _watermark_beyond(server, key_fn):
    sid = _sheet(server, forms_rows(2), row_count=10)
    _set_watermark(key_fn(sid), json.dumps({"last_row": 50}))
    return sid, {}


BAD_INPUTS = {
    "unknown-spreadsheet": (lambda s, k: ("does-not-exist", {}), "was not found (HTTP 404"),
    "not-shared": (
        lambda s, k: (s.fail_next(403, count=5, path_regex="forbidden") or "forbidden-sheet", {}),
        "permission denied on spreadsheet 'forbidden-sheet'",
    ),
    "tab-not-found": (
        lambda s, k: (_sheet(s, forms_rows(1)), {"sheet_name": "Responses"}),
        "tab 'Responses' not found in spreadsheet",
    ),
    "empty-sheet": (
        lambda s, k: (_sheet(s, [], header=None), {}),
        "the header row 1 of tab 'Form Responses 1' is empty",
    ),
    "blank-header-row": (
        lambda s, k: (_sheet(s, [["a", "b"]], header=["", ""]), {}),
        "the header row 1 of tab 'Form Responses 1' is empty",
    ),
    "unknown-key-column": (
        lambda s, k: (_sheet(s, forms_rows(1)), {"key_column": "email"}),
        "key_column 'email' is not a header of this tab",
    ),
    "watermark-invalid-json": (_bad_watermark_json, "does not hold valid JSON"),
    "watermark-beyond-sheet": (_watermark_beyond, "now has only 10 rows: rows were deleted"),
    "topic-missing": (lambda s, k: (_sheet(s, forms_rows(1)), {"topic": "no-such-topic"}), "does not exist or is not"),
    "bad-page-size": (lambda s, k: (_sheet(s, forms_rows(1)), {"page_size": 0}), "page_size must be at least 1"),
    "invalid-kafka-config": (
        lambda s, k: (_sheet(s, forms_rows(1)), {"producer_config": {"compression.type": "brotli"}}),
        "has an invalid producer setting",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_a_clear_error(case, connections, sheets_server, broker, topic, capfd):
    make, expected = BAD_INPUTS[case]
    sid, extra = make(sheets_server, lambda sid: f"sheets_to_kafka.{sid}.gid0.{topic}")
    kwargs = {"spreadsheet_id": sid, "topic": topic, "api_endpoint": connections["api_endpoint"], **extra}
    try:
        result, log = _run(capfd, **kwargs)
    finally:
        sheets_server.clear_faults()
    assert result.state == "failed"
    assert expected in log
    assert consume_all(broker.bootstrap_servers, topic, idle=0.5) == []


def test_unreachable_broker(connections, sheets_server, monkeypatch, capfd):
    from airflow_provider_sheets.devkit.broker import free_port

    monkeypatch.setenv(
        "AIRFLOW_CONN_KAFKA_DEFAULT",
        json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": f"127.0.0.1:{free_port()}"}}),
    )
    sid = _sheet(sheets_server, forms_rows(1))
    result, log = _run(capfd, spreadsheet_id=sid, topic="t", api_endpoint=connections["api_endpoint"])
    assert result.state == "failed"
    assert "cannot reach the Kafka brokers of connection 'kafka_default'" in log


def test_awkward_cells_arrive_intact(connections, sheets_server, broker, topic):
    big = "가" * 50_000
    rows = [["t1", big], ["t2", "emoji 😀🎉 and Zoë, ﬁ, 名前"], ["t3", "#REF!"], ["t4", "=not a formula"]]
    sid = _sheet(sheets_server, rows, header=["Timestamp", "Answer"])
    result = run_operator(spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"])
    assert result.state == "success"
    values = [m.value["Answer"] for m in consume_all(broker.bootstrap_servers, topic, expected=4)]
    assert values == [big, "emoji 😀🎉 and Zoë, ﬁ, 名前", "#REF!", "=not a formula"]


# -- secrets ----------------------------------------------------------------------------------


def _rendered_fields(run_id: str) -> str:
    """What the UI's rendered-template view shows for the run's task."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rendered
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(Rendered.rendered_fields).where(Rendered.run_id == run_id)).all()
    assert rows, "the run stored its rendered fields"
    return json.dumps([row[0] for row in rows])


def test_secrets_never_reach_logs_xcom_or_rendered_fields(sheets_server, broker, topic, monkeypatch, capfd):
    from tests.unit.test_sheets_server import _service_account

    info = _service_account(sheets_server)
    password = f"sasl-{uuid.uuid4().hex}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps({"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": info, "num_retries": 1}}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_KAFKA_DEFAULT",
        json.dumps(
            {
                "conn_type": "kafka",
                "extra": {
                    "bootstrap.servers": broker.bootstrap_servers,
                    "sasl.username": "u",
                    "sasl.password": password,
                },
            }
        ),
    )
    sid = _sheet(sheets_server, forms_rows(3))
    sheets_server.require_auth = True
    try:
        result, log = _run(capfd, spreadsheet_id=sid, topic=topic, api_endpoint=sheets_server.url)
        # a failing run must not leak them either
        failed, failed_log = _run(capfd, spreadsheet_id="missing-sheet", topic=topic, api_endpoint=sheets_server.url)
    finally:
        sheets_server.require_auth = False
    assert result.state == "success", log[-3000:]
    assert failed.state == "failed"
    assert sheets_server.request_count("token") >= 1, "the run must have used the service-account key"
    key_body = info["private_key"].split("-----")[2].strip().splitlines()[3]
    tokens = list(sheets_server._tokens)  # the access tokens the local server issued
    secrets = [password, key_body, *tokens]
    everything = log + failed_log + json.dumps(result.summary) + _rendered_fields(result.run_id)
    for secret in secrets:
        assert secret not in everything
    assert "robot@project.iam.gserviceaccount.com" in failed_log, "the error names the account to share with"


# -- a worker killed between publishing and the watermark write ------------------------------

_CHILD = """
import json, sys
from tests.helpers import run_operator
result = run_operator(**json.loads(sys.argv[1]))
print("CHILD-STATE", result.state)
"""


def test_sigkill_after_publishing_resends_only_the_unacknowledged_tail(connections, sheets_server, broker, topic):
    total = 4000
    sid = _sheet(sheets_server, forms_rows(total))
    key = f"sheets_to_kafka.{sid}.gid0.{topic}"
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": connections["api_endpoint"],
        "page_size": 100,
        "checkpoint_interval": 0.2,
        "lease_ttl": 3,
    }
    sheets_server.latency = 0.05
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(kwargs)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            mark = get_variable(key)
            if mark and mark["last_row"] >= 1000:
                break
            assert child.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        sheets_server.latency = 0
        if child.poll() is None:
            child.kill()
    checkpoint = get_variable(key)["last_row"]
    assert 1000 <= checkpoint < total + 1, "killed mid-run, after a checkpoint"
    before = set(_rows_of(consume_all(broker.bootstrap_servers, topic, expected=checkpoint - 1, idle=1.0)))
    missing = sorted(set(range(2, checkpoint + 1)) - before)
    assert not missing, f"the checkpoint at row {checkpoint} claimed rows that are not in Kafka: {missing[:10]}"
    time.sleep(3.5)  # the killed run's lease expires (an Airflow retry of the same task takes it over at once)

    rerun = run_operator(**kwargs)
    assert rerun.state == "success"
    assert rerun.summary["first_row"] == checkpoint + 1
    rows = _rows_of(consume_all(broker.bootstrap_servers, topic, expected=total, idle=2.0))
    assert sorted(set(rows)) == list(range(2, total + 2)), "no row lost"
    twice = {r for r in rows if rows.count(r) > 1} if len(rows) != len(set(rows)) else set()
    assert all(r > checkpoint for r in twice), "only rows after the last checkpoint may be sent again"
    assert get_variable(key)["last_row"] == total + 1


@pytest.mark.parametrize("keys_are_rows", [True, False])
def test_a_page_sent_at_once_waits_for_room_and_loses_nothing(tmp_path, monkeypatch, keys_are_rows):
    """send_rows() with a queue of 5 records on a frozen broker: it waits for room, in order."""
    from airflow_provider_sheets.devkit.broker import LocalBroker
    from airflow_provider_sheets.kafka import Publisher

    with LocalBroker(log_path=tmp_path / "tansu.log") as own:
        own.create_topics(["page"], partitions=1)
        monkeypatch.setenv(
            "AIRFLOW_CONN_KAFKA_PAGE",
            json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": own.bootstrap_servers}}),
        )
        tiny_queue = {"queue.buffering.max.messages": 5}
        publisher = Publisher("page", "kafka_page", flush_timeout=30, producer_config=tiny_queue)
        rows = [(row, (str(row) if keys_are_rows else f"k{row}").encode(), b'{"n":%d}' % row) for row in range(2, 52)]
        try:
            publisher.check_topic()
            os.kill(own.process.pid, signal.SIGSTOP)
            thaw = threading.Timer(1.0, os.kill, (own.process.pid, signal.SIGCONT))
            thaw.start()
            try:
                publisher.send_rows(rows, [("sheets.sheet_id", b"0")], keys_are_rows)
            finally:
                thaw.join()
            assert publisher.produced == 50
            assert publisher.finish() == 50
        finally:
            publisher.close()
        messages = consume_all(own.bootstrap_servers, "page", expected=50)
    assert [(m.row, m.key) for m in messages] == [(row, key.decode()) for row, key, _ in rows]
    assert {m.headers["sheets.sheet_id"] for m in messages} == {"0"}
