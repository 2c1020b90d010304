"""WatermarkLease's claim/confirm split against an in-memory, last-writer-wins Variable store.

The store stands in for Airflow Variables (no compare-and-set): it can hold every reader of the
lease until all claimants have read it (so all of them find it free, the race the settle must
resolve) and delay one claimant's write, as a slow worker or API server would.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from airflow_provider_sheets.adapters import lease as lease_module
from airflow_provider_sheets.adapters.lease import WatermarkConflictError, WatermarkLease

KEY = "sheets_to_kafka.sheet.gid0.topic"
LEASE_KEY = f"{KEY}.lease"


class Store:
    """A last-writer-wins key-value store with the ``airflow.sdk.Variable`` calls the lease makes."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.lock = threading.Lock()
        #: (monotonic time, thread name, "get" | "set" | "delete", the token read or written)
        self.log: list[tuple[float, str, str, str | None]] = []
        self.barrier: threading.Barrier | None = None
        #: seconds to hold a thread's first read after the barrier (its write lands that much later)
        self.read_delay: dict[str, float] = {}
        self._first_read_done: set[str] = set()

    def _record(self, op: str, text: str | None) -> None:
        token = json.loads(text).get("token") if text else None
        self.log.append((time.monotonic(), threading.current_thread().name, op, token))

    def get(self, key: str, default=None):
        with self.lock:
            text = self.values.get(key, default)
            self._record("get", text)
        name = threading.current_thread().name
        if self.barrier is not None and name not in self._first_read_done:
            self._first_read_done.add(name)
            self.barrier.wait(timeout=10)
            time.sleep(self.read_delay.get(name, 0.0))
        return text

    def set(self, key: str, value: str, description: str | None = None) -> None:
        with self.lock:
            self.values[key] = value
            self._record("set", value)

    def delete(self, key: str) -> None:
        with self.lock:
            self.values.pop(key, None)
            self._record("delete", None)

    def claim(self, owner: str, token: str = "other-token", expires_in: float = 600.0) -> None:
        expires = time.time() + expires_in
        self.values[LEASE_KEY] = json.dumps({"owner": owner, "token": token, "expires_at": expires, "expires": "later"})

    def sets_by(self, name: str) -> list[float]:
        return [t for t, who, op, _ in self.log if who == name and op == "set"]


@pytest.fixture
def store(monkeypatch):
    import airflow.sdk

    fake = Store()
    monkeypatch.setattr(airflow.sdk, "Variable", fake, raising=False)
    return fake


def _race(store: Store, claimants: int, settle: float, work: float, write_delays: dict[str, float]):
    """``claimants`` runs that all read the lease free, then claim, work ``work`` s, confirm."""
    store.barrier = threading.Barrier(claimants)
    store.read_delay = write_delays
    outcomes: dict[str, object] = {}
    leases: dict[str, WatermarkLease] = {}

    def run(name: str) -> None:
        lease = WatermarkLease(KEY, owner=f"dag_{name}/run/publish", settle=settle, wait=0.3, ttl=60)
        leases[name] = lease
        try:
            lease.claim()
            time.sleep(work)  # describing the sheet, checking the topic: no effect on Kafka or the watermark
            lease.confirm()
            outcomes[name] = "held"
        except WatermarkConflictError as err:
            outcomes[name] = err

    threads = [threading.Thread(target=run, args=(f"c{i}",), name=f"c{i}") for i in range(claimants)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes, leases


@pytest.mark.parametrize("claimants", [2, 3])
@pytest.mark.parametrize("work", [0.0, 0.1, 0.45], ids=["no-work", "work-inside-settle", "work-longer-than-settle"])
def test_claimants_that_all_found_the_lease_free_let_exactly_one_go_on(store, claimants, work):
    """
    Every claimant read the lease free; their claims land 0.05 s apart (the last one latest), well
    within the 0.3 s settle. Exactly one goes on: the one whose claim landed last. A confirm that did
    not wait out the settle (or counted the work as part of it wrongly) would let the first go on
    too, as its claim would still read back before the later claims land.
    """
    settle = 0.3
    delays = {f"c{i}": 0.05 * i for i in range(claimants)}
    outcomes, leases = _race(store, claimants, settle, work, delays)

    held = [name for name, outcome in outcomes.items() if outcome == "held"]
    assert held == [f"c{claimants - 1}"], outcomes
    winner = leases[held[0]]
    for name, outcome in outcomes.items():
        if name != held[0]:
            assert isinstance(outcome, WatermarkConflictError)
            assert winner.owner in str(outcome), "the error names the holder"
    # the winner read its claim back no earlier than `settle` after writing it
    (written,) = store.sets_by(held[0])
    confirms = [t for t, who, op, token in store.log if who == held[0] and op == "get" and token == winner.token]
    assert confirms
    assert confirms[0] - written >= settle


def test_work_longer_than_the_settle_leaves_only_the_read_back(store):
    """The settle is a deadline: after work that outlasted it, confirm() only reads the claim back."""
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.3, wait=5, ttl=60)
    assert lease.claim()
    time.sleep(0.35)
    started = time.monotonic()
    lease.confirm()
    assert lease.held
    assert time.monotonic() - started < 0.1


def test_a_claim_confirmed_at_once_waits_for_the_whole_settle(store):
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.3, wait=5, ttl=60)
    started = time.monotonic()
    lease.acquire()
    assert lease.held
    assert time.monotonic() - started >= 0.3


def test_a_held_lease_makes_the_next_run_wait_then_fail_naming_the_holder(store):
    store.claim("other_dag/scheduled__1/publish")
    lease = WatermarkLease(KEY, owner="dag/manual__2/publish", settle=0.05, wait=0.4, ttl=60)
    assert not lease.claim(), "no claim is written over a live lease"
    started = time.monotonic()
    with pytest.raises(WatermarkConflictError, match="leased by other_dag/scheduled__1/publish"):
        lease.confirm()
    assert time.monotonic() - started >= 0.4
    assert json.loads(store.values[LEASE_KEY])["owner"] == "other_dag/scheduled__1/publish"
    lease.release()
    assert LEASE_KEY in store.values, "release() leaves another run's lease alone"


def test_the_lease_is_claimed_again_once_its_holder_releases_it(store):
    store.claim("other_dag/scheduled__1/publish")
    lease = WatermarkLease(KEY, owner="dag/manual__2/publish", settle=0.05, wait=10, ttl=60)
    assert not lease.claim()
    threading.Timer(0.3, store.delete, args=(LEASE_KEY,)).start()
    lease.confirm()
    assert lease.held
    assert json.loads(store.values[LEASE_KEY])["token"] == lease.token


def test_a_retry_of_the_same_task_takes_its_own_lease_over_at_once(store):
    store.claim("dag/scheduled__1/publish", token="the-killed-attempt")
    lease = WatermarkLease(KEY, owner="dag/scheduled__1/publish", settle=0.05, wait=10, ttl=60)
    started = time.monotonic()
    lease.acquire()
    assert lease.held
    assert time.monotonic() - started < 1.0


def test_an_expired_lease_is_taken_over(store):
    store.claim("other_dag/scheduled__1/publish", expires_in=-1)
    lease = WatermarkLease(KEY, owner="dag/manual__2/publish", settle=0.05, wait=10, ttl=60)
    lease.acquire()
    assert lease.held


def test_a_claim_older_than_half_its_ttl_is_written_and_settled_again(store):
    """Work that ran past half the ttl must not confirm a claim others may soon see as expired."""
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.1, wait=10, ttl=1.0)
    assert lease.claim()
    time.sleep(0.55)
    lease.confirm()
    assert lease.held
    sets = store.sets_by(threading.current_thread().name)
    assert len(sets) == 2
    confirms = [t for t, _, op, token in store.log if op == "get" and token == lease.token and t > sets[1]]
    assert confirms
    assert confirms[0] - sets[1] >= 0.1


def test_release_withdraws_an_unconfirmed_claim_but_not_a_newer_one(store):
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.3, wait=10, ttl=60)
    assert lease.claim()
    lease.release()  # e.g. describing the sheet failed before the confirm
    assert LEASE_KEY not in store.values

    assert lease.claim()
    store.claim("dag/run2/publish", token="a-later-claim")  # another run's claim landed over this one
    lease.release()
    assert json.loads(store.values[LEASE_KEY])["token"] == "a-later-claim"


def test_renew_after_a_takeover_raises(store):
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.01, wait=10, ttl=60)
    lease.acquire()
    store.claim("other_dag/run/publish")
    with pytest.raises(WatermarkConflictError, match="taken over by other_dag/run/publish"):
        lease.renew()
    assert not lease.held


def test_a_slow_claim_warns_that_the_settle_is_too_short(store, caplog):
    store.barrier = threading.Barrier(1)
    store.read_delay = {threading.current_thread().name: 0.2}
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.3, wait=10, ttl=60)
    with caplog.at_level("WARNING", logger=lease_module.__name__):
        lease.claim()
    assert "more than half of lease_settle" in caplog.text
