"""
The fleet's read budget in a real Redis (Debian's redis-server): the Lua window against the
reference :class:`SlidingWindow` (parity), and task processes that share one budget on a Sheets
server that enforces Google's quota, where processes that each pace themselves are refused.
"""

from __future__ import annotations

import multiprocessing
import uuid

import pytest

from airflow_provider_sheets.errors import SheetsQuotaError
from airflow_provider_sheets.hooks import quota
from airflow_provider_sheets.hooks.shared_quota import SharedWindow, safe_url
from airflow_provider_sheets.model.quota import SlidingWindow
from tests.unit.hooks.conftest import BUDGET, WINDOW
from tests.unit.hooks.test_quota import _reader, _tab

QUOTA_ENV = "AIRFLOW__SHEETS_TO_KAFKA__QUOTA_REDIS_URL"


@pytest.mark.parametrize(
    "arrivals",
    [
        [0.0, 0.1, 0.2, 0.3, 0.4, 1.99, 2.0, 2.05],
        [1.9, 1.95, 1.99, 2.0, 2.5, 3.9, 3.95, 4.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 10.0],
        [0.5 * i for i in range(12)],
    ],
    ids=["burst-then-window-edge", "across-a-minute", "same-instant", "steady"],
)
def test_the_redis_window_decides_as_the_reference_window(redis_server, arrivals):
    reference = SlidingWindow(BUDGET, WINDOW)
    shared = SharedWindow(redis_server.url(), f"parity-{uuid.uuid4().hex[:8]}")
    base = 1_000_000.0  # seconds: a time far from 0, as Redis's clock is
    for now in arrivals:
        expected = reference.delay(base + now)
        if expected == 0:
            reference.record(base + now)
        got = shared.take(BUDGET, WINDOW, base + now)
        assert got.wait == pytest.approx(expected, abs=2e-6), f"at {now}"
        assert got.used == reference.used(base + now)


def test_principals_have_windows_of_their_own(redis_server):
    first, second = (SharedWindow(redis_server.url(), f"p-{uuid.uuid4().hex[:8]}") for _ in range(2))
    assert first.take(1, WINDOW).wait == 0
    assert first.take(1, WINDOW).wait > 0
    assert second.take(1, WINDOW).wait == 0


def test_an_unreachable_redis_is_an_error_that_says_what_to_do(monkeypatch):
    from airflow_provider_sheets.devkit.broker_process import free_port

    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    pacer = quota.ReadPacer(BUDGET, WINDOW, SharedWindow(url, "p"))
    with pytest.raises(SheetsQuotaError) as caught:
        pacer.acquire()
    message = str(caught.value)
    assert "Redis at redis://:***@127.0.0.1" in message
    assert "s3cret" not in message
    assert "Nothing was read" in message
    assert "sheets_to_kafka.quota_redis_url" in message
    assert "the watermark was not moved" in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://redis:6379/1", "redis://redis:6379/1"),
        ("redis://:pw@redis:6379/1", "redis://:***@redis:6379/1"),
        ("rediss://user:pw@redis/0", "rediss://user:***@redis/0"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
        ("redis://redis:6379/1?password=pw&ssl_cert_reqs=none", "redis://redis:6379/1?password=***&ssl_cert_reqs=none"),
        ("redis://:pw@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
    ],
)
def test_a_redis_url_is_shown_without_its_password(url, shown):
    assert safe_url(url) == shown


def _task_process(server_url: str, conn_id: str, spreadsheet_id: str, requests: int, errors) -> None:
    """A task process of its own: a fresh pacer registry (as a new worker's process has), ``requests`` reads."""
    import types

    quota._pacers.clear()
    server = types.SimpleNamespace(url=server_url, conn_id=conn_id)
    reader = _reader(server, BUDGET)
    try:
        for _ in range(requests):
            reader.describe(spreadsheet_id)
    except SheetsQuotaError as err:
        errors.put(str(err))


def _run_processes(server, spreadsheet_id: str, count: int, requests: int) -> list[str]:
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    processes = [
        context.Process(target=_task_process, args=(server.url, server.conn_id, spreadsheet_id, requests, errors))
        for _ in range(count)
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
    found = []
    while not errors.empty():
        found.append(errors.get())
    return found


def test_task_processes_sharing_redis_keep_to_one_budget(quota_server, redis_server, monkeypatch, caplog):
    """Three processes of 2 x BUDGET reads each: one window in Redis, and the server refuses none of them."""
    spreadsheet_id = _tab(quota_server, 2)
    monkeypatch.setenv(QUOTA_ENV, redis_server.url())
    assert _run_processes(quota_server, spreadsheet_id, count=3, requests=2 * BUDGET) == []
    assert quota_server.quota_rejections == 0
    assert len(quota_server.read_times) == 3 * 2 * BUDGET, "every read served: none was over the budget"


def test_task_processes_pacing_themselves_exceed_the_budget_together(quota_server, monkeypatch):
    """The same processes without the shared window: each keeps to BUDGET, the three together do not."""
    spreadsheet_id = _tab(quota_server, 2)
    monkeypatch.delenv(QUOTA_ENV, raising=False)
    refused = _run_processes(quota_server, spreadsheet_id, count=3, requests=2 * BUDGET)
    assert quota_server.quota_rejections >= 1
    assert refused
    assert all("quota exhausted" in message for message in refused)


def test_a_request_that_waits_for_the_fleets_quota_says_so(redis_server, caplog):
    shared = SharedWindow(redis_server.url(), f"log-{uuid.uuid4().hex[:8]}")
    pacer = quota.ReadPacer(2, WINDOW, shared)
    waits = [pacer.acquire() for _ in range(3)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2] >= 1.0
    (line,) = [r.getMessage() for r in caplog.records if "fleet's Sheets read quota" in r.getMessage()]
    assert "2 requests of log-" in line
    assert "budget 2 (every worker" in line
