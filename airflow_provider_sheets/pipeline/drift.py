"""What ``on_drift`` does about a drift finding, for the operator and the stream runner alike."""

from __future__ import annotations

import logging

from airflow_provider_sheets.errors import DriftError
from airflow_provider_sheets.model.checks import CONTINUE, FAIL, RECONCILE, REPUBLISH

__all__ = ["CONTINUE", "FAIL", "RECONCILE", "REPUBLISH", "on_drift"]


def on_drift(policy: str, finding: str, fail_fix: str, log: logging.Logger | logging.LoggerAdapter) -> bool:
    """
    Apply ``policy`` to a drift ``finding``: ``fail`` raises :class:`DriftError` (the finding, then
    ``fail_fix``: the caller's words for what to do); ``continue``, ``republish`` and ``reconcile`` log
    a warning.

    :return: whether to read every row again (``republish`` or ``reconcile``).
    """
    if policy == FAIL:
        raise DriftError(f"{finding} {fail_fix}")
    log.warning("%s on_drift=%r: going on.", finding, policy)
    return policy in (REPUBLISH, RECONCILE)
