"""
A lease on one watermark, so that overlapping runs cannot publish the same rows.

Airflow Variables are last-writer-wins with no compare-and-set, so the lease is a claim written
to the Variable ``<watermark key>.lease`` and confirmed after a settle delay: when two runs claim
at the same time, both read back the one that was written last, and only that run goes on. The
other waits (``wait`` seconds, polling) and then fails with :class:`WatermarkConflictError`
naming the holder. A lease expires ``ttl`` seconds after its last renewal (the holder renews it
while it runs), so a killed worker blocks others for at most ``ttl``; a retry of the same task in
the same DAG run takes its own lease over at once.

Taking the lease is split in two: :meth:`WatermarkLease.claim` reads the lease and, when it is
free for this run, writes the claim and starts the settle as a *deadline*; the run then does work
that needs no lease and has no effect on Kafka or on the watermark (describe the sheet, build the
producer, check the topic) while the settle elapses, and :meth:`WatermarkLease.confirm` waits out
what is left of it, reads the claim back, and only then may the watermark be read and anything be
produced. (:meth:`WatermarkLease.acquire` is both at once.) This is as safe as claiming and
sleeping, because what keeps two runs apart is only this (Fischer's timed mutual exclusion):

* a claim is written only by a run that read the lease free for it (absent, expired, its own);
* a claim is trusted only if it reads back unchanged at least ``settle`` seconds after it was
  written (the confirm may come later, never earlier);
* nothing with an effect happens before the claim is trusted.

Say runs A and B both go on, and A's claim landed first (``w_A < w_B``). A read its own claim back
at ``c_A >= w_A + settle``, so B's claim landed after that: ``w_B > c_A``. B read the lease free at
``r_B``; after ``w_A`` it would have found A's fresh claim, so ``r_B < w_A``, and B took more than
``settle`` from reading the lease to its claim landing. So two runs both go on only if one of them
takes longer than ``settle`` between its read and its write, exactly as with a plain sleep: work
done *during* the settle does not shorten the confirm (it only makes it later, which the argument
allows), and a claim read back after half its ``ttl`` is claimed (and settled) again, so that no
run trusts a claim that others may already see as expired.

The settle is *not* shortened below its 0.5 s default, though an incremental run spends most of its
time in it: that bound on a claim's read-to-write time is the guard itself (a GC pause, a loaded
API server or a slow metadata database stretch it), and a shorter one narrows it for every run on
every deployment. A run whose own read-to-write time comes near the settle logs a warning, so a
deployment that lowers ``lease_settle`` sees when it is too low.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from datetime import datetime, timezone

from airflow_provider_sheets.errors import WatermarkConflictError

log = logging.getLogger(__name__)


def _now() -> float:
    return time.time()


class WatermarkLease:
    """
    :param watermark_key: the watermark Variable's key; the lease lives at ``<key>.lease``.
    :param owner: who claims it, ``<dag_id>/<run_id>/<task_id>``.
    :param ttl: seconds a claim stays valid without renewal.
    :param settle: seconds from writing a claim to confirming it (at the earliest).
    :param wait: seconds to wait for a held lease before failing, from the first :meth:`claim`.
    """

    def __init__(
        self, watermark_key: str, owner: str, ttl: float = 600.0, settle: float = 0.5, wait: float = 120.0
    ) -> None:
        self.key = f"{watermark_key}.lease"
        self.owner = owner
        self.ttl = ttl
        self.settle = settle
        self.wait = wait
        self.token = uuid.uuid4().hex
        self.held = False
        #: ``time.monotonic()`` when this run's last claim was written, ``None`` when it wrote none
        self.claimed_at: float | None = None
        #: the claim last read (``None``: no lease)
        self.seen: dict | None = None
        #: when a run waiting for the lease gives up: ``wait`` seconds after its first claim
        self._give_up_at = math.inf

    def _read(self) -> dict | None:
        from airflow.sdk import Variable

        text = Variable.get(self.key, default=None)
        if not text:
            return None
        try:
            claim = json.loads(text)
        except ValueError:
            return None
        return claim if isinstance(claim, dict) else None

    def _write(self) -> None:
        from airflow.sdk import Variable

        expires = _now() + self.ttl
        claim = {
            "owner": self.owner,
            "token": self.token,
            "expires_at": expires,
            "expires": datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec="seconds"),
        }
        Variable.set(self.key, json.dumps(claim), description="airflow-provider-sheets: lease on a watermark")

    def _free_for_me(self, claim: dict | None) -> bool:
        return (
            claim is None
            or claim.get("token") == self.token
            or claim.get("owner") == self.owner
            or float(claim.get("expires_at", 0)) <= _now()
        )

    def claim(self) -> bool:
        """
        Write this run's claim if the lease is free for it, and start the settle: a deadline that
        :meth:`confirm` waits out, not a sleep. Until :meth:`confirm` returns, the caller may only do
        work that needs no lease and has no effect on Kafka or the watermark.

        :return: whether a claim was written (``False``: another run holds the lease).
        """
        if math.isinf(self._give_up_at):
            self._give_up_at = _now() + self.wait
        reading = time.monotonic()
        self.seen = self._read()
        if not self._free_for_me(self.seen):
            self.claimed_at = None
            return False
        self._write()
        self.claimed_at = time.monotonic()
        if self.claimed_at - reading > self.settle / 2:
            log.warning(
                "Claiming the lease %r took %.2f s from reading it to writing the claim, more than half of "
                "lease_settle (%.2f s): two runs starting together are kept apart only while that stays below "
                "lease_settle; raise it.",
                self.key,
                self.claimed_at - reading,
                self.settle,
            )
        return True

    def confirm(self) -> None:
        """
        Finish taking the lease: wait out what is left of the settle and read the claim back; while
        another run holds it, wait (up to ``wait`` seconds from the first claim) and claim again.
        """
        if math.isinf(self._give_up_at):
            self.claim()
        while not (self.claimed_at is not None and self._survived()):
            if _now() >= self._give_up_at:
                raise self._conflict()
            log.info("Watermark leased by %s; waiting.", (self.seen or {}).get("owner"))
            time.sleep(min(2.0, max(0.1, self._give_up_at - _now())))
            self.claim()
        self.held = True

    def _survived(self) -> bool:
        """Whether this run's claim reads back unchanged ``settle`` seconds (or more) after it was written."""
        while self.claimed_at is not None:
            claimed_at = self.claimed_at
            remaining = claimed_at + self.settle - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            self.seen = self._read()
            if self.seen is None or self.seen.get("token") != self.token:
                return False
            if time.monotonic() - claimed_at < self.ttl / 2:
                return True
            # the work between claim and confirm took half the ttl: others may soon see this claim
            # as expired, so it is written (and settled) again rather than trusted
            log.info("The claim on %r is older than half of lease_ttl; claiming it again.", self.key)
            if not self.claim():
                return False
        return False

    def acquire(self) -> None:
        """Take the lease, waiting up to ``wait`` seconds for another holder: :meth:`claim`, then :meth:`confirm`."""
        self.claim()
        self.confirm()

    def _conflict(self) -> WatermarkConflictError:
        claim = self.seen or {}
        return WatermarkConflictError(
            f"the watermark is leased by {claim.get('owner', 'another run')} until {claim.get('expires', '?')}; "
            f"this run waited {self.wait:.0f} s. Two runs publishing the same rows would duplicate them, so this "
            f"one stops without publishing. Retry after that run ends (or delete the Variable {self.key!r} "
            f"if that run is known to be dead)."
        )

    def renew(self) -> None:
        """Extend the lease; raise :class:`WatermarkConflictError` if another run took it over."""
        claim = self._read()
        if claim is None or claim.get("token") != self.token:
            self.held = False
            raise WatermarkConflictError(
                f"the lease {self.key!r} was taken over by {(claim or {}).get('owner', 'nobody')} while this run "
                f"was publishing (did it run longer than the lease ttl without renewing?); the watermark is "
                f"left to that run."
            )
        self._write()

    def release(self) -> None:
        """Give the lease up if this run still holds it, or withdraw its claim if not confirmed yet."""
        if not self.held and self.claimed_at is None:
            return
        from airflow.sdk import Variable

        claim = self._read()
        if claim is not None and claim.get("token") == self.token:
            Variable.delete(self.key)
        self.held = False
        self.claimed_at = None
