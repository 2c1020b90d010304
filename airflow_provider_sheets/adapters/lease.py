"""
A lease on one watermark, so that overlapping runs cannot publish the same rows.

Airflow Variables are last-writer-wins with no compare-and-set, so the lease is a protocol of reads
and writes of two Variables beside the watermark, ``<key>.lease`` (the claim) and
``<key>.lease.holder`` (the holder record); :mod:`airflow_provider_sheets.model.lease` states it and
why no two runs go on together whatever the timing of their requests. A run writes its claim when
the lease is free for it, lets ``settle`` pass (0.1 s by default: it only settles runs that claim
together among themselves), and then takes the lease if no other run's holder record is there and
its claim reads back, before and after it writes its own holder record. A run that finds the lease
held waits (``wait`` seconds, polling) and then fails with :class:`WatermarkConflictError` naming
the holder. A lease expires ``ttl`` seconds after its last renewal (the holder renews it while it
runs), so a killed worker blocks others for at most ``ttl``; a retry of the same task in the same
DAG run takes its own lease over at once, whether the killed try held it or was killed taking it.

Taking the lease is split in two: :meth:`WatermarkLease.claim` reads the lease and, when it is
free for this run, writes the claim; the run then does work that needs no lease and has no effect
on Kafka or on the watermark (describe the sheet, build the producer, check the topic) while the
settle elapses, and :meth:`WatermarkLease.confirm` waits out what is left of it and finishes; only
then may the watermark be read and anything be produced. (:meth:`WatermarkLease.acquire` is both at
once.)
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from airflow_provider_sheets.errors import WatermarkConflictError
from airflow_provider_sheets.model.lease import Clock, Delete, Get, LeaseProtocol, Put, Sleep, Steps

log = logging.getLogger(__name__)

DESCRIPTION = "airflow-provider-sheets: lease on a watermark"


def _now() -> float:
    return time.time()


class WatermarkLease:
    """
    :param watermark_key: the watermark Variable's key; the lease lives at ``<key>.lease`` and
        ``<key>.lease.holder``.
    :param owner: who claims it, ``<dag_id>/<run_id>/<task_id>``.
    :param ttl: seconds a claim stays valid without renewal.
    :param settle: seconds from writing a claim to confirming it, at the least.
    :param wait: seconds to wait for a held lease before failing, from the first :meth:`claim`.
    """

    def __init__(
        self, watermark_key: str, owner: str, ttl: float = 600.0, settle: float = 0.1, wait: float = 120.0
    ) -> None:
        self.token = uuid.uuid4().hex
        self.protocol = LeaseProtocol(watermark_key, owner, self.token, ttl=ttl, settle=settle, wait=wait)
        self.key = self.protocol.claim_key
        self.owner = owner
        self.ttl = ttl
        self.settle = settle
        self.wait = wait

    @property
    def held(self) -> bool:
        return self.protocol.held

    @property
    def seen(self) -> dict | None:
        """The record last found in the way (``None``: none)."""
        return self.protocol.seen

    # -- the Variables and the clock the protocol runs on ---------------------------------------------

    def _get(self, key: str) -> str | None:
        from airflow.sdk import Variable

        return Variable.get(key, default=None)

    def _put(self, key: str, value: str) -> None:
        from airflow.sdk import Variable

        Variable.set(key, value, description=DESCRIPTION)

    def _delete(self, key: str) -> None:
        from airflow.sdk import Variable

        Variable.delete(key)

    def _run(self, steps: Steps) -> Any:
        """Carry out the protocol's operations on Airflow Variables and this process's clock."""
        answer: Any = None
        try:
            while True:
                op = steps.send(answer)
                answer = None
                if isinstance(op, Get):
                    answer = self._get(op.key)
                elif isinstance(op, Put):
                    self._put(op.key, op.value)
                elif isinstance(op, Delete):
                    self._delete(op.key)
                elif isinstance(op, Clock):
                    answer = (time.monotonic(), _now())
                elif isinstance(op, Sleep):
                    if op.waiting:
                        self._log_wait()
                    time.sleep(op.seconds)
        except StopIteration as done:
            return done.value

    def _log_wait(self) -> None:
        if self.seen is not None:
            log.info("Watermark leased by %s; waiting.", self.seen.get("owner"))
        else:  # the other run already gave the lease up
            log.info("The claim on %r did not hold; claiming again.", self.key)

    def claim(self) -> bool:
        """
        Write this run's claim if the lease is free for it. Until :meth:`confirm` returns, the caller
        may only do work that needs no lease and has no effect on Kafka or the watermark.

        :return: whether a claim was written (``False``: another run holds the lease).
        """
        return self._run(self.protocol.claim())

    def confirm(self) -> None:
        """
        Finish taking the lease; while another run holds it, wait (up to ``wait`` seconds from the
        first claim) and claim again, then raise :class:`WatermarkConflictError` naming the holder.
        """
        left_behind = self.protocol.left_behind
        held = self._run(self.protocol.confirm())
        if self.protocol.left_behind > left_behind:
            log.warning(
                "Another run's claim landed over this one's after its holder record was written, which came too "
                "late to be taken back: the holder record %r stays until it expires or a holder of the lease writes "
                "over it, and keeps runs out meanwhile (a Variable write took more than 80 %% of lease_settle, "
                "%.2f s).",
                self.protocol.holder_key,
                self.settle,
            )
        if not held:
            raise self._conflict()
        if self.protocol.inherited is not None:
            log.info("Took the lease %r over from a killed try of this task.", self.key)
        else:
            log.info("Took the lease %r.", self.key)

    def acquire(self) -> None:
        """Take the lease, waiting up to ``wait`` seconds for another holder: :meth:`claim`, then :meth:`confirm`."""
        self.claim()
        self.confirm()

    def _conflict(self) -> WatermarkConflictError:
        claim = self.seen or {}
        return WatermarkConflictError(
            f"the watermark is leased by {claim.get('owner', 'another run')} until {claim.get('expires', '?')}; "
            f"this run waited {self.wait:.0f} s. Two runs publishing the same rows would duplicate them, so this "
            f"one stops without publishing. Retry after that run ends (or delete the Variables {self.key!r} and "
            f"{self.protocol.holder_key!r} if that run is known to be dead)."
        )

    def renew(self) -> None:
        """Extend the lease; raise :class:`WatermarkConflictError` if another run took it over."""
        self._held_or_raise(self._run(self.protocol.renew()))

    def keep(self) -> None:
        """
        Before moving the watermark: renew the lease unless its claim is recent enough that no run can
        have taken it over (no request then); raise :class:`WatermarkConflictError` if one did.
        """
        self._held_or_raise(self._run(self.protocol.keep()))

    def _held_or_raise(self, held: bool) -> None:
        if not held:
            raise WatermarkConflictError(
                f"the lease {self.key!r} was taken over by {(self.seen or {}).get('owner', 'nobody')} while this "
                f"run was publishing (did it run longer than the lease ttl without renewing?); the watermark is "
                f"left to that run."
            )

    def release(self) -> None:
        """Give the lease up if this run holds it, or withdraw a claim that did not go on."""
        self._run(self.protocol.release())
