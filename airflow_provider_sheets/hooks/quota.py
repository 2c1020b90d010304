"""
The Sheets read budget of this process: one :class:`ReadPacer` per Google connection (one account,
one quota), shared by every reader in the process, so the operator's page prefetch, a sensor's
probe and a stream runner's catch-up together never make more read requests in a minute than the
budget. Google counts 60 read requests per minute per user (300 per project) by default; raise the
budget with the connection's ``sheets_quota_per_minute`` extra, or per task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from airflow_provider_sheets.errors import SheetsQuotaError, with_fix
from airflow_provider_sheets.hooks.shared_quota import REDIS_URL_OPTION, SharedWindow, safe_url
from airflow_provider_sheets.model.quota import WINDOW, SlidingWindow
from airflow_provider_sheets.settings import CONFIG_SECTION

log = logging.getLogger(__name__)

#: Read requests per minute when neither the task nor the connection says (Google's per-user default).
DEFAULT_QUOTA_PER_MINUTE = 60
#: Waits shorter than this are not logged.
LOG_WAITS_FROM = 1.0
#: The window is kept this much longer (a second a minute, and 50 ms), for the time a request takes
#: from here to Google's counter: requests are counted when they leave, Google counts them arriving.
MARGIN = 1 / 60
SLACK = 0.05


class ReadPacer:
    """
    Waits, before each request, until it fits in the sliding window of :attr:`budget` requests a
    minute: this process's own, or with ``shared`` the fleet's, kept in Redis
    (:mod:`~airflow_provider_sheets.hooks.shared_quota`).
    """

    def __init__(self, budget: int, window: float = WINDOW, shared: SharedWindow | None = None) -> None:
        self.window = SlidingWindow(budget, window * (1 + MARGIN) + SLACK)
        self.lock = threading.Lock()
        self.shared = shared

    @property
    def budget(self) -> int:
        return self.window.budget

    def acquire(self, logger: Any = None) -> float:
        """Take one request of the budget, waiting as long as it takes; return the seconds waited."""
        if self.shared is not None:
            return self._acquire_shared(self.shared, logger)
        waited = 0.0
        with self.lock:
            delay = self.window.delay(time.monotonic())
            if delay >= LOG_WAITS_FROM:
                (logger or log).info(
                    "Waiting %.1f s for Sheets read quota: %s requests in the last %.0f s, budget %s.",
                    delay,
                    self.window.used(time.monotonic()),
                    self.window.window,
                    self.budget,
                )
            while delay > 0:
                time.sleep(delay)
                waited += delay
                delay = self.window.delay(time.monotonic())
            self.window.record(time.monotonic())
        return waited

    def _acquire_shared(self, shared: SharedWindow, logger: Any) -> float:
        waited, logged = 0.0, False
        while True:
            try:
                take = shared.take(self.window.budget, self.window.window)
            except SheetsQuotaError as err:
                raise with_fix(
                    err,
                    f"Start that Redis (or correct the URL), or empty {CONFIG_SECTION}.{REDIS_URL_OPTION} "
                    "so that each task paces its own requests; the watermark was not moved.",
                ) from None
            if take.wait <= 0:
                return waited
            if take.wait >= LOG_WAITS_FROM and not logged:
                (logger or log).info(
                    "Waiting %.1f s for the fleet's Sheets read quota: %s requests of %s in the last %.0f s, "
                    "budget %s (every worker, in %s).",
                    take.wait,
                    take.used,
                    shared.principal,
                    self.window.window,
                    self.window.budget,
                    safe_url(shared.url),
                )
                logged = True
            time.sleep(take.wait)
            waited += take.wait

    def after_fork(self) -> None:
        """In a forked child: locks of its own (the parent's threads may have held them); Redis reconnects."""
        self.lock = threading.Lock()
        if self.shared is not None:
            self.shared.after_fork()

    def times(self) -> list[float]:
        """The requests counted (``time.monotonic()``, the same clock in a forked child)."""
        with self.lock:
            return list(self.window.times)

    def adopt(self, times: list[float]) -> None:
        """Count the requests a forked child made."""
        with self.lock:
            self.window.merge(times)


_pacers: dict[str, ReadPacer] = {}
_registry_lock = threading.Lock()


def pacer(conn_id: str, budget: int, shared: Callable[[], SharedWindow | None] | None = None) -> ReadPacer:
    """
    The process's pacer for the connection ``conn_id``; when callers ask different budgets, the
    smallest holds (none of them is exceeded).

    :param shared: makes the fleet's window when the process has no pacer for ``conn_id`` yet
        (``None``: this process paces itself).
    """
    with _registry_lock:
        found = _pacers.get(conn_id)
        if found is None:
            found = _pacers[conn_id] = ReadPacer(budget, WINDOW, shared() if shared else None)
        elif budget < found.budget:
            with found.lock:
                found.window.budget = budget
        return found
