"""
Mutual exclusion over last-writer-wins registers (pure): the watermark lease's protocol.

Airflow Variables have no compare-and-set, so the lease is built from plain reads, writes and
deletes of three Variables beside the watermark ``<key>``:

* ``<key>.lease``, the *claim*: who is taking or holds the lease, with an expiry;
* ``<key>.lease.door``: the value of the last run to start a claim (Lamport's ``x``);
* ``<key>.lease.holder``: who went on without waiting (a *fast* holder), with an expiry.

A run claims by writing the door, reading the holder and the claim (both must be free for it:
absent, expired, its own or its task's), writing its claim and reading the door back:

* **Fast path** (no other run started a claim meanwhile): the door still holds this run's value.
  The run writes the holder record and goes on at once, if everything from its first read to that
  write took less than ``settle`` by its own clock (else it takes the slow path).
* **Slow path** (Fischer's timed mutual exclusion): the run trusts its claim only once it reads
  back unchanged ``settle`` seconds after it was written, *and* the holder record is free for it.

Why no two runs go on together, given the one assumption of the timed guard: every run's read of
the claim is followed by its write (or delete) landing less than ``settle`` later.

* Two fast runs: say A wrote the door first. A read its own value back, so B wrote the door after
  that, so B read the claim after A's claim landed. A's claim (or a newer one) was live then: only a
  run whose claim landed after A's can delete a claim in between, and it deletes nothing less than
  two settles after its claim: by then A's holder record had landed, more than a settle before,
  and B, whose fast path takes less than a settle from reading the holder record to writing its
  own, would have read A's.
* A fast run A and a slow run B: if B's claim landed first, it landed after A read the claim (A
  found none), so B reads it back more than a settle after that read, when A's claim has landed
  over it, and B does not go on. If B's landed after A's, B read the claim before A's landed; B's
  read-back comes at least ``settle`` after its claim, so after A's holder record landed (A's own
  clock checked that it landed within a settle of A's first read), and B finds the holder held.
* Two slow runs: Fischer's argument (the later claim landed after the earlier one was read back,
  so its run read the claim more than ``settle`` before its own write).

A run that does not go on keeps its claim while it waits (it may claim again) and withdraws it no
earlier than two settles after writing it (:data:`WITHDRAW_AFTER_SETTLES`): then any fast holder's
record that a later claim could have missed has landed. The settle is ``0`` to switch the guard
off (no fast path either).

``tests/unit/model/test_lease_protocol.py`` checks the protocol on random schedules and on written
ones that each variant without one of these pieces fails.
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class Get:
    """Read a Variable: answers its text, or ``None``."""

    key: str


@dataclass(frozen=True)
class Put:
    """Write a Variable."""

    key: str
    value: str


@dataclass(frozen=True)
class Delete:
    """Delete a Variable."""

    key: str


@dataclass(frozen=True)
class Clock:
    """Answers ``(monotonic seconds, wall seconds since the epoch)``."""


@dataclass(frozen=True)
class Sleep:
    """Wait; ``waiting``: for another run's lease (not the settle)."""

    seconds: float
    waiting: bool = False


#: A run that did not go on withdraws what it wrote no earlier than this many settles after its
#: last write: a claim found absent by a run that read the holder record before a fast holder's
#: landed must have been deleted before that run's own fast path could end.
WITHDRAW_AFTER_SETTLES = 2

Op = Get | Put | Delete | Clock | Sleep
#: What the protocol's steps are: a generator of operations, answered by the driver.
Steps = Generator[Op, Any, Any]
CLOCK = Clock()


def parse(text: str | None) -> dict | None:
    """A claim or holder record from its Variable's text (``None``: none, or unreadable)."""
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class LeaseProtocol:
    """
    One run's side of the lease on one watermark.

    :param watermark_key: the watermark Variable's key.
    :param owner: who claims, ``<dag_id>/<run_id>/<task_id>``: a record of the same owner (a retry of
        the same task in the same DAG run) is free for this run.
    :param token: this run's unique token.
    """

    def __init__(self, watermark_key: str, owner: str, token: str, ttl: float, settle: float, wait: float) -> None:
        self.claim_key = f"{watermark_key}.lease"
        self.door_key = f"{watermark_key}.lease.door"
        self.holder_key = f"{watermark_key}.lease.holder"
        self.owner = owner
        self.token = token
        self.ttl = ttl
        self.settle = settle
        self.wait = wait
        self.held = False
        #: whether the last claim took the fast path (its holder record is the lease)
        self.fast = False
        #: whether another run started a claim while the last one was under way
        self.contended = False
        #: monotonic time when the last claim was written; ``None`` when the last claim wrote none
        self.claimed_at: float | None = None
        #: seconds from the last claim's first read to its claim landing (the timed guard's span)
        self.read_to_write = 0.0
        #: the record last found in the way (``None``: none)
        self.seen: dict | None = None
        self._attempt = 0
        self._give_up_at = math.inf
        #: monotonic time of this run's last write to the claim or holder Variable, and which
        self._last_write = -math.inf
        self._written: set[str] = set()

    # -- records -----------------------------------------------------------------------------------

    def record(self, wall: float) -> str:
        expires = wall + self.ttl
        return json.dumps(
            {
                "owner": self.owner,
                "token": self.token,
                "expires_at": expires,
                "expires": datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec="seconds"),
            }
        )

    def mine(self, record: dict | None) -> bool:
        return record is not None and record.get("token") == self.token

    def _same_task(self, record: dict | None) -> bool:
        return record is not None and record.get("owner") == self.owner

    def free_for_me(self, record: dict | None, wall: float) -> bool:
        return (
            record is None or self.mine(record) or self._same_task(record) or float(record.get("expires_at", 0)) <= wall
        )

    def _put(self, key: str, wall: float) -> Steps:
        yield Put(key, self.record(wall))
        self._last_write, _ = yield CLOCK
        self._written.add(key)

    # -- claim, confirm ----------------------------------------------------------------------------

    def claim(self) -> Steps:
        """
        Write this run's claim if the lease is free for it, and take the fast path if no other run
        started a claim meanwhile. Until :meth:`confirm` returns, the caller may only do work that
        has no effect on Kafka or the watermark.

        Returns whether a claim was written (``False``: another run holds the lease, see :attr:`seen`).
        """
        _, wall = yield CLOCK
        if math.isinf(self._give_up_at):
            self._give_up_at = wall + self.wait
        self._attempt += 1
        door = f"{self.token}/{self._attempt}"
        yield Put(self.door_key, door)
        self._written.add(self.door_key)
        started, wall = yield CLOCK
        self.fast = False
        self.claimed_at = None
        for key in (self.holder_key, self.claim_key):
            record = parse((yield Get(key)))
            if not self.free_for_me(record, wall):
                self.seen = record
                return False
        yield from self._put(self.claim_key, wall)
        self.claimed_at = self._last_write
        self.read_to_write = self.claimed_at - started
        self.contended = not (yield from self._door_is_mine(door))
        if not self.contended:
            yield from self._put(self.holder_key, wall)
            self.fast = self._fast_enough(started)
        return True

    def _door_is_mine(self, door: str) -> Steps:
        """Whether no other run started a claim since this one wrote the door."""
        return self.settle > 0 and (yield Get(self.door_key)) == door

    def _fast_enough(self, started: float) -> bool:
        """Whether the holder record landed less than ``settle`` after this claim's first read."""
        return self._last_write - started < self.settle

    def confirm(self) -> Steps:
        """
        Finish taking the lease: at once on the fast path; on the slow path, wait out what is left
        of the settle and read the claim back. While another run holds the lease, wait (up to
        ``wait`` seconds from the first claim) and claim again.

        Returns whether the lease is held (``False``: the wait ran out, see :attr:`seen`).
        """
        if math.isinf(self._give_up_at):
            yield from self.claim()
        while not (yield from self._trusted()):
            _, wall = yield CLOCK
            if wall >= self._give_up_at:
                return False
            yield Sleep(min(2.0, max(0.1, self._give_up_at - wall)), waiting=True)
            yield from self.claim()
        self.held = True
        return True

    def _trusted(self) -> Steps:
        """Whether this run's last claim may be trusted now (claiming it again when it got old)."""
        while self.claimed_at is not None:
            claimed_at = self.claimed_at
            if not self.fast:
                remaining = claimed_at + self.settle - (yield CLOCK)[0]
                if remaining > 0:
                    yield Sleep(remaining)
                claim = parse((yield Get(self.claim_key)))
                _, wall = yield CLOCK
                holder = parse((yield Get(self.holder_key)))
                if not self.free_for_me(holder, wall):
                    self.seen = holder  # the run that went on, not the claim it overwrote
                    return False
                if not self.mine(claim):
                    self.seen = claim
                    return False
            now, _ = yield CLOCK
            if now - claimed_at < self.ttl / 2:
                return True
            # the work between claim and confirm took half the ttl: others may soon see this claim
            # as expired, so it is written (and settled, or fast) again rather than trusted
            if not (yield from self.claim()):
                return False
        return False

    def _settle_before_withdrawing(self) -> Steps:
        remaining = self._last_write + WITHDRAW_AFTER_SETTLES * self.settle - (yield CLOCK)[0]
        if remaining > 0:
            yield Sleep(remaining)

    # -- renew, release ----------------------------------------------------------------------------

    def renew(self) -> Steps:
        """Extend the lease; returns ``False`` (and forgets it) if another run took it over."""
        key = self.holder_key if self.fast else self.claim_key
        record = parse((yield Get(key)))
        if not self.mine(record):
            self.held = False
            self.seen = record
            return False
        _, wall = yield CLOCK
        yield from self._put(key, wall)
        return True

    def release(self) -> Steps:
        """
        Give the lease up, or withdraw what this run wrote of a claim that did not go on (no
        earlier than :data:`WITHDRAW_AFTER_SETTLES` settles after its last write), and clear the door.
        """
        if self._written - {self.door_key} and not self.held:
            yield from self._settle_before_withdrawing()
        for key in (self.holder_key, self.claim_key):
            if key in self._written or self.held:
                record = parse((yield Get(key)))
                # a record of this run, or one an earlier try of the same task left behind
                if self.mine(record) and key in self._written or self.held and self._same_task(record):
                    yield Delete(key)
        if self.door_key in self._written:
            # the door only tells a claim whether another one started meanwhile: without it, a claim
            # under way takes the slow path, never the reverse; so it is cleared whoever wrote it last
            yield Delete(self.door_key)
        self._written.clear()
        self.held = False
        self.fast = False
        self.claimed_at = None
