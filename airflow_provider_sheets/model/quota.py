"""
A read budget as a sliding window (pure): no ``window`` seconds ever hold more than ``budget``
requests. Unlike a token bucket, which refills continuously and lets a full bucket burst on either
side of a minute's boundary (twice the budget within a minute), this counts the requests actually
made in the last ``window`` seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

#: Google's quota period for Sheets read requests.
WINDOW = 60.0


class SlidingWindow:
    """
    :param budget: requests allowed in any ``window`` seconds (at least 1).
    :param window: the window's length in seconds.
    """

    def __init__(self, budget: int, window: float = WINDOW) -> None:
        if budget < 1:
            raise ValueError(f"a read budget must be at least 1 request, got {budget}")
        self.budget = budget
        self.window = window
        self.times: deque[float] = deque()

    def _forget(self, now: float) -> None:
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()

    def delay(self, now: float) -> float:
        """Seconds from ``now`` until one more request fits in the budget (0: at once)."""
        self._forget(now)
        if len(self.times) < self.budget:
            return 0.0
        return self.times[len(self.times) - self.budget] + self.window - now

    def record(self, now: float) -> None:
        """Count a request made at ``now``."""
        self.times.append(now)

    def merge(self, times: Iterable[float]) -> None:
        """Count requests another copy of this window saw (a forked child's), in time order."""
        self.times = deque(sorted({*self.times, *times}))

    def used(self, now: float) -> int:
        """Requests made in the window that ends at ``now``."""
        self._forget(now)
        return len(self.times)
