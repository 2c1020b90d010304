"""The lease protocol, checked on thousands of random schedules of a discrete-event simulation.

Runs of :class:`LeaseProtocol` share a last-writer-wins store. Every read, write and delete
*lands* (takes effect) at a random time after it starts and *returns* at a random time after that;
some take several settles. The only bound kept is the timed guard's assumption: a run's write or
delete of the claim lands less than ``settle`` after its read of the claim started. Runs start
together, work between claim and confirm, fail before the confirm (and withdraw), hold the lease
(renewing it) or die at any step. No two runs may ever hold the lease at the same time; and the
variants that drop one piece of the protocol (the holder record, the fast path's own time check,
the door, the withdrawal's wait) must each be caught, so this check can fail.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest

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


@dataclass
class Run:
    name: str
    protocol: LeaseProtocol
    plan: Plan
    ops: int = 0
    requests: int = 0
    claim_read_started: float = 0.0
    entered: float | None = None
    held: list[tuple[float, float]] = field(default_factory=list)
    fast_entries: int = 0
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
        roll = self.rng.random()
        if roll < 0.1:
            return self.rng.uniform(0, 3 * SETTLE)  # a stalled API server, a GC pause
        return self.rng.uniform(0, 0.15 * SETTLE)

    def run(self, runs: list[Run], until: float = 200.0) -> None:
        for run in runs:
            gen = script(run)
            self.at(run.plan.start, self.resume, run, gen, None)
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
        claim_key = run.protocol.claim_key
        land = self.now + self.latency()
        done_after = self.latency()
        if self.scripted is not None:
            land_after, done_after = self.scripted.get((run.name, run.requests), (0.005, 0.0))
            land = self.now + land_after
        elif isinstance(op, Get) and op.key == claim_key:
            run.claim_read_started = self.now
            land = min(land, self.now + 0.4 * SETTLE)  # the write that may follow still lands in time
            done_after = min(done_after, 0.05 * SETTLE)
        elif isinstance(op, (Put, Delete)) and op.key == claim_key:
            land = min(land, run.claim_read_started + 0.99 * SETTLE)  # the timed guard's assumption
        assert land >= self.now, "the schedule keeps the timed guard's assumption"
        run.requests += 1
        self.at(land, self.land, run, gen, op, done_after)

    def land(self, run: Run, gen, op, done_after: float) -> None:
        value = None
        if isinstance(op, Get):
            value = self.store.get(op.key)
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
    run.fast_entries += p.fast
    for pause in plan.hold:
        yield Sleep(pause)
        if not (yield from p.renew()):
            break
    run.held.append((run.entered, (yield Clock())[0]))
    run.entered = None
    yield from p.release()


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
        owner = f"dag_{i}/run/publish"
        lease = protocol(KEY, owner=owner, token=f"token-{i}", ttl=100 * SETTLE, settle=SETTLE, wait=6 * SETTLE)
        runs.append(Run(f"r{i}", lease, plan))
    return runs


def overlaps(runs: list[Run]) -> list[tuple[str, str, tuple, tuple]]:
    spans = sorted((start, end, run.name) for run in runs for start, end in run.held)
    found = []
    for (s1, e1, a), (s2, e2, b) in itertools.combinations(spans, 2):
        if s2 < e1 and s1 < e2:
            found.append((a, b, (s1, e1), (s2, e2)))
    return found


def simulate(seeds: range, protocol=LeaseProtocol):
    violations, entries, fast = [], 0, 0
    for seed in seeds:
        rng = random.Random(seed)
        runs = random_runs(rng, protocol)
        Simulation(rng).run(runs)
        if found := overlaps(runs):
            violations.append((seed, found))
        entries += sum(len(run.held) for run in runs)
        fast += sum(run.fast_entries for run in runs)
    return violations, entries, fast


def test_no_two_runs_ever_hold_the_lease_together():
    violations, entries, fast = simulate(range(4000))
    assert violations == [], violations[:3]
    # the schedules exercise both paths, and most runs got the lease in the end
    assert entries > 4000
    assert 0.2 * entries < fast < entries


def test_a_lone_run_goes_on_without_waiting():
    run = Run(
        "alone", LeaseProtocol(KEY, "dag/run/publish", "t", ttl=100, settle=SETTLE, wait=6), Plan(0, 0, [], False, None)
    )
    sim = Simulation(random.Random(1))
    sim.latency = lambda: 0.01  # type: ignore[method-assign]
    sim.run([run])
    assert run.held
    assert run.fast_entries == 1
    assert run.slept_before_entry == 0
    # six requests of 0.02 s (write the door, read the holder and the claim, write the claim, read
    # the door, write the holder) and no settle
    assert run.held[0][0] == pytest.approx(6 * 0.02)


def _scripted(protocol, plans: dict[str, Plan], slow: dict[tuple[str, int], tuple[float, float]]) -> list[Run]:
    runs = [
        Run(name, protocol(KEY, f"dag_{name}/run/publish", name, ttl=100, settle=SETTLE, wait=6), plan)
        for name, plan in plans.items()
    ]
    Simulation(random.Random(0), scripted=slow).run(runs)
    return runs


class WithdrawingAtOnce(LeaseProtocol):
    """A failed run withdraws its claim at once, possibly inside another run's settle."""

    def _settle_before_withdrawing(self):
        return
        yield  # pragma: no cover


class WithdrawingAfterOneSettle(LeaseProtocol):
    """A failed run withdraws its claim one settle after writing it."""

    def _settle_before_withdrawing(self):
        remaining = self._last_write + self.settle - (yield Clock())[0]
        if remaining > 0:
            yield Sleep(remaining)


#: Schedules written out (settle 1 s; requests numbered from 0 per run: the door, the holder
#: record, the claim, the claim's write, the door again, then the holder record's write or, for a
#: run that failed, its withdrawal: read the claim, delete it, delete the door). In each, ``D``
#: reads the claim free, its claim lands late over ``i``'s, and ``D`` fails before its confirm;
#: ``i`` took the fast path, but its holder record lands late (inside its own time check); ``j``
#: finds no claim (``D`` withdrew it) and no holder record (``i``'s has not landed when ``j`` reads
#: it), and goes on beside ``i`` unless the withdrawal waits long enough. (``D``'s deletion of the
#: door lands late: had it landed at once, ``j``, finding the door empty, would take the slow path.)
WITHDRAWALS = {
    "withdrawn-at-once": (
        {
            "D": Plan(0.0, 0.0, [1.0], True, None),
            "i": Plan(0.05, 0.0, [1.0], False, None),
            "j": Plan(0.6, 0.0, [1.0], False, None),
        },
        {("D", 3): (0.45, 0.0), ("D", 7): (1.0, 0.0), ("i", 5): (0.8, 0.0)},
        (WithdrawingAtOnce,),
    ),
    # j reads the holder record (free, 0.5 s) long before the claim (1.145 s, just after D withdrew
    # it one settle after writing it), all inside j's own time check
    "withdrawn-after-one-settle": (
        {
            "D": Plan(0.0, 0.0, [2.0], True, None),
            "i": Plan(0.02, 0.0, [2.0], False, None),
            "j": Plan(0.2, 0.0, [2.0], False, None),
        },
        {
            ("D", 3): (0.09, 0.0),
            ("D", 7): (1.0, 0.0),
            ("i", 5): (0.85, 0.0),
            ("j", 1): (0.3, 0.25),
            ("j", 2): (0.39, 0.0),
        },
        (WithdrawingAfterOneSettle,),
    ),
}


@pytest.mark.parametrize("schedule", list(WITHDRAWALS))
def test_a_withdrawal_waits_out_two_settles(schedule):
    plans, slow, broken = WITHDRAWALS[schedule]
    runs = _scripted(LeaseProtocol, plans, slow)
    assert overlaps(runs) == [], [run.held for run in runs]
    assert runs[1].fast_entries == 1, "i went on by the fast path"
    for variant in broken:
        runs = _scripted(variant, plans, slow)
        assert overlaps(runs), f"{variant.__name__}: the schedule did not put two runs in together"


class WithoutHolder(LeaseProtocol):
    """The fast path goes on without a holder record: a slow claimant's confirm cannot see it."""

    def _put(self, key, wall):
        if key != self.holder_key:
            yield from super()._put(key, wall)
        else:
            self._last_write = (yield Clock())[0]


class WithoutTimeCheck(LeaseProtocol):
    """The fast path trusts a holder record however late it landed."""

    def _fast_enough(self, started):
        return True


class WithoutDoor(LeaseProtocol):
    """Every claim takes the fast path."""

    def _door_is_mine(self, door):
        return True
        yield  # pragma: no cover


@pytest.mark.parametrize("variant", [WithoutHolder, WithoutTimeCheck, WithoutDoor])
def test_each_piece_of_the_protocol_is_needed(variant):
    violations, _, _ = simulate(range(4000), variant)
    assert violations, f"{variant.__name__}: no schedule put two runs in together"
