"""The hooks' tests: a Sheets server that enforces a short quota, and a connection of each test's own."""

from __future__ import annotations

import json
import uuid

import pytest

from airflow_provider_sheets.devkit.sheets_server import SheetsServer
from airflow_provider_sheets.hooks import quota

#: a short quota period, so that a test waits seconds, not minutes
WINDOW = 2.0
BUDGET = 4


@pytest.fixture
def quota_server(monkeypatch):
    """A server enforcing BUDGET reads per WINDOW seconds, and a connection of this test's own."""
    monkeypatch.setattr(quota, "WINDOW", WINDOW)
    conn_id = f"google_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "num_retries": 0}}),
    )
    with SheetsServer() as running:
        running.conn_id = conn_id
        running.set_read_quota(BUDGET, WINDOW)
        yield running
