"""Fixtures of the pipeline's tests."""

from __future__ import annotations

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.accel import forked

MODES = [pytest.param(False, id="in-task")]
if forked.available():
    MODES.append(pytest.param(True, id="forked"))


@pytest.fixture(params=MODES)
def mapping_process(request, monkeypatch):
    """The ``mapping_process`` setting; the process's switches (the environment) left at their defaults."""
    monkeypatch.delenv(accel.PLAIN_ENV, raising=False)
    return request.param
