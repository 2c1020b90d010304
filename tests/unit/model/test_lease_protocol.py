"""The lease protocol, checked on thousands of random schedules of a discrete-event simulation.

Runs of :class:`LeaseProtocol` share a last-writer-wins store. Every read, write and delete
*lands* (takes effect) at a random time after it starts and *returns* at a random time after that;
about one in ten takes up to three settles, so claims and holder records are often late, by any
amount. The one bound kept is the protocol's: a delete lands less than a settle after the read
that decided it. Runs start together, work between claim and confirm, fail before the confirm (and
withdraw), hold the lease (renewing it) or die at any step. No two runs may ever hold the lease at
the same time; and each variant that drops one piece of the protocol must be caught, so this check
can fail.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest

from airflow_provider_sheets.model import lease as model
from airflow_provider_sheets.model.lease import Clock, Delete, Get, LeaseProtocol, Put, Sleep

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


@dataclass
class Run:
    name: str
    protocol: LeaseProtocol
    plan: Plan
    ops: int = 0
    requests: int = 0
    read_landed: float = 0.0
    entered: float | None = None
    held: list[tuple[float, float]] = field(default_factory=list)
    late_entries: int = 0
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

    def run(self, runs: list[Run], until: float = 300.0) -> None:
        for run in runs:
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
                return  # the worker died: nothing more from this run
            if isinstance(op, Sleep):
                if run.entered is None and not run.held:
                    run.slept_before_entry += op.seconds
                self.at(self.now + op.seconds, self.resume, run, gen, None)
                return
            self.request(run, gen, op)
            return

    def request(self, run: Run, gen, op) -> None:
        land = self.now + self.latency()
        done_after = self.latency()
        if self.scripted is not None:
            land_after, done_after = self.scripted.get((run.name, run.requests), (0.005, 0.0))
            land = self.now + land_after
        if isinstance(op, Get):
            done_after = min(done_after, 0.5 * SETTLE)  # so that the delete it decides can keep the bound
        elif isinstance(op, Delete):
            land = min(land, run.read_landed + 0.99 * SETTLE)  # the protocol's one bound
        assert land >= self.now, "the schedule keeps the protocol's bound on deletes"
        run.requests += 1
        self.at(land, self.land, run, gen, op, done_after)

    def land(self, run: Run, gen, op, done_after: float) -> None:
        value = None
        if isinstance(op, Get):
            value = self.store.get(op.key)
            run.read_landed = self.now
        elif isinstance(op, Put):
            self.store[op.key] = op.value
        else:
            self.store.pop(op.key, None)
        self.at(self.now + done_after, self.resume, run, gen, value)


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
    run.late_entries += p.late
    for pause in plan.hold:
        yield Sleep(pause)
        if not (yield from p.renew()):
            break
    run.held.append((run.entered, (yield Clock())[0]))
    run.entered = None
    yield from p.release()


def lease(protocol, name: str, owner: str | None = None, ttl: float = 100 * SETTLE) -> LeaseProtocol:
    return protocol(KEY, owner or f"dag_{name}/run/publish", f"token-{name}", ttl=ttl, settle=SETTLE, wait=8 * SETTLE)


def random_runs(rng: random.Random, protocol=LeaseProtocol) -> list[Run]:
    runs = []
    for i in range(rng.choice([2, 2, 3, 4])):
        plan = Plan(
            start=rng.uniform(0, 1.5 * SETTLE),
            work=rng.choice([0.0, rng.uniform(0, 1.5 * SETTLE)]),
            hold=[rng.uniform(0.02, 0.8 * SETTLE) for _ in range(rng.randint(1, 3))],
            fail_before_confirm=rng.random() < 0.15,
            die_after=rng.randint(1, 12) if rng.random() < 0.1 else None,
        )
        runs.append(Run(f"r{i}", lease(protocol, f"r{i}"), plan))
    return runs


def overlaps(runs: list[Run]) -> list[tuple[str, str, tuple, tuple]]:
    spans = sorted((start, end, run.name) for run in runs for start, end in run.held)
    found = []
    for (s1, e1, a), (s2, e2, b) in itertools.combinations(spans, 2):
        if s2 < e1 and s1 < e2:
            found.append((a, b, (s1, e1), (s2, e2)))
    return found


def simulate(seeds: range, protocol=LeaseProtocol):
    violations, entries, late = [], 0, 0
    for seed in seeds:
        rng = random.Random(seed)
        runs = random_runs(rng, protocol)
        Simulation(rng).run(runs)
        if found := overlaps(runs):
            violations.append((seed, found))
        entries += sum(len(run.held) for run in runs)
        late += sum(run.late_entries for run in runs)
    return violations, entries, late


def test_no_two_runs_ever_hold_the_lease_together():
    violations, entries, late = simulate(range(4000))
    assert violations == [], violations[:3]
    # the schedules exercise both settles, and most runs got the lease in the end
    assert entries > 4000
    assert 0.1 * entries < late < 0.9 * entries


def _alone(latency: float) -> Run:
    run = Run("alone", lease(LeaseProtocol, "alone"), Plan(0, 0, [], False, None))
    sim = Simulation(random.Random(1))
    sim.latency = lambda: latency  # type: ignore[method-assign]
    sim.run([run])
    return run


def test_a_lone_timely_run_waits_only_the_fast_settle():
    run = _alone(0.01)
    assert run.held
    assert run.late_entries == 0
    # read the claim, write it (0.02 s each), the fast settle, read it back, write the holder record
    assert run.held[0][0] == pytest.approx(0.04 + model.FAST_SHARE * SETTLE + 0.04)


def test_a_lone_late_run_waits_the_whole_settle_and_checks_the_holder_record():
    run = _alone(0.05)  # 0.2 s from reading the claim to its write returning: late
    assert run.held
    assert run.late_entries == 1
    # read, write, the settle, read the holder record and the claim back, write the holder record
    assert run.held[0][0] == pytest.approx(0.2 + SETTLE + 0.3)


def _scripted(protocol, plans: dict[str, Plan], slow: dict[tuple[str, int], tuple[float, float]]) -> list[Run]:
    runs = [Run(name, lease(protocol, name, plan.owner), plan) for name, plan in plans.items()]
    Simulation(random.Random(0), scripted=slow).run(runs)
    return runs


class TakingOverAtOnce(LeaseProtocol):
    """A record left by an earlier try of the same task is taken over as soon as it is found."""

    def _first_seen(self, record, returned):
        return -1e9


class WithdrawingAtOnce(LeaseProtocol):
    """A claim that did not go on is withdrawn at once."""

    def withdraw(self):
        yield from self._delete_if_mine(self.claim_key)


#: Schedules written out (settle 1 s; requests numbered from 0 per run).
SCHEDULES = {
    # L (a try that dies) reads the claim free; its write lands 0.5 s later, over the claim of i,
    # which went on after the fast settle and whose holder record lands 0.7 s after that; L dies.
    # j, the next try of L's task, finds L's claim (its task's own) before i's holder record has
    # landed: only the settle that the claim must stand first keeps j out while i holds the lease
    "a dead try's late claim": (
        {
            "L": Plan(0.0, 0.0, [], False, 2, owner="dag/run/publish"),
            "i": Plan(0.05, 0.0, [1.0, 1.0, 1.0], False, None),
            "j": Plan(0.55, 0.0, [0.5], False, None, owner="dag/run/publish"),
        },
        {("L", 1): (0.5, 5.0), ("i", 3): (0.7, 0.0)},
        TakingOverAtOnce,
    ),
    # D claims (timely) and fails at once; j read the claim free just before D's landed, and its own
    # claim (timely) lands just after D read its claim to withdraw it; D's delete lands 0.5 s later,
    # after j went on, and k, finding no claim, goes on beside j, unless D waits the fast settle
    # before it reads its claim (then it finds j's and leaves it)
    "a withdrawal inside another claim's flight": (
        {
            "D": Plan(0.0, 0.0, [], True, None),
            "j": Plan(0.004, 0.0, [1.0, 1.0], False, None),
            "k": Plan(0.6, 0.0, [1.0], False, None),
        },
        {("j", 1): (0.011, 0.0), ("D", 3): (0.5, 0.0)},
        WithdrawingAtOnce,
    ),
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_written_out_schedules(schedule):
    plans, slow, broken = SCHEDULES[schedule]
    runs = _scripted(LeaseProtocol, plans, slow)
    assert overlaps(runs) == [], [run.held for run in runs]
    assert sum(bool(run.held) for run in runs) >= 2, "the runs that could go on did, one after the other"
    runs = _scripted(broken, plans, slow)
    assert overlaps(runs), f"{broken.__name__}: the schedule did not put two runs in together"


class WithoutTimeCheck(LeaseProtocol):
    """Every claim counts as timely and waits only the fast settle."""

    def claim(self):
        written = yield from super().claim()
        self.late = False
        return written


class WithoutHolderCheck(LeaseProtocol):
    """A late claim is trusted without looking for a holder record."""

    def holder_in_the_way(self, holder, wall):
        return False


class WithoutHolderTimeCheck(LeaseProtocol):
    """A run goes on however late its holder record landed."""

    def _enter(self, sent, wall):
        yield Put(self.holder_key, self.record(wall))
        self._wrote_holder = True
        return True


@pytest.mark.parametrize("variant", [WithoutTimeCheck, WithoutHolderCheck, WithoutHolderTimeCheck])
def test_each_piece_of_the_protocol_is_needed(variant):
    violations, _, _ = simulate(range(4000), variant)
    assert violations, f"{variant.__name__}: no schedule put two runs in together"
