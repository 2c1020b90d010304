"""Fixtures of the unit tests: a local Sheets server of a test's own."""

from __future__ import annotations

import json

import pytest

from airflow_provider_sheets.devkit.sheets_server import SheetsServer


@pytest.fixture
def server(monkeypatch):
    """
    A Sheets server of this test's own, and an anonymous ``google_cloud_default`` connection to it:
    no client retries (a test sees every answer) and no read pacing (the server enforces no quota).
    """
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"is_anonymous": True, "num_retries": 0, "sheets_quota_per_minute": 0},
            }
        ),
    )
    with SheetsServer() as running:
        yield running
