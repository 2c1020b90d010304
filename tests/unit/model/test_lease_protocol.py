"""The lease protocol, checked on thousands of random schedules of a discrete-event simulation.

Runs of :class:`LeaseProtocol` share a last-writer-wins store. Every read, write and delete
*lands* (takes effect) at a random time after it starts and *returns* at a random time after that;
about one in ten takes up to three settles, so any of them may be late by any amount: no bound is
kept. Runs start together, work between claim and confirm, fail before the confirm (and withdraw),
hold the lease (renewing it) or die at any step. No two runs may ever hold the lease at the same
time; and each variant that drops one piece of the protocol must be caught, so this check can fail.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest

from airflow_provider_sheets.model.lease import Clock, Get, LeaseProtocol, Put, Sleep

SETTLE = 1.0
KEY = "sheets_to_kafka.sheet.gid0.topic"


@dataclass
class Plan:
    start: float
    work: float
    hold: list[float]
    fail_before_confirm: bool
    die_after: int | None
    owner: str | None = None
    #: the next try of the same task, started this long after this one died (two tries never run at once)
    retry: Plan | None = None
    retry_after: float = 0.0


@dataclass
class Run:
    name: str
    protocol: LeaseProtocol
    plan: Plan
    ops: int = 0
    requests: int = 0
    entered: float | None = None
    held: list[tuple[float, float]] = field(default_factory=list)
    slept_before_entry: float = 0.0


class Simulation:
    """A shared store and a clock; each run is a generator of the protocol's operations."""

    def __init__(self, rng: random.Random, scripted: dict[tuple[str, int], tuple[float, float]] | None = None) -> None:
        self.rng = rng
        #: a schedule written out: (run, its n-th request) -> seconds until it lands, and until it
        #: returns after that (the others land in 0.005 s and return at once)
        self.scripted = scripted
        self.now = 0.0
        self.store: dict[str, str] = {}
        self._queue: list = []
        self._seq = itertools.count()

    def at(self, when: float, action, *args) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), action, args))

    def latency(self) -> float:
        if self.rng.random() < 0.1:
            return self.rng.uniform(0, 3 * SETTLE)  # a stalled API server, a GC pause
        return self.rng.uniform(0, 0.03 * SETTLE)

    def run(self, runs: list[Run], until: float = 300.0, protocol=LeaseProtocol) -> None:
        self.runs, self.protocol = runs, protocol
        for run in list(runs):
            self.at(run.plan.start, self.resume, run, script(run), None)
        while self._queue:
            when, _, action, args = heapq.heappop(self._queue)
            if when > until:
                break
            self.now = when
            action(*args)

    def resume(self, run: Run, gen, value) -> None:
        while True:
            try:
                op = gen.send(value)
            except StopIteration:
                return
            if isinstance(op, Clock):
                value = (self.now, self.now)
                continue
            run.ops += 1
            if run.plan.die_after is not None and run.ops > run.plan.die_after:
                if run.entered is not None:
                    run.held.append((run.entered, self.now))
                    run.entered = None
                self.retry(run)
                return  # the worker died: nothing more from this run
            if isinstance(op, Sleep):
                if run.entered is None and not run.held:
                    run.slept_before_entry += op.seconds
                self.at(self.now + op.seconds, self.resume, run, gen, None)
                return
            self.request(run, gen, op)
            return

    def retry(self, dead: Run) -> None:
        """Start the next try of a dead run's task, if its plan has one (its requests in flight still land)."""
        if dead.plan.retry is None:
            return
        name = f"{dead.name}'"
        retry = Run(name, lease(self.protocol, name, dead.protocol.owner), dead.plan.retry)
        self.runs.append(retry)
        self.at(self.now + dead.plan.retry_after, self.resume, retry, script(retry), None)

    def request(self, run: Run, gen, op) -> None:
        land, done_after = self.now + self.latency(), self.latency()
        if self.scripted is not None:
            land_after, done_after = self.scripted.get((run.name, run.requests), (0.005, 0.0))
            land = self.now + land_after
        run.requests += 1
        self.at(land, self.land, (run, gen), op, done_after)

    def land(self, target, op, done_after: float) -> None:
        value = None
        if isinstance(op, Get):
            value = self.store.get(op.key)
        elif isinstance(op, Put):
            self.store[op.key] = op.value
        else:
            self.store.pop(op.key, None)
        self.at(self.now + done_after, self.resume, *target, value)


def script(run: Run):
    """A batch run: claim, work (no effect), confirm, hold (renewing) or fail, release."""
    p, plan = run.protocol, run.plan
    yield from p.claim()
    if plan.work:
        yield Sleep(plan.work)
    if plan.fail_before_confirm:  # describing the sheet or checking the topic failed
        yield from p.release()
        return
    if not (yield from p.confirm()):
        yield from p.release()
        return
    run.entered = (yield Clock())[0]
    for pause in plan.hold:
        yield Sleep(pause)
        if not (yield from p.renew()):
            break
    run.held.append((run.entered, (yield Clock())[0]))
    run.entered = None
    yield from p.release()


def lease(protocol, name: str, owner: str | None = None, settle: float = SETTLE) -> LeaseProtocol:
    owner = owner or f"dag_{name}/run/publish"
    return protocol(KEY, owner, f"token-{name}", ttl=100 * SETTLE, settle=settle, wait=8 * SETTLE)


def random_plan(rng: random.Random, tries: int = 2) -> Plan:
    """A run's plan; one that dies is retried (up to ``tries`` in all) half the time."""
    die_after = rng.randint(1, 12) if rng.random() < 0.1 else None
    retry = random_plan(rng, tries - 1) if die_after is not None and tries > 1 and rng.random() < 0.5 else None
    return Plan(
        start=rng.uniform(0, 1.5 * SETTLE),
        work=rng.choice([0.0, rng.uniform(0, 1.5 * SETTLE)]),
        hold=[rng.uniform(0.02, 0.8 * SETTLE) for _ in range(rng.randint(1, 3))],
        fail_before_confirm=rng.random() < 0.15,
        die_after=die_after,
        retry=retry,
        retry_after=rng.uniform(0, 3 * SETTLE),
    )


def random_runs(rng: random.Random, protocol=LeaseProtocol, settle: float = SETTLE) -> list[Run]:
    runs = []
    for i in range(rng.choice([2, 2, 3, 4])):
        runs.append(Run(f"r{i}", lease(protocol, f"r{i}", settle=settle), random_plan(rng)))
    return runs


def overlaps(runs: list[Run]) -> list[tuple[str, str, tuple, tuple]]:
    spans = sorted((start, end, run.name) for run in runs for start, end in run.held)
    found = []
    for (s1, e1, a), (s2, e2, b) in itertools.combinations(spans, 2):
        if s2 < e1 and s1 < e2:
            found.append((a, b, (s1, e1), (s2, e2)))
    return found


def simulate(seeds: range, protocol=LeaseProtocol, settle: float = SETTLE):
    violations, entries, left = [], 0, 0
    for seed in seeds:
        rng = random.Random(seed)
        runs = random_runs(rng, protocol, settle)
        Simulation(rng).run(runs, protocol=protocol)
        if found := overlaps(runs):
            violations.append((seed, found))
        entries += sum(len(run.held) for run in runs)
        left += sum(run.protocol.left_behind for run in runs)
    return violations, entries, left


def test_no_two_runs_ever_hold_the_lease_together():
    violations, entries, left = simulate(range(4000))
    assert violations == [], violations[:3]
    # most runs got the lease in the end; some left a holder record behind (a late one)
    assert entries > 4000
    assert left > 0


def test_the_settle_is_not_what_keeps_runs_apart():
    violations, entries, _ = simulate(range(4000), settle=0.0)
    assert violations == [], violations[:3]
    assert entries > 4000


def test_a_lone_run_waits_the_settle_and_makes_seven_requests():
    run = Run("alone", lease(LeaseProtocol, "alone"), Plan(0, 0, [], False, None))
    sim = Simulation(random.Random(1))
    sim.latency = lambda: 0.01  # type: ignore[method-assign]
    sim.run([run])
    assert run.held
    # read the claim, write it (0.02 s each), the settle, read the holder record and the claim,
    # write the holder record, read the claim again, mark the holder record held
    assert run.held[0][0] == pytest.approx(0.04 + SETTLE + 0.1)
    assert run.requests == 7 + 4  # and the release: read and delete the holder record, then the claim


def _scripted(protocol, plans: dict[str, Plan], slow: dict[tuple[str, int], tuple[float, float]]) -> list[Run]:
    runs = [Run(name, lease(protocol, name, plan.owner), plan) for name, plan in plans.items()]
    Simulation(random.Random(0), scripted=slow).run(runs, protocol=protocol)
    return runs


class EnteringWithoutReadingBack(LeaseProtocol):
    """A run takes the lease as soon as its holder record is written."""

    def _enter(self, sent, wall):
        yield Put(self.holder_key, self.record(wall))
        return True


class DeletingItsHolderRecord(LeaseProtocol):
    """A run that does not take the lease deletes the holder record it wrote, however late it came."""

    def _enter(self, sent, wall):
        if (yield from super()._enter(sent, wall)):
            return True
        yield from self._delete_if_mine(self.holder_key)
        return False


class TrustingItsOwnHolderRecord(LeaseProtocol):
    """A holder record of this run or its task is never in the way, held or not."""

    def holder_in_the_way(self, holder, wall):
        return super().holder_in_the_way(holder, wall) and not (self.mine(holder) or holder.get("owner") == self.owner)


class TrustingItsTasksRecords(LeaseProtocol):
    """Any holder record of a dead try of its task is free for a run, whether it inherited it or not."""

    def holder_in_the_way(self, holder, wall):
        if holder is not None and holder.get("owner") == self.owner and not self.mine(holder):
            return False
        return super().holder_in_the_way(holder, wall)


class NotInheriting(LeaseProtocol):
    """A retry never inherits a dead try's holder record that is not marked held."""

    def _inherits(self, record):
        return False


class WithoutHolderCheck(LeaseProtocol):
    """The holder record is never found in the way."""

    def holder_in_the_way(self, holder, wall):
        return False


#: Schedules written out (settle 1 s; requests numbered from 0 per run: read the claim, write it,
#: read the holder record, read the claim, write the holder record, read the claim).
SCHEDULES = {
    # X's claim lands first and reads back at 1.02; A's (read free before) lands over it at 1.105,
    # and A, finding no holder record at 2.11, writes its own and takes the lease at 2.125. X's
    # holder record, 1.48 s on its way, lands over A's at 2.5; X reads A's claim and leaves its
    # record, which keeps B (whose claim lands at 2.305) out at 3.31. Deleting it, X would let B in
    # beside A; taking the lease without the second read-back, X would hold beside A
    "a holder record landing late over another's": (
        {
            "X": Plan(0.0, 0.0, [1.0], False, None),
            "A": Plan(0.0, 0.0, [3.0], False, None),
            "B": Plan(0.0, 0.0, [1.0], False, None),
        },
        {("A", 1): (1.1, 0.0), ("X", 4): (1.48, 0.0), ("B", 1): (2.3, 0.0)},
        (EnteringWithoutReadingBack, DeletingItsHolderRecord),
    ),
    # B's holder record, 2.48 s on its way, lands at 3.5 over that of A (which took the lease at
    # 2.125 on a claim landed over B's); W's late claim landed over A's at 3.005 and W withdrew it,
    # so the claim is gone. B leaves its record and claims again at 5.51: finding its own holder
    # record in the way keeps it out while A holds
    "a run's own holder record left behind": (
        {
            "A": Plan(0.0, 0.0, [10.0], False, None),
            "B": Plan(0.0, 0.0, [1.0], False, None),
            "W": Plan(0.0, 0.0, [], True, None),
        },
        {("B", 4): (2.48, 0.0), ("A", 1): (1.1, 0.0), ("W", 1): (3.0, 0.0)},
        (TrustingItsOwnHolderRecord,),
    ),
    # the same, but B dies once its late holder record is written, and its retry B' claims at 5.5:
    # the claim is gone, not B's, so B' does not inherit B's record, which keeps it out while A holds
    "a dead try's holder record left behind": (
        {
            "A": Plan(0.0, 0.0, [10.0], False, None),
            "B": Plan(0.0, 0.0, [1.0], False, 7, retry=Plan(0.0, 0.0, [1.0], False, None), retry_after=2.0),
            "W": Plan(0.0, 0.0, [], True, None),
        },
        {("B", 4): (2.48, 0.0), ("A", 1): (1.1, 0.0), ("W", 1): (3.0, 0.0)},
        (TrustingItsTasksRecords,),
    ),
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_written_out_schedules(schedule):
    plans, slow, broken = SCHEDULES[schedule]
    runs = _scripted(LeaseProtocol, plans, slow)
    assert overlaps(runs) == [], [run.held for run in runs]
    assert sum(bool(run.held) for run in runs) >= 1
    for variant in broken:
        runs = _scripted(variant, plans, slow)
        assert overlaps(runs), f"{variant.__name__}: the schedule did not put two runs in together"


class ReleasingOnlyItsOwnClaim(LeaseProtocol):
    """A holder's release leaves a claim that landed over its own."""

    def _not_over_me(self, claim, sent):
        return claim is None and super()._not_over_me(claim, sent)


@pytest.mark.parametrize("variant", [LeaseProtocol, ReleasingOnlyItsOwnClaim])
def test_a_claim_left_by_a_dead_run_over_the_holders_does_not_block_the_lease(variant):
    """
    B's claim lands over H's after H's last renewal, and B dies; H's release deletes it with its own
    records, so C gets the lease after one settle instead of waiting until B's claim expires.
    """
    plans = {
        "H": Plan(0.0, 0.0, [0.5], False, None),
        "B": Plan(0.0, 0.0, [], False, 2),
        "C": Plan(4.0, 0.0, [0.5], False, None),
    }
    runs = _scripted(variant, plans, {("B", 1): (3.0, 0.0), ("H", 8): (0.005, 1.5)})
    assert overlaps(runs) == []
    if variant is LeaseProtocol:
        assert runs[2].held, "C got the lease"
        assert runs[2].slept_before_entry == pytest.approx(SETTLE)
    else:
        assert not runs[2].held, "C waited for B's claim to expire"


@pytest.mark.parametrize("variant", [LeaseProtocol, NotInheriting])
def test_a_retry_takes_over_the_holder_record_its_killed_try_left_unmarked(variant):
    """
    A is killed between writing its holder record and marking it held; its task's retry A' comes a
    second later: it inherits A's record and takes the lease after one settle, instead of waiting for
    the record to expire (100 settles) and giving up after 8.
    """
    plans = {"A": Plan(0.0, 0.0, [1.0], False, 6, retry=Plan(0.0, 0.0, [1.0], False, None), retry_after=1.0)}
    runs = _scripted(variant, plans, {})
    assert not runs[0].held
    retry = runs[1]
    if variant is LeaseProtocol:
        assert retry.held, "the retry took the lease"
        assert retry.slept_before_entry == pytest.approx(SETTLE)
        assert retry.protocol.inherited == runs[0].protocol.token
    else:
        assert not retry.held, "the retry waited for the record to expire and gave up"


@pytest.mark.parametrize("variant", [WithoutHolderCheck, EnteringWithoutReadingBack])
def test_each_piece_of_the_protocol_is_needed(variant):
    violations, _, _ = simulate(range(4000), variant)
    assert violations, f"{variant.__name__}: no schedule put two runs in together"


def _drive(steps, store: dict[str, str], now: list[float], requests: list[str]):
    """Answer a protocol's operations on ``store`` at the time ``now[0]``, recording each request."""
    answer = None
    try:
        while True:
            op = steps.send(answer)
            answer = None
            if isinstance(op, Clock):
                answer = (now[0], now[0])
            elif isinstance(op, Sleep):
                now[0] += op.seconds
            elif isinstance(op, Get):
                requests.append(f"get {op.key}")
                answer = store.get(op.key)
            elif isinstance(op, Put):
                requests.append(f"put {op.key}")
                store[op.key] = op.value
            else:
                requests.append(f"delete {op.key}")
                store.pop(op.key, None)
    except StopIteration as done:
        return done.value


@pytest.mark.parametrize(
    ("after", "taken_over", "held", "requests"),
    [
        pytest.param(0.0, False, True, 0, id="just-taken: no request"),
        pytest.param(24.8, False, True, 0, id="under-a-quarter-of-ttl (the settle included)"),
        pytest.param(25.0, False, True, 3, id="a-quarter-of-ttl: renewed"),
        pytest.param(60.0, True, False, 1, id="old-and-taken-over: lost"),
        pytest.param(10.0, True, True, 0, id="recent: a takeover is not possible yet"),
    ],
)
def test_keep_renews_only_a_claim_old_enough_to_be_taken_over(after, taken_over, held, requests):
    """ttl 100 s: another run can find the claim expired only after 100 s; keep() renews from 25 s on."""
    store: dict[str, str] = {}
    now, log = [0.0], []
    mine = LeaseProtocol(KEY, "dag/run/publish", "token-mine", ttl=100.0, settle=0.1, wait=10.0)
    assert _drive(mine.confirm(), store, now, log)
    now[0] += after
    if taken_over:
        taker = LeaseProtocol(KEY, "other/run/publish", "token-taker", ttl=100.0, settle=0.1, wait=10.0)
        store[mine.claim_key] = taker.record(now[0], over="token-mine")
    log.clear()
    assert _drive(mine.keep(), store, now, log) is held
    assert len(log) == requests, log
    if requests == 3:
        assert log == [f"get {mine.claim_key}", f"put {mine.claim_key}", f"put {mine.holder_key}"]
