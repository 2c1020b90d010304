"""
One Sheets read budget for a fleet of workers: the sliding window of
:class:`~airflow_provider_sheets.model.quota.SlidingWindow`, kept in Redis so that every task
process of every worker counts against the same one.

Google counts read requests per minute per principal, whichever machine sends them; a budget
kept in each process (:class:`~airflow_provider_sheets.hooks.quota.ReadPacer` alone) holds for
one task, not for twenty mapped tasks on two Celery workers. With ``[sheets_to_kafka]
quota_redis_url`` set (a Celery deployment already runs Redis), each request first takes a place
in the window of its principal (the service account, else the connection), in one Lua script that
Redis runs atomically on its own clock (workers' clocks may differ): the request times older than
the window are dropped, and a place is taken only when fewer than the budget are left; otherwise
the script says how long until the oldest of them leaves the window.

Failure modes: Redis unreachable fails the request (:class:`SheetsQuotaError`, nothing read, a
retry may succeed) instead of reading unpaced; Redis restarted forgets the last minute, so the
minute after can exceed the budget once, which Google answers with 429s that the reader waits out.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_sheets.errors import SheetsConfigError, SheetsQuotaError
from airflow_provider_sheets.settings import CONFIG_SECTION

#: the Airflow setting that names the Redis of the shared budget (empty: each process paces itself)
REDIS_URL_OPTION = "quota_redis_url"
#: Redis keys: ``<prefix><principal>``, a sorted set of request ids scored by the time they were counted
KEY_PREFIX = "sheets-to-kafka:read-quota:"

#: KEYS[1] the window; ARGV budget, window (µs), a unique request id, and (tests only) the time in µs.
#: Returns ``{wait µs, requests in the window}``: a wait of 0 means the request was counted.
SCRIPT = """
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local budget = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < budget then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return {0, used + 1}
end
local oldest = redis.call('ZRANGE', KEYS[1], used - budget, used - budget, 'WITHSCORES')
return {math.max(1, tonumber(oldest[2]) + window - now), used}
"""


def configured_url() -> str:
    """``[sheets_to_kafka] quota_redis_url`` (``AIRFLOW__SHEETS_TO_KAFKA__QUOTA_REDIS_URL``), or ``""``."""
    from airflow.configuration import conf

    return (conf.get(CONFIG_SECTION, REDIS_URL_OPTION, fallback="") or "").strip()


def safe_url(url: str) -> str:
    """``url`` without its password (before the host, or a ``password=`` query parameter), for logs and errors."""
    parts = urlsplit(url)
    if parts.password is not None:
        user, _, host = parts.netloc.rpartition("@")
        url = urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


@dataclass
class Take:
    """What the window answered: ``wait`` seconds until a place is free (0: the request was counted)."""

    wait: float
    used: int


class SharedWindow:
    """
    The window of one principal in Redis (its budget and length are the caller's, per request).

    :param url: a ``redis://`` (or ``rediss://``, ``unix://``) URL.
    :param principal: whose quota it is (Google counts per user or service account).
    """

    def __init__(self, url: str, principal: str) -> None:
        self.url = url
        self.principal = principal
        self.key = KEY_PREFIX + principal
        self._client: Any = None
        self._script: Any = None
        self._pid = 0
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        """A client of this process's own (a forked child must not share its parent's socket)."""
        if self._client is None or self._pid != os.getpid():
            try:
                import redis
            except ImportError:
                raise SheetsConfigError(
                    f"{CONFIG_SECTION}.{REDIS_URL_OPTION} is set but the redis package is not installed: "
                    "pip install 'airflow-provider-sheets[fleet]' on every worker, or empty the setting."
                ) from None

            self._client = redis.Redis.from_url(self.url, socket_timeout=10, socket_connect_timeout=5)
            self._script = self._client.register_script(SCRIPT)
            self._pid = os.getpid()
        return self._script

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def take(self, budget: int, window: float, now: float | None = None) -> Take:
        """
        Count one request if it fits in ``budget`` requests a ``window`` seconds, else say how long until it would.

        :param now: the time in seconds (tests compare with the reference window); default Redis's clock.
        """
        args: list[Any] = [budget, round(window * 1e6), os.urandom(12).hex()]
        if now is not None:
            args.append(round(now * 1e6))
        with self._lock:
            script = self._connect()  # first: says what to install when redis is missing
            from redis import RedisError

            try:
                wait, used = script(keys=[self.key], args=args)
            except RedisError as err:
                raise SheetsQuotaError(
                    f"The fleet's Sheets read quota could not be taken: Redis at {safe_url(self.url)} "
                    f"({CONFIG_SECTION}.{REDIS_URL_OPTION}) answered {type(err).__name__}: {err}. Nothing was read."
                ) from None
        return Take(int(wait) / 1e6, int(used))
