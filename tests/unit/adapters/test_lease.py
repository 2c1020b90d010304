"""WatermarkLease against an in-memory, last-writer-wins Variable store, on real threads and clocks
(the protocol itself is checked on random schedules in ``tests/unit/model/test_lease_protocol.py``).

The store stands in for Airflow Variables (no compare-and-set): it can hold every reader of the
lease until all claimants have read it (so all of them find it free, the race the settle must
resolve), and delay a claimant's first read or a write, as a slow worker or API server would.
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
HOLDER_KEY = f"{KEY}.lease.holder"
SETTLE = 0.3


class Store:
    """A last-writer-wins key-value store with the ``airflow.sdk.Variable`` calls the lease makes."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.lock = threading.Lock()
        #: (monotonic time, thread name, "get lease" | "set holder" | ..., the token read or written)
        self.log: list[tuple[float, str, str, str | None]] = []
        self.barrier: threading.Barrier | None = None
        #: seconds to hold a thread's first read of the claim (after the barrier): its write comes that much later
        self.read_delay: dict[str, float] = {}
        self._first_read_done: set[str] = set()
        #: seconds the next write of a key takes to return (once)
        self.write_delay: dict[str, float] = {}

    def _record(self, op: str, key: str, text: str | None) -> None:
        token = json.loads(text).get("token") if text else None
        self.log.append((time.monotonic(), threading.current_thread().name, f"{op} {key.rsplit('.', 1)[-1]}", token))

    def get(self, key: str, default=None):
        with self.lock:
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
        time.sleep(self.write_delay.pop(key, 0.0))

    def delete(self, key: str) -> None:
        with self.lock:
            self.values.pop(key, None)
            self._record("delete", key, None)

    def claim(self, owner: str, token: str = "other-token", expires_in: float = 600.0, key: str = LEASE_KEY, **more):
        expires = time.time() + expires_in
        record = {"owner": owner, "token": token, "expires_at": expires, "expires": "later", **more}
        self.values[key] = json.dumps(record)

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


def lease(owner: str = "dag/run/publish", **kw) -> WatermarkLease:
    return WatermarkLease(KEY, owner=owner, **{"settle": SETTLE, "wait": 10, "ttl": 60, **kw})


def _race(store: Store, claimants: int, work: float, read_delays: dict[str, float]):
    """``claimants`` runs that all read the claim free, then claim, work ``work`` s, confirm."""
    store.barrier = threading.Barrier(claimants)
    store.read_delay = read_delays
    outcomes: dict[str, object] = {}
    leases: dict[str, WatermarkLease] = {}

    def run(name: str) -> None:
        leases[name] = mine = lease(f"dag_{name}/run/publish", wait=0.3)
        try:
            mine.claim()
            time.sleep(work)  # describing the sheet, checking the topic: no effect on Kafka or the watermark
            mine.confirm()
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
@pytest.mark.parametrize("work", [0.0, 0.1, 0.4], ids=["no-work", "work-inside-settle", "work-longer-than-settle"])
def test_claimants_that_all_found_the_lease_free_let_exactly_one_go_on(store, claimants, work):
    """
    Every claimant read the claim free; their claims land 0.05 s apart (the last one latest), inside
    the 0.3 s settle. Exactly one goes on, the one whose claim landed last, no earlier than the settle
    after writing it; the others read its claim back, write nothing more, and fail naming it.
    """
    outcomes, leases = _race(store, claimants, work, {f"c{i}": 0.05 * i for i in range(claimants)})

    held = [name for name, outcome in outcomes.items() if outcome == "held"]
    assert held == [f"c{claimants - 1}"], outcomes
    winner = leases[held[0]]
    for name, outcome in outcomes.items():
        if name != held[0]:
            assert isinstance(outcome, WatermarkConflictError)
            assert winner.owner in str(outcome), "the error names the holder"
            assert store.times(name, "set holder") == [], "a run settled out writes no holder record"
    (claimed,) = store.times(held[0], "set lease")
    read_back = [t for t, who, op, token in store.log if who == held[0] and op == "get lease" and token == winner.token]
    assert read_back[0] - claimed >= SETTLE
    assert json.loads(store.values[HOLDER_KEY])["token"] == winner.token


def test_a_lone_claim_waits_the_settle_and_makes_seven_requests(store):
    mine = lease()
    started = time.monotonic()
    mine.acquire()
    assert mine.held
    assert SETTLE <= time.monotonic() - started < SETTLE + 0.1
    name = threading.current_thread().name
    assert [what for _, who, what, _ in store.log if who == name] == [
        "get lease",
        "set lease",
        "get holder",
        "get lease",
        "set holder",
        "get lease",
        "set holder",
    ]
    assert json.loads(store.values[HOLDER_KEY])["held"] is True
    mine.release()
    assert store.lease_variables() == {}, "the claim and the holder record are gone"


def test_work_longer_than_the_settle_leaves_only_the_read_backs(store):
    """The settle is a deadline: after work that outlasted it, confirm() only reads and writes."""
    mine = lease()
    assert mine.claim()
    time.sleep(SETTLE + 0.05)
    started = time.monotonic()
    mine.confirm()
    assert mine.held
    assert time.monotonic() - started < 0.05


@pytest.mark.parametrize("where", [LEASE_KEY, HOLDER_KEY], ids=["claim", "holder-record"])
def test_a_held_lease_makes_the_next_run_wait_then_fail_naming_the_holder(store, where):
    store.claim("other_dag/scheduled__1/publish", key=where)
    mine = lease("dag/manual__2/publish", wait=0.4)
    started = time.monotonic()
    with pytest.raises(WatermarkConflictError, match="leased by other_dag/scheduled__1/publish"):
        mine.acquire()
    assert time.monotonic() - started >= 0.4
    mine.release()
    assert json.loads(store.values[where])["owner"] == "other_dag/scheduled__1/publish", "left alone"


def test_the_lease_is_claimed_again_once_its_holder_releases_it(store):
    store.claim("other_dag/scheduled__1/publish")
    mine = lease("dag/manual__2/publish")
    assert not mine.claim(), "no claim is written over a live lease"
    threading.Timer(0.3, store.delete, args=(LEASE_KEY,)).start()
    mine.confirm()
    assert mine.held
    assert json.loads(store.values[LEASE_KEY])["token"] == mine.token


@pytest.mark.parametrize(
    ("owner", "expires_in"),
    [("dag/scheduled__1/publish", 600.0), ("other_dag/scheduled__1/publish", -1.0)],
    ids=["a-retry-of-the-same-task", "expired"],
)
def test_a_lease_nobody_renews_is_taken_over_at_once(store, owner, expires_in):
    """A killed try's claim and holder record (marked held), or an expired lease's."""
    store.claim(owner, token="the-killed-attempt", expires_in=expires_in)
    store.claim(owner, token="the-killed-attempt", expires_in=expires_in, key=HOLDER_KEY, held=True)
    mine = lease("dag/scheduled__1/publish")
    started = time.monotonic()
    mine.acquire()
    assert mine.held
    assert time.monotonic() - started < SETTLE + 0.1
    mine.release()
    assert store.lease_variables() == {}


def test_a_holder_record_a_try_of_the_same_task_left_behind_keeps_its_retry_out(store):
    """Not marked held: it may stand over the holder record of another run that holds the lease."""
    store.claim("dag/scheduled__1/publish", token="the-killed-attempt", key=HOLDER_KEY, held=False)
    mine = lease("dag/scheduled__1/publish", wait=0.4)
    with pytest.raises(WatermarkConflictError, match="leased by dag/scheduled__1/publish"):
        mine.acquire()
    assert json.loads(store.values[HOLDER_KEY])["token"] == "the-killed-attempt"


def test_a_retry_takes_over_a_lease_its_try_was_killed_taking(store, caplog):
    """The killed try's claim still stands over its holder record, not yet marked held: the retry inherits it."""
    store.claim("dag/scheduled__1/publish", token="the-killed-attempt")
    store.claim("dag/scheduled__1/publish", token="the-killed-attempt", key=HOLDER_KEY, held=False)
    mine = lease("dag/scheduled__1/publish", wait=0.4)
    started = time.monotonic()
    with caplog.at_level("INFO", logger=lease_module.__name__):
        mine.acquire()
    assert mine.held
    assert time.monotonic() - started < SETTLE + 0.1
    assert "over from a killed try of this task" in caplog.text
    assert json.loads(store.values[HOLDER_KEY])["token"] == mine.token


def test_a_claim_older_than_half_its_ttl_is_written_and_settled_again(store):
    """Work that ran past half the ttl must not confirm a claim others may soon see as expired."""
    mine = lease(ttl=1.0)
    assert mine.claim()
    time.sleep(0.55)
    mine.confirm()
    assert mine.held
    sets = store.times(threading.current_thread().name, "set lease")
    assert len(sets) == 2
    read_back = [t for t, _, op, token in store.log if op == "get lease" and token == mine.token and t > sets[1]]
    assert read_back[0] - sets[1] >= SETTLE


def test_release_withdraws_an_unconfirmed_claim_but_not_a_newer_one(store):
    mine = lease()
    assert mine.claim()
    mine.release()  # e.g. describing the sheet failed before the confirm
    assert store.lease_variables() == {}

    assert mine.claim()
    store.claim("dag/run2/publish", token="a-later-claim")  # another run's claim landed over this one
    mine.release()
    assert json.loads(store.values[LEASE_KEY])["token"] == "a-later-claim"


def test_a_holder_releases_at_once(store):
    mine = lease()
    mine.acquire()
    started = time.monotonic()
    mine.release()
    assert time.monotonic() - started < 0.05
    assert store.lease_variables() == {}


@pytest.mark.parametrize("slow", [False, True], ids=["quick", "slow"])
def test_a_claim_landed_over_after_the_holder_record_was_written(store, caplog, slow):
    """
    The run does not take the lease. A quick holder record is deleted again; a slow one may have
    landed over the holder record of a run that took the lease meanwhile, so it stays (and the log
    says so).
    """
    if slow:
        store.write_delay[HOLDER_KEY] = SETTLE  # more than 80 % of the settle
    real_set = store.set

    def landed_over(key, value, description=None):
        real_set(key, value, description)
        if key == HOLDER_KEY:
            store.claim("other_dag/run/publish", token="landed-over")

    store.set = landed_over  # type: ignore[method-assign]
    mine = lease(wait=0.5)
    with (
        caplog.at_level("WARNING", logger=lease_module.__name__),
        pytest.raises(WatermarkConflictError, match="leased by other_dag/run/publish"),
    ):
        mine.acquire()
    mine.release()
    if slow:
        assert json.loads(store.values[HOLDER_KEY])["token"] == mine.token
        assert "stays until it expires" in caplog.text
    else:
        assert HOLDER_KEY not in store.values
        assert caplog.text == ""


def test_renew_extends_the_lease_and_writes_over_a_claim_not_written_over_it(store):
    mine = lease()
    mine.acquire()
    before = json.loads(store.values[LEASE_KEY])["expires_at"]
    time.sleep(0.01)
    mine.renew()
    assert json.loads(store.values[LEASE_KEY])["expires_at"] > before
    # a claim written over something else than this run's claim, whose run does not take the lease
    store.claim("other_dag/run/publish", token="late", over=None)
    store.claim("other_dag/run/publish", token="did-not-take-it", key=HOLDER_KEY)
    mine.renew()
    assert json.loads(store.values[LEASE_KEY])["token"] == mine.token
    assert json.loads(store.values[HOLDER_KEY])["token"] == mine.token
    store.delete(LEASE_KEY)  # a withdrawal may delete the claim: the holder record keeps others out
    mine.renew()
    assert json.loads(store.values[LEASE_KEY])["token"] == mine.token


def test_release_deletes_a_claim_not_written_over_its_own(store):
    """Its run (gone, maybe) would otherwise leave it blocking the lease until it expires."""
    mine = lease()
    mine.acquire()
    store.claim("other_dag/run/publish", token="late", over=None)
    mine.release()
    assert store.lease_variables() == {}


def test_renew_raises_after_a_takeover(store):
    mine = lease()
    mine.acquire()
    store.claim("other_dag/run/publish", token="taker", over=mine.token)
    with pytest.raises(WatermarkConflictError, match="taken over by other_dag/run/publish"):
        mine.renew()
    assert not mine.held


def test_keep_makes_no_request_on_a_fresh_lease_and_renews_an_old_one(store):
    mine = lease(ttl=0.4, settle=0.01)
    mine.acquire()
    before = len(store.log)
    mine.keep()
    assert len(store.log) == before, "a claim dated under a quarter of ttl ago needs no renewal"
    expires = json.loads(store.values[LEASE_KEY])["expires_at"]
    time.sleep(0.11)
    mine.keep()
    assert json.loads(store.values[LEASE_KEY])["expires_at"] > expires
    time.sleep(0.11)
    store.claim("other_dag/run/publish", token="taker", over=mine.token)
    with pytest.raises(WatermarkConflictError, match="taken over by other_dag/run/publish"):
        mine.keep()
