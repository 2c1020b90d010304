"""A throw-away Airflow for the demo and the benchmarks: its own home, dags folder and SQLite metadata DB."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def airflow_env(home: Path, dags_folder: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) pointed at an Airflow living in ``home``."""
    return {
        **(os.environ if base is None else base),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }


def migrate_command() -> list[str]:
    return [sys.executable, "-m", "airflow", "db", "migrate"]


def migrate(env: Mapping[str, str], timeout: float = 600) -> None:
    """Create the metadata DB of the Airflow that ``env`` points at; raise with its output on failure."""
    result = subprocess.run(migrate_command(), env=dict(env), capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
