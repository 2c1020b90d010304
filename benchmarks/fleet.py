"""
The fleet benchmark: N tabs x M rows through the fleet DAG (``dags/sheets_fleet.py``) on Airflow's
CeleryExecutor with two Celery workers, under one Sheets read quota shared through Redis.

Run from the repository root (needs the test extra, Java for Apache Kafka, and Debian's
``postgresql`` and ``redis-server``, as ``scripts/services.sh`` installs them)::

    .venv/bin/python benchmarks/fleet.py --tabs 20 100 --rows 1000 --quota 60

One run starts Apache Kafka (or Tansu, ``--broker tansu``), the local Sheets server (enforcing
``--quota`` reads a minute, as Google does per user, and counting every read), Redis, a PostgreSQL
database of its own on the cluster of ``scripts/services.sh`` and the deployment of
``tests/celery_airflow.py`` (API server, scheduler, dag-processor, two Celery workers of two task
processes each). Then, for each N, the catalogue is N tabs in spreadsheets of ten tabs each (one
``"*"`` entry and one topic per spreadsheet), and one run of the fleet DAG publishes them all.

Reported per N, from the run's and its task instances' times (REST API) and the Sheets server's
count: the fleet's rows/s (rows over the run's wall time), the Sheets reads, their rate and the
busiest minute against the quota, 429s, and per mapped task: the wait from queued to started (the
scheduler and Celery), the task's wall time, the time inside ``execute`` (its summary's
``duration_s``) and the rest (the worker's overhead: the task process, Airflow's bookkeeping,
waiting for the quota is inside ``execute``). Results go to ``benchmarks/results/fleet/``.
This is a benchmark, not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "fleet"
TABS_PER_SPREADSHEET = 10
DAG_ID = "sheets_fleet"


def _prepare_environment(home: Path) -> None:
    """An Airflow home of its own (the fleet DAG alone in its dags folder); set before Airflow is imported."""
    dags = home / "dags"
    dags.mkdir(parents=True)
    shutil.copy(REPO / "dags" / "sheets_fleet.py", dags / "sheets_fleet.py")
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
    )
    sys.path.insert(0, str(REPO))


def _fleet(sheets_server: Any, broker: Any, tabs: int, rows: int) -> list[dict[str, Any]]:
    """``tabs`` tabs of ``rows`` rows in spreadsheets of ten, and the catalogue: one ``"*"`` entry each."""
    from airflow_provider_sheets.devkit.sample import FORMS_HEADER, forms_rows

    tag = uuid.uuid4().hex[:6]
    data = [FORMS_HEADER, *forms_rows(rows)]
    catalogue = []
    for book in range(math.ceil(tabs / TABS_PER_SPREADSHEET)):
        spreadsheet_id, topic = f"fleet-{tag}-{book}", f"fleet-{tag}-{book}"
        count = min(TABS_PER_SPREADSHEET, tabs - book * TABS_PER_SPREADSHEET)
        sheets_server.create_spreadsheet(
            spreadsheet_id, {f"Form Responses {i + 1}": data for i in range(count)}, row_count=rows + 1
        )
        broker.create_topics([topic], partitions=3)
        catalogue.append(
            {"spreadsheet_id": spreadsheet_id, "sheet_name": "*", "topic": topic, "api_endpoint": sheets_server.url}
        )
    return catalogue


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _run_once(airflow: Any, sheets_server: Any, broker: Any, tabs: int, rows: int, quota: int) -> dict[str, Any]:
    from airflow_provider_sheets.devkit.sheets_server import busiest_window

    catalogue = _fleet(sheets_server, broker, tabs, rows)
    airflow.set_variable("sheets_catalogue", json.dumps(catalogue))
    sheets_server.set_read_quota(quota, 60.0)
    if airflow.dag(DAG_ID)["is_paused"]:
        airflow.unpause(DAG_ID)  # the scheduler creates the run of the last interval
        deadline = time.monotonic() + 120
        while not (runs := airflow.runs(DAG_ID)) and time.monotonic() < deadline:
            time.sleep(1.0)
        run_id = runs[0]["dag_run_id"]
    else:
        run_id = airflow.trigger(DAG_ID)["dag_run_id"]
    run = airflow.wait_run(DAG_ID, run_id, expect="success", timeout=3600)
    reads, rejected = list(sheets_server.read_times), sheets_server.quota_rejections
    sheets_server.set_read_quota(None)
    publish = [ti for ti in airflow.task_instances(DAG_ID, run_id) if ti["task_id"] == "publish"]
    executes = []
    for ti in publish:
        summary = airflow.xcom(DAG_ID, run_id, "publish", map_index=ti["map_index"])
        executes.append(float(summary["duration_s"]))
    walls = [_seconds(ti["start_date"], ti["end_date"]) or 0.0 for ti in publish]
    queued = [_seconds(ti["queued_when"], ti["start_date"]) or 0.0 for ti in publish]
    wall = _seconds(run["start_date"], run["end_date"]) or 0.0
    return {
        "tabs": tabs,
        "rows_per_tab": rows,
        "rows": tabs * rows,
        "run_s": round(wall, 1),
        "rows_per_s": round(tabs * rows / wall, 1) if wall else None,
        "sheets_reads": len(reads),
        "reads_per_min": round(len(reads) / wall * 60, 1) if wall else None,
        "busiest_minute": busiest_window(reads, 60.0),
        "quota_per_min": quota,
        "rejected_429": rejected,
        "hosts": sorted({ti["hostname"] for ti in publish}),
        "task_queued_to_start_s": round(statistics.mean(queued), 2),
        "task_wall_s": round(statistics.mean(walls), 2),
        "task_execute_s": round(statistics.mean(executes), 2),
        "task_overhead_s": round(statistics.mean(w - e for w, e in zip(walls, executes, strict=True)), 2),
    }


def _markdown(results: list[dict[str, Any]], broker_version: str) -> str:
    lines = [
        f"Fleet DAG on CeleryExecutor (2 workers x 2 task processes), {broker_version}, "
        f"{os.cpu_count()} cores; one Sheets read quota shared through Redis.",
        "",
        "| tabs | rows | run s | rows/s | Sheets reads | reads/min | busiest minute / quota | 429s | "
        "per task: queued→start s | wall s | execute s | overhead s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['tabs']} | {r['rows']:,} | {r['run_s']} | {r['rows_per_s']:,} | {r['sheets_reads']} | "
            f"{r['reads_per_min']} | {r['busiest_minute']} / {r['quota_per_min']} | {r['rejected_429']} | "
            f"{r['task_queued_to_start_s']} | {r['task_wall_s']} | {r['task_execute_s']} | {r['task_overhead_s']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tabs", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--rows", type=int, default=1000, help="rows per tab")
    parser.add_argument("--quota", type=int, default=60, help="Sheets reads a minute (Google: 60 per user)")
    parser.add_argument("--broker", choices=["kafka", "tansu"], default="kafka")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="sheets-fleet-bench-"))
    _prepare_environment(work / "airflow")
    from airflow_provider_sheets.devkit import postgres
    from airflow_provider_sheets.devkit.broker import make_broker
    from airflow_provider_sheets.devkit.redis_server import RedisServer
    from airflow_provider_sheets.devkit.sheets_server import SheetsServer
    from tests.celery_airflow import CeleryAirflow

    kwargs = {"data_dir": work / "kafka"} if args.broker == "kafka" else {}
    broker = make_broker(args.broker, log_path=work / "broker.log", **kwargs).start()
    redis = RedisServer(log_path=work / "redis.log").start()
    results = []
    database = f"sheets_fleet_bench_{uuid.uuid4().hex[:8]}"
    postgres.admin(f'CREATE DATABASE "{database}"')
    try:
        with SheetsServer() as sheets_server:
            airflow = CeleryAirflow(
                work,
                broker.bootstrap_servers,
                sheets_server.url,
                postgres.url(database),
                f"redis://{redis.host}:{redis.port}",
                args.quota,
            )
            airflow.start()
            try:
                for tabs in args.tabs:
                    result = _run_once(airflow, sheets_server, broker, tabs, args.rows, args.quota)
                    results.append(result)
                    sys.stderr.write(json.dumps(result) + "\n")
            finally:
                airflow.stop()
    finally:
        redis.stop()
        broker.stop()
        postgres.admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "fleet.json").write_text(json.dumps({"broker": broker.version, "results": results}, indent=2))
    table = _markdown(results, broker.version)
    (args.results / "fleet.md").write_text(table)
    sys.stdout.write(table)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
