"""
A lease on one watermark, so that overlapping runs cannot publish the same rows.

Airflow Variables are last-writer-wins with no compare-and-set, so the lease is a claim written
to the Variable ``<watermark key>.lease`` and confirmed after a settle delay: when two runs claim
at the same time, both read back the one that was written last, and only that run goes on. The
other waits (``wait`` seconds, polling) and then fails with :class:`WatermarkConflictError`
naming the holder. A lease expires ``ttl`` seconds after its last renewal (the holder renews it
while it runs), so a killed worker blocks others for at most ``ttl``; a retry of the same task in
the same DAG run takes its own lease over at once.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timezone

from airflow_provider_sheets.errors import SheetsToKafkaError

log = logging.getLogger(__name__)


class WatermarkConflictError(SheetsToKafkaError):
    """Another run holds the lease on this watermark."""


def _now() -> float:
    return time.time()


class WatermarkLease:
    """
    :param watermark_key: the watermark Variable's key; the lease lives at ``<key>.lease``.
    :param owner: who claims it, ``<dag_id>/<run_id>/<task_id>``.
    :param ttl: seconds a claim stays valid without renewal.
    :param settle: seconds between writing a claim and confirming it.
    :param wait: seconds to wait for a held lease before failing.
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

    def acquire(self) -> None:
        """Take the lease, waiting up to ``wait`` seconds for another holder."""
        deadline = _now() + self.wait
        while True:
            claim = self._read()
            if self._free_for_me(claim):
                self._write()
                time.sleep(self.settle)
                confirmed = self._read()
                if confirmed is not None and confirmed.get("token") == self.token:
                    self.held = True
                    return
                claim = confirmed
            if _now() >= deadline:
                holder = (claim or {}).get("owner", "another run")
                raise WatermarkConflictError(
                    f"the watermark is leased by {holder} until {(claim or {}).get('expires', '?')}; this run waited "
                    f"{self.wait:.0f} s. Two runs publishing the same rows would duplicate them, so this one "
                    f"stops without publishing. Retry after that run ends (or delete the Variable {self.key!r} "
                    f"if that run is known to be dead)."
                )
            log.info("Watermark leased by %s; waiting.", (claim or {}).get("owner"))
            time.sleep(min(2.0, max(0.1, deadline - _now())))

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
        """Give the lease up if this run still holds it."""
        if not self.held:
            return
        from airflow.sdk import Variable

        claim = self._read()
        if claim is not None and claim.get("token") == self.token:
            Variable.delete(self.key)
        self.held = False
