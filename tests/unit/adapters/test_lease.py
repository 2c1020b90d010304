"""WatermarkLease on an in-memory, last-writer-wins Variable store (the protocol itself is checked
on random schedules in ``tests/unit/model/test_lease_protocol.py``).

The store stands in for Airflow Variables (no compare-and-set): it can hold every reader of the
lease until all claimants have read it (so all of them find it free, the race the settle must
resolve), delay one claimant's write, as a slow worker or API server would, and have another run
pass the door while a claim is under way.
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
DOOR_KEY = f"{KEY}.lease.door"
HOLDER_KEY = f"{KEY}.lease.holder"


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

        #: another run passes the door whenever a claim reads it back
        self.door_passed_by_another = False

    def _record(self, op: str, key: str, text: str | None) -> None:
        token = json.loads(text).get("token") if text and key != DOOR_KEY else text
        self.log.append((time.monotonic(), threading.current_thread().name, f"{op} {key.rsplit('.', 1)[-1]}", token))

    def get(self, key: str, default=None):
        with self.lock:
            if key == DOOR_KEY and self.door_passed_by_another:
                self.values[key] = "another-run/1"
            text = self.values.get(key, default)
            self._record("get", key, text)
        name = threading.current_thread().name
        if key == LEASE_KEY and self.barrier is not None and name not in self._first_read_done:
            self._first_read_done.add(name)
            self.barrier.wait(timeout=10)
            time.sleep(self.read_delay.get(name, 0.0))
        return text

    def set(self, key: str, value: str, description: str | None = None) -> None:
        with self.lock:
            self.values[key] = value
            self._record("set", key, value)

    def delete(self, key: str) -> None:
        with self.lock:
            self.values.pop(key, None)
            self._record("delete", key, None)

    def claim(self, owner: str, token: str = "other-token", expires_in: float = 600.0, key: str = LEASE_KEY) -> None:
        expires = time.time() + expires_in
        self.values[key] = json.dumps({"owner": owner, "token": token, "expires_at": expires, "expires": "later"})

    def times(self, name: str, op: str) -> list[float]:
        """When thread ``name`` did ``op`` (e.g. ``"set lease"``)."""
        return [t for t, who, what, _ in self.log if who == name and what == op]

    def lease_variables(self) -> dict[str, str]:
        return {key: value for key, value in self.values.items() if key.startswith(LEASE_KEY)}


@pytest.fixture
def store(monkeypatch):
    import airflow.sdk

    fake = Store()
    monkeypatch.setattr(airflow.sdk, "Variable", fake, raising=False)
    return fake


def _race(store: Store, claimants: int, settle: float, work: float, write_delays: dict[str, float]):
    """``claimants`` runs that all read the claim free, then claim, work ``work`` s, confirm."""
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
    Every claimant read the claim free; their claims land 0.05 s apart (the last one latest), well
    within the 0.3 s settle. Exactly one goes on: the last to pass the door, without a settle, or
    (when its own claim was too slow for that) the one whose claim landed last, after it. The others
    fail naming it.
    """
    settle = 0.3
    delays = {f"c{i}": 0.05 * i for i in range(claimants)}
    outcomes, leases = _race(store, claimants, settle, work, delays)

    held = [name for name, outcome in outcomes.items() if outcome == "held"]
    assert len(held) == 1, outcomes
    winner = leases[held[0]]
    for name, outcome in outcomes.items():
        if name != held[0]:
            assert isinstance(outcome, WatermarkConflictError)
            assert winner.owner in str(outcome), "the error names the holder"
    (claimed,) = store.times(held[0], "set lease")
    if winner.fast:
        doors = sorted((store.times(name, "set door")[0], name) for name in outcomes)
        assert doors[-1][1] == held[0], "the fast path is the last door's"
        assert json.loads(store.values[HOLDER_KEY])["token"] == winner.token
    else:
        assert held == [f"c{claimants - 1}"], "the slow path is the last claim's"
        read_back = [t for t, who, op, token in store.log if who == held[0] and op == "get lease" and t > claimed]
        assert read_back
        assert read_back[0] - claimed >= settle


def test_a_lone_claim_goes_on_without_the_settle(store):
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.3, wait=5, ttl=60)
    started = time.monotonic()
    lease.acquire()
    assert lease.held
    assert lease.fast
    assert time.monotonic() - started < 0.1, "no settle"
    assert json.loads(store.values[HOLDER_KEY])["owner"] == "dag/run/publish"
    assert json.loads(store.values[LEASE_KEY])["token"] == lease.token
    lease.release()
    assert store.lease_variables() == {}, "the claim, the holder record and the door are gone"


def test_a_claim_another_run_passed_the_door_of_waits_out_the_settle(store):
    store.door_passed_by_another = True
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.3, wait=5, ttl=60)
    started = time.monotonic()
    lease.acquire()
    assert lease.held
    assert not lease.fast
    assert time.monotonic() - started >= 0.3
    assert HOLDER_KEY not in store.values
    (claimed,) = store.times(threading.current_thread().name, "set lease")
    read_back = [t for t, _, op, _ in store.log if op == "get lease" and t > claimed]
    assert read_back[0] - claimed >= 0.3


def test_work_longer_than_the_settle_leaves_only_the_read_back(store):
    """The settle is a deadline: after work that outlasted it, confirm() only reads the claim back."""
    store.door_passed_by_another = True
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.3, wait=5, ttl=60)
    assert lease.claim()
    time.sleep(0.35)
    started = time.monotonic()
    lease.confirm()
    assert lease.held
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize("where", [LEASE_KEY, HOLDER_KEY], ids=["claim", "holder-record"])
def test_a_held_lease_makes_the_next_run_wait_then_fail_naming_the_holder(store, where):
    store.claim("other_dag/scheduled__1/publish", key=where)
    lease = WatermarkLease(KEY, owner="dag/manual__2/publish", settle=0.05, wait=0.4, ttl=60)
    assert not lease.claim(), "no claim is written over a live lease"
    started = time.monotonic()
    with pytest.raises(WatermarkConflictError, match="leased by other_dag/scheduled__1/publish"):
        lease.confirm()
    assert time.monotonic() - started >= 0.4
    assert json.loads(store.values[where])["owner"] == "other_dag/scheduled__1/publish"
    lease.release()
    assert json.loads(store.values[where])["owner"] == "other_dag/scheduled__1/publish", "left alone"
    assert LEASE_KEY in store.values or where == HOLDER_KEY


def test_the_lease_is_claimed_again_once_its_holder_releases_it(store):
    store.claim("other_dag/scheduled__1/publish")
    lease = WatermarkLease(KEY, owner="dag/manual__2/publish", settle=0.05, wait=10, ttl=60)
    assert not lease.claim()
    threading.Timer(0.3, store.delete, args=(LEASE_KEY,)).start()
    lease.confirm()
    assert lease.held
    assert json.loads(store.values[LEASE_KEY])["token"] == lease.token


def test_a_retry_of_the_same_task_takes_its_own_lease_over_at_once(store):
    """Also the holder record the killed attempt left, which its release then removes."""
    store.claim("dag/scheduled__1/publish", token="the-killed-attempt")
    store.claim("dag/scheduled__1/publish", token="the-killed-attempt", key=HOLDER_KEY)
    store.door_passed_by_another = True  # the slow path: the killed attempt's holder record stays
    lease = WatermarkLease(KEY, owner="dag/scheduled__1/publish", settle=0.05, wait=10, ttl=60)
    started = time.monotonic()
    lease.acquire()
    assert lease.held
    assert time.monotonic() - started < 1.0
    lease.release()
    assert LEASE_KEY not in store.values
    assert HOLDER_KEY not in store.values


def test_an_expired_lease_is_taken_over(store):
    store.claim("other_dag/scheduled__1/publish", expires_in=-1)
    store.claim("other_dag/scheduled__1/publish", expires_in=-1, key=HOLDER_KEY)
    lease = WatermarkLease(KEY, owner="dag/manual__2/publish", settle=0.05, wait=10, ttl=60)
    lease.acquire()
    assert lease.held


@pytest.mark.parametrize("contended", [False, True], ids=["fast", "settled"])
def test_a_claim_older_than_half_its_ttl_is_written_again(store, contended):
    """Work that ran past half the ttl must not confirm a claim others may soon see as expired."""
    store.door_passed_by_another = contended
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.1, wait=10, ttl=1.0)
    assert lease.claim()
    time.sleep(0.55)
    lease.confirm()
    assert lease.held
    sets = store.times(threading.current_thread().name, "set lease")
    assert len(sets) == 2
    if contended:
        read_back = [t for t, _, op, token in store.log if op == "get lease" and token == lease.token and t > sets[1]]
        assert read_back
        assert read_back[0] - sets[1] >= 0.1


def test_release_withdraws_an_unconfirmed_claim_after_the_settle_but_not_a_newer_one(store):
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.3, wait=10, ttl=60)
    assert lease.claim()
    started = time.monotonic()
    lease.release()  # e.g. describing the sheet failed before the confirm
    assert time.monotonic() - started >= 0.25, "a withdrawal never lands inside another run's settle"
    assert store.lease_variables() == {}

    assert lease.claim()
    store.claim("dag/run2/publish", token="a-later-claim")  # another run's claim landed over this one
    lease.release()
    assert json.loads(store.values[LEASE_KEY])["token"] == "a-later-claim"


def test_a_holder_releases_at_once(store):
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.3, wait=10, ttl=60)
    lease.acquire()
    started = time.monotonic()
    lease.release()
    assert time.monotonic() - started < 0.1
    assert store.lease_variables() == {}


@pytest.mark.parametrize("contended", [False, True], ids=["fast", "settled"])
def test_renew_extends_the_lease_and_raises_after_a_takeover(store, contended):
    store.door_passed_by_another = contended
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.01, wait=10, ttl=60)
    lease.acquire()
    record = HOLDER_KEY if lease.fast else LEASE_KEY
    assert lease.fast is not contended
    before = json.loads(store.values[record])["expires_at"]
    time.sleep(0.01)
    lease.renew()
    assert json.loads(store.values[record])["expires_at"] > before
    store.claim("other_dag/run/publish", key=record)
    with pytest.raises(WatermarkConflictError, match="taken over by other_dag/run/publish"):
        lease.renew()
    assert not lease.held


def test_a_slow_claim_warns_that_the_settle_is_too_short(store, caplog):
    store.barrier = threading.Barrier(1)
    store.read_delay = {threading.current_thread().name: 0.32}
    lease = WatermarkLease(KEY, owner="dag/run/publish", settle=0.3, wait=10, ttl=60)
    with caplog.at_level("WARNING", logger=lease_module.__name__):
        lease.claim()
    assert "more than half of lease_settle" in caplog.text
    assert not lease.fast, "nor does it take the fast path: its holder record came too late"
