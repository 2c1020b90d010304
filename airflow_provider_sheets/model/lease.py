"""
Mutual exclusion over last-writer-wins registers (pure): the watermark lease's protocol.

Airflow Variables have no compare-and-set, so the lease is built from plain reads, writes and
deletes of two Variables beside the watermark ``<key>``:

* ``<key>.lease``, the *claim*: who is taking or holds the lease, with an expiry, and the token of
  the record it was written over (``over``);
* ``<key>.lease.holder``, the *holder record*: written only by a run that went on, on its way in.

**Fischer's timed mutual exclusion, with each run checking its own time.** A run reads the claim
and, when it is free for it, writes its own; it trusts that claim once it reads back unchanged a
settle after the write returned. Fischer's argument needs every claim to land less than that settle
after its run's read; here no run *assumes* it of itself, it measures it. A claim whose write
returned less than :data:`TIMELY_SHARE` of the fast settle (a fifth of ``settle``:
:data:`FAST_SHARE`) after its read started is *timely* and is read back the fast settle later. Any
other claim is *late*: it may have landed over the claim of a run that already went on, so it is
read back a whole ``settle`` after it returned, and trusted only if no other run's holder record is
there. A run that goes on writes its holder record and goes on only if that write returned less than
:data:`TIMELY_SHARE` of ``settle`` after its confirming read started (else it withdraws and claims
again).

Why no two runs hold the lease together, whatever their claims' timing (``F`` the fast settle,
``S`` the settle, times at the store; the clocks of two hosts run at the same rate, the shares'
margin covers their drift):

1. *A timely claim never lands over a holder's.* Say run A went on, its claim landed at ``w_A`` and
   read back at ``c_A >= w_A + F``; the claim was A's throughout ``[w_A, c_A]`` (only A writes its
   token). A timely claim of B that lands after ``c_A`` was read less than ``F`` before, so after
   ``w_A``: B found A's fresh claim (or a record landed since, see 2), which is not free for B.
2. *What lands over a holder's claim is late, and its run does not go on with it.* By 1 the first
   claim to land after ``c_A`` is late; its run reads its own claim back no earlier than ``S`` after
   it returned, so at least ``S`` after ``c_A``, when A's holder record (which landed less than
   ``S`` after ``c_A``) is there: that run does not go on. Nor does any run that finds such a record:
   it is fresh and not its own. A record is taken over without its run (expired, or left by an
   earlier try of the same task) only once it has stood unchanged for ``S`` and no other run's
   holder record is there, the same check.
3. *Two late claims*: the later one landed after the earlier one's run read it back, at least ``S``
   after that run's read, so its run finds the other's holder record (written less than ``S`` after
   that read-back).
4. *The holder keeps its lease*: its renewal writes its claim again over a record that was written
   over something else (``over`` is not its token), a late claim by 2; one written over its own
   claim (a takeover of an expired or dead try's lease) ends the lease.

Deletes are read-then-delete, and the one bound left is theirs: a delete lands less than ``S`` after
the read that decided it. A run that did not go on withdraws its claim only once no timely claim
that could have missed its own can still land (the fast settle after it returned), and a late one
only once no holder record is there a settle after it returned; a run that left a late claim and
died blocks the others until it expires (or its task's next try takes it over), like a dead holder.
A holder deletes its holder record, then its claim, never another run's.

``tests/unit/model/test_lease_protocol.py`` checks this on random schedules in which claims and
holder records land arbitrarily late, and catches each variant without one of these pieces.
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
    """Wait; ``waiting``: for another run's lease (not a settle)."""

    seconds: float
    waiting: bool = False


#: The fast settle as a share of ``settle``: what a run whose claim was timely waits.
FAST_SHARE = 0.2
#: A claim is timely when its write returned in less than this share of the fast settle after its
#: read started; a holder record must have returned in less than this share of ``settle``. The
#: rest is margin for the clocks of two hosts.
TIMELY_SHARE = 0.8

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
        the same task in the same DAG run) may be taken over.
    :param token: this run's unique token.
    """

    def __init__(self, watermark_key: str, owner: str, token: str, ttl: float, settle: float, wait: float) -> None:
        self.claim_key = f"{watermark_key}.lease"
        self.holder_key = f"{watermark_key}.lease.holder"
        self.owner = owner
        self.token = token
        self.ttl = ttl
        self.settle = settle
        self.fast_settle = settle * FAST_SHARE
        self.wait = wait
        self.held = False
        #: whether this run's last claim was late (read back after the whole settle)
        self.late = False
        #: monotonic time when the standing claim's write returned (``None``: none to confirm)
        self.claimed_at: float | None = None
        #: seconds from the last claim's read to its write returning
        self.read_to_write = 0.0
        #: the record last found in the way (``None``: none)
        self.seen: dict | None = None
        self._give_up_at = math.inf
        #: monotonic time when this run's last claim write returned, ``None`` before it wrote one
        self._wrote_at: float | None = None
        #: monotonic time of the read whose wall clock dated this run's last claim record
        self._dated_at = -math.inf
        self._wrote_holder = False
        #: seconds from the confirming read to the holder record's write returning, when too long
        self.slow_holder: float | None = None
        #: another run's record that may be taken over once it stood a settle: (token, first seen)
        self._standing: tuple[Any, float] | None = None

    # -- records -----------------------------------------------------------------------------------

    def record(self, wall: float, over: Any = None) -> str:
        expires = wall + self.ttl
        return json.dumps(
            {
                "owner": self.owner,
                "token": self.token,
                "over": over,
                "expires_at": expires,
                "expires": datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec="seconds"),
            }
        )

    def mine(self, record: dict | None) -> bool:
        return record is not None and record.get("token") == self.token

    def _same_task(self, record: dict) -> bool:
        return record.get("owner") == self.owner

    @staticmethod
    def _expired(record: dict, wall: float) -> bool:
        try:
            return float(record.get("expires_at", 0)) <= wall
        except (TypeError, ValueError):
            return True

    def holder_in_the_way(self, holder: dict | None, wall: float) -> bool:
        """Whether ``holder`` is another run's live holder record."""
        return not (holder is None or self.mine(holder) or self._same_task(holder) or self._expired(holder, wall))

    # -- claim, confirm ----------------------------------------------------------------------------

    def claim(self) -> Steps:
        """
        Write this run's claim if the lease is free for it. Until :meth:`confirm` returns, the caller
        may only do work that has no effect on Kafka or the watermark.

        Returns whether a claim was written (``False``: another run holds the lease, see :attr:`seen`).
        """
        sent, wall = yield CLOCK
        if math.isinf(self._give_up_at):
            self._give_up_at = wall + self.wait
        record = parse((yield Get(self.claim_key)))
        returned, wall = yield CLOCK
        self.claimed_at = None
        if not (yield from self._free(record, sent, returned, wall)):
            return False
        yield Put(self.claim_key, self.record(wall, over=record.get("token") if record else None))
        self.claimed_at, _ = yield CLOCK
        self._wrote_at, self._dated_at = self.claimed_at, returned
        self.read_to_write = self.claimed_at - sent
        self.late = self.read_to_write >= TIMELY_SHARE * self.fast_settle
        return True

    def _free(self, record: dict | None, sent: float, returned: float, wall: float) -> Steps:
        """Whether this run may write its claim over ``record`` (read by a request sent at ``sent``)."""
        if record is None or (self.mine(record) and not self.late):
            return True
        if not (self.mine(record) or self._same_task(record) or self._expired(record, wall)):
            self.seen = record
            return False
        # a record that may stand over a holder's claim: its own late claim, or one whose run is not
        # here to withdraw it; taken over once it stood a settle unchanged and no holder is in the way
        since = self._wrote_at if self.mine(record) else self._first_seen(record, returned)
        if since is None or sent < since + self.settle:
            self.seen = record
            return False
        holder = parse((yield Get(self.holder_key)))
        if self.holder_in_the_way(holder, wall):
            self.seen = holder
            return False
        return True

    def _first_seen(self, record: dict, returned: float) -> float:
        if self._standing is None or self._standing[0] != record.get("token"):
            self._standing = (record.get("token"), returned)
        return self._standing[1]

    def confirm(self) -> Steps:
        """
        Finish taking the lease: wait out what is left of the settle and read the claim back; while
        another run holds the lease, wait (up to ``wait`` seconds from the first claim) and claim again.

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
        """Whether this run's standing claim may be trusted now (claiming it again when it got old)."""
        while self.claimed_at is not None:
            claimed_at = self.claimed_at
            remaining = claimed_at + (self.settle if self.late else self.fast_settle) - (yield CLOCK)[0]
            if remaining > 0:
                yield Sleep(remaining)
            if self.late:
                _, wall = yield CLOCK
                holder = parse((yield Get(self.holder_key)))
                if self.holder_in_the_way(holder, wall):
                    self.seen = holder  # the run that went on, not the claim this one landed over
                    return False
            sent, wall = yield CLOCK
            claim = parse((yield Get(self.claim_key)))
            if not self.mine(claim):
                self.seen = claim
                return False
            if (yield CLOCK)[0] - claimed_at >= self.ttl / 2:
                # the work between claim and confirm took half the ttl: others may soon see this claim
                # as expired, so it is written (and settled) again rather than trusted
                if not (yield from self.claim()):
                    return False
                continue
            return (yield from self._enter(sent, wall))
        return False

    def _enter(self, sent: float, wall: float) -> Steps:
        """Write the holder record; go on only if it returned in time for a late claim's run to see it."""
        yield Put(self.holder_key, self.record(wall))
        self._wrote_holder = True
        span = (yield CLOCK)[0] - sent
        if span < TIMELY_SHARE * self.settle:
            return True
        yield from self._delete_if_mine(self.holder_key)
        self.seen = None
        self.slow_holder = span
        return False

    # -- renew, release ----------------------------------------------------------------------------

    def renew(self) -> Steps:
        """Extend the lease; returns ``False`` (and forgets it) if another run took it over."""
        sent, wall = yield CLOCK
        holder = parse((yield Get(self.holder_key)))
        claim = parse((yield Get(self.claim_key)))
        if not (self.mine(holder) and (self.mine(claim) or self._landed_over_me(claim, sent))):
            self.held = False
            self.seen = holder if self.mine(claim) else claim
            return False
        yield Put(self.claim_key, self.record(wall, over=claim.get("token") if claim else None))
        self._dated_at = sent
        yield Put(self.holder_key, self.record(wall))
        return True

    def _landed_over_me(self, claim: dict | None, sent: float) -> bool:
        """Whether ``claim`` is a late claim written over something else while this run held the lease."""
        return (
            claim is not None
            and claim.get("over") != self.token
            # nobody could have found this run's claim expired yet
            and sent - self._dated_at < self.ttl / 2
        )

    def release(self) -> Steps:
        """
        Give the lease up (the holder record, then the claim), or withdraw a claim that did not go on
        once that is safe (see the module's docstring).
        """
        if self._wrote_holder:
            yield from self._delete_if_mine(self.holder_key)
        if self.held:
            yield from self._delete_if_mine(self.claim_key)
        elif self._wrote_at is not None:
            yield from self.withdraw()
        self._wrote_holder = self.held = False
        self.claimed_at = self._wrote_at = None

    def withdraw(self) -> Steps:
        """Delete this run's claim that did not go on: no timely claim can land over it after, no holder is under it."""
        assert self._wrote_at is not None
        remaining = self._wrote_at + (self.settle if self.late else self.fast_settle) - (yield CLOCK)[0]
        if remaining > 0:
            yield Sleep(remaining)
        if self.late:
            _, wall = yield CLOCK
            if self.holder_in_the_way(parse((yield Get(self.holder_key))), wall):
                return  # that holder's renewal writes over this claim
        yield from self._delete_if_mine(self.claim_key)

    def _delete_if_mine(self, key: str) -> Steps:
        if self.mine(parse((yield Get(key)))):
            yield Delete(key)
