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
from typing import Any

from airflow_provider_sheets.model.quota import WINDOW, SlidingWindow

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
    """Waits, before each request, until it fits in the sliding window of :attr:`budget` requests a minute."""

    def __init__(self, budget: int, window: float = WINDOW) -> None:
        self.window = SlidingWindow(budget, window * (1 + MARGIN) + SLACK)
        self.lock = threading.Lock()

    @property
    def budget(self) -> int:
        return self.window.budget

    def acquire(self, logger: Any = None) -> float:
        """Take one request of the budget, waiting as long as it takes; return the seconds waited."""
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


def pacer(conn_id: str, budget: int) -> ReadPacer:
    """
    The process's pacer for the connection ``conn_id``; when callers ask different budgets, the
    smallest holds (none of them is exceeded).
    """
    with _registry_lock:
        found = _pacers.get(conn_id)
        if found is None:
            found = _pacers[conn_id] = ReadPacer(budget, WINDOW)
        elif budget < found.budget:
            with found.lock:
                found.window.budget = budget
        return found
