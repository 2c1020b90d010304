"""
Mutual exclusion over last-writer-wins registers (pure): the watermark lease's protocol.

Airflow Variables have no compare-and-set, so the lease is built from plain reads, writes and
deletes of two Variables beside the watermark ``<key>``:

* ``<key>.lease``, the *claim*: who is taking or holds the lease, with an expiry, and the token of
  the record it was written over (``over``);
* ``<key>.lease.holder``, the *holder record*: written on its way in by the run that takes the lease,
  and marked ``held`` once it did.

A run reads the claim and, when it is free for it (absent, expired, its own or its task's), writes
its own, then lets ``settle`` pass (doing work with no effect meanwhile). Then it reads the holder
record, which must be absent or expired (or a dead try's of its task: marked ``held``, or *inherited*,
below), reads its claim back, writes its holder record, and reads its claim back once more: it takes
the lease only if the claim is still its own.

**Why no two runs hold the lease together, whatever the timing of reads and writes.** Say runs A
and B both took it, A's claim landed first (``a1 < b1``), A read it back for the last time at
``a5``, after its holder record had landed. No claim landed in between (the claim was A's at
``a5`` and only A writes its token), so B's landed after ``a5``; B read the holder record after
its own claim returned, so after A's holder record had landed, and found it not free. A holder
record is there while its run holds the lease: only its holder's release deletes it (a run that
did not take the lease deletes its own only when that is safe, below), and one landing over it comes
from a run whose claim was landed over before it read it back (above), which does not take the
lease; such a record keeps every run out, its own run and its task's next try included (only a
record marked ``held``, which a run writes once it took the lease, lets a retry of its task take the
lease over). The settle does not enter this argument.

**What the settle is for: runs claiming together settle it among themselves.** When claims land
less than ``settle`` apart, the earlier run reads back the later one's claim and steps back before
writing anything more; without it, two runs claiming together would each write a holder record, and
both stop. A run whose claim was landed over *after* it wrote its holder record does not take the
lease and leaves that record (landed late, it may stand over the holder record of a run that took
the lease meanwhile), unless its holder record returned less than :data:`QUICK_SHARE` of ``settle``
after the read-back before it: then no run can have written its own holder record in between (it
would have to claim after that read-back and let ``settle`` pass first), and the record is deleted.
A record left behind blocks the lease until it expires, as a killed holder's claim does.

**A retry inherits the records of the try it follows.** A try killed between writing its holder
record and marking it ``held`` leaves a record that would keep every run out until it expires, its
task's retry included. So a run that finds the claim of a dead try of its task also reads the holder
record before writing its claim; if that record is the same try's (same token), the run inherits it:
it is not in the way for this run. That is safe: the claim was still the dead try's, so no claim
landed after its last one, so no run took the lease since (a run takes it only on a claim that is
still its own after its holder record landed), and none before it (the dead try read the holder
record free after its claim landed, or it would not have written its own); and every other run finds
the inherited record, or this run's over it, in its way.

**The holder keeps its lease**: its renewal writes its claim and holder record again over a claim
that was not written over its own (``over`` is not its token: one of a run that does not take the
lease) or that is gone (a claim may be deleted at any time: the holder record keeps the others out);
a claim written over its own (a takeover of an expired lease) ends the lease.

What is assumed: a record of this run's own task is a dead try's (two tries of one task never run at
once); a holder renews within half of ``ttl`` (or it stops at the next renewal); no request lands
after the call that sent it returned (a retry of a timed-out request that returned before its first
attempt landed is outside this); and, for deleting a holder record of a run that did not take the
lease, every run on the lease waits the same ``settle``, measured by clocks that run at the same rate.

``tests/unit/model/test_lease_protocol.py`` checks this on random schedules in which any request
lands arbitrarily late, and on written-out ones, and catches each variant without one of its pieces.
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


#: A run that did not take the lease deletes its holder record if it returned within this share of
#: ``settle`` after the read-back before it (the rest is margin for the clocks of two hosts).
QUICK_SHARE = 0.8

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
        self.holder_key = f"{watermark_key}.lease.holder"
        self.owner = owner
        self.token = token
        self.ttl = ttl
        self.settle = settle
        self.wait = wait
        self.held = False
        #: monotonic time when the standing claim's write returned (``None``: none to confirm)
        self.claimed_at: float | None = None
        #: the record last found in the way (``None``: none)
        self.seen: dict | None = None
        #: holder records this run left behind, not taking the lease
        self.left_behind = 0
        self._give_up_at = math.inf
        self._wrote_claim = False
        #: monotonic time of the read whose wall clock dated this run's last claim record
        self._dated_at = -math.inf
        #: the token of a dead try of this run's task whose claim and holder record this run found together
        self.inherited: str | None = None

    # -- records -----------------------------------------------------------------------------------

    def record(self, wall: float, over: Any = None, held: bool | None = None) -> str:
        """A claim (``over``: the token it was written over) or, with ``held``, a holder record."""
        expires = wall + self.ttl
        record = {
            "owner": self.owner,
            "token": self.token,
            "expires_at": expires,
            "expires": datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec="seconds"),
        }
        record.update({"over": over} if held is None else {"held": held})
        return json.dumps(record)

    def mine(self, record: dict | None) -> bool:
        return record is not None and record.get("token") == self.token

    @staticmethod
    def _live(record: dict, wall: float) -> bool:
        try:
            return float(record.get("expires_at", 0)) > wall
        except (TypeError, ValueError):
            return False

    def in_the_way(self, record: dict | None, wall: float) -> bool:
        """Whether the claim ``record`` is another run's live one (not this run's, its task's, or expired)."""
        if record is None or self.mine(record) or record.get("owner") == self.owner:
            return False
        return self._live(record, wall)

    def holder_in_the_way(self, holder: dict | None, wall: float) -> bool:
        """
        Whether a live holder record keeps this run out: any but one a dead try of this run's task
        wrote once it held the lease (``held``). A record its run left behind, not taking the lease,
        may stand over a holder's, this run's own included.
        """
        if holder is None:
            return False
        if holder.get("owner") == self.owner and (holder.get("held") is True or self._inherits(holder)):
            return False
        return self._live(holder, wall)

    def _inherits(self, record: dict) -> bool:
        return self.inherited is not None and record.get("token") == self.inherited

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
        if self.in_the_way(record, wall):
            self.seen = record
            self.claimed_at = None
            return False
        if record is not None and record.get("owner") == self.owner and not self.mine(record):
            # a dead try's claim: its holder record, if it is there too, is this run's to take over
            holder = parse((yield Get(self.holder_key)))
            if holder is not None and holder.get("owner") == self.owner and holder.get("token") == record.get("token"):
                self.inherited = record.get("token")
        yield Put(self.claim_key, self.record(wall, over=record.get("token") if record else None))
        self.claimed_at, _ = yield CLOCK
        self._wrote_claim, self._dated_at = True, sent
        return True

    def confirm(self) -> Steps:
        """
        Finish taking the lease: wait out what is left of the settle, then the holder record and the
        claim read-backs; while another run holds the lease, wait (up to ``wait`` seconds from the
        first claim) and claim again.

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
        """Whether this run takes the lease on its standing claim (claiming again when it got old)."""
        while self.claimed_at is not None:
            claimed_at = self.claimed_at
            remaining = claimed_at + self.settle - (yield CLOCK)[0]
            if remaining > 0:
                yield Sleep(remaining)
            _, wall = yield CLOCK
            holder = parse((yield Get(self.holder_key)))
            if self.holder_in_the_way(holder, wall):
                self.seen = holder  # the run that took the lease, not a claim landed over its own
                return False
            sent, wall = yield CLOCK
            if not (yield from self._still_mine()):
                return False
            if (yield CLOCK)[0] - claimed_at >= self.ttl / 2:
                # the work between claim and confirm took half the ttl: others may soon see this claim
                # as expired, so it is written (and settled) again rather than trusted
                if not (yield from self.claim()):
                    return False
                continue
            return (yield from self._enter(sent, wall))
        return False

    def _still_mine(self) -> Steps:
        claim = parse((yield Get(self.claim_key)))
        if self.mine(claim):
            return True
        self.seen = claim
        return False

    def _enter(self, sent: float, wall: float) -> Steps:
        """
        Write the holder record and read the claim back once more: take the lease if still this run's,
        and mark the holder record as held (what lets a retry of this task take a lease over).
        """
        yield Put(self.holder_key, self.record(wall, held=False))
        returned, _ = yield CLOCK
        if (yield from self._still_mine()):
            yield Put(self.holder_key, self.record(wall, held=True))
            return True
        if returned - sent < QUICK_SHARE * self.settle:
            yield from self._delete_if_mine(self.holder_key)
        else:
            self.left_behind += 1
        return False

    # -- renew, release ----------------------------------------------------------------------------

    def renew(self) -> Steps:
        """Extend the lease; returns ``False`` (and forgets it) if another run took it over."""
        sent, wall = yield CLOCK
        claim = parse((yield Get(self.claim_key)))
        if not (self.mine(claim) or self._not_over_me(claim, sent)):
            self.held = False
            self.seen = claim
            return False
        yield Put(self.claim_key, self.record(wall, over=claim.get("token") if claim else None))
        self._dated_at = sent
        yield Put(self.holder_key, self.record(wall, held=True))
        return True

    def keep(self) -> Steps:
        """
        Make sure the lease is still held before an effect that needs it (moving the watermark): renew
        it (:meth:`renew`) unless this run dated its claim less than a quarter of ``ttl`` ago, when no
        run can have found the claim expired yet, so none can have taken the lease over (half of
        ``ttl`` is what :meth:`_not_over_me` allows; the rest is margin for the clocks of two hosts).

        Returns whether the lease is held.
        """
        sent, _ = yield CLOCK
        if self.held and sent - self._dated_at < self.ttl / 4:
            return True
        return (yield from self.renew())

    def _not_over_me(self, claim: dict | None, sent: float) -> bool:
        """Whether ``claim`` is one no other run takes the lease on: gone, or not written over this run's."""
        return (
            (claim is None or claim.get("over") != self.token)
            # nobody could have found this run's claim expired yet
            and sent - self._dated_at < self.ttl / 2
        )

    def release(self) -> Steps:
        """Give the lease up (the holder record, then the claim), or withdraw a claim that did not take it."""
        if self.held:
            yield from self._delete_if_mine(self.holder_key)
            sent, _ = yield CLOCK
            claim = parse((yield Get(self.claim_key)))
            if claim is not None and (self.mine(claim) or self._not_over_me(claim, sent)):
                yield Delete(self.claim_key)
        elif self._wrote_claim:
            yield from self._delete_if_mine(self.claim_key)
        self.held = self._wrote_claim = False
        self.claimed_at = None

    def _delete_if_mine(self, key: str) -> Steps:
        if self.mine(parse((yield Get(key)))):
            yield Delete(key)
