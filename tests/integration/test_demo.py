"""The first of the two commands: the demo on embedded defaults, end to end, as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_or_skip

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_sheets.devkit.demo", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_demo_publishes_every_response_once_on_tansu():
    """``make demo``: pip-only (Tansu), JSON records, typed values."""
    result = _demo("--broker", "tansu")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK: 17 responses in the sheet, 17 records in Kafka, each exactly once." in result.stdout
    assert '"Rating": 1' in result.stdout, "typed: the linear-scale answer is a number"
    assert "The record of row 14 as it is in Kafka" in result.stdout


def test_the_demo_in_avro_on_apache_kafka_with_a_registry():
    """``make demo BROKER=kafka FORMAT=avro``: the records read back with confluent-kafka's AvroDeserializer."""
    require_or_skip(shutil.which("java") is not None and shutil.which("mvn") is not None, "Java and Maven")
    result = _demo("--broker", "kafka", "--value-format", "avro")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK: 17 responses in the sheet, 17 records in Kafka, each exactly once." in result.stdout
    assert "magic byte 0, schema id " in result.stdout
    assert '"How_did_you_hear_about_us":' in result.stdout, "Avro field names from the questions"
