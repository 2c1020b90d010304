"""
Airflow scaled out for real: its CeleryExecutor, with Redis (Debian's ``redis-server``) as Celery's
broker and PostgreSQL as the metadata DB and Celery's result backend, and each component a process
of its own, as a deployment runs them: the API server, the scheduler, the dag-processor and two
Celery workers (``apache-airflow-providers-celery``), each worker naming itself (``w1``, ``w2``)
as the host of the task instances it runs (``[core] hostname_callable``).

Each component leads a process group of its own (a worker's group holds its pool and the task
processes), so a test can SIGKILL one worker as a machine would die. Every component stops with
the test process (a watchdog shell per group). Its output goes to ``<name>.log`` in ``log_dir``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from airflow_provider_sheets.devkit.broker import free_port
from tests.airflow_server import AirflowServer, server_env

#: the workers, by the host name they give their task instances
WORKERS = ("w1", "w2")
#: task processes per worker
CONCURRENCY = 2


def _tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (gone ones left out)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the test's workers: the worker's name (both run on one machine)."""
    return os.environ["SHEETS_WORKER_NAME"]


class CeleryAirflow(AirflowServer):
    """
    :param log_dir: where each component's output goes.
    :param database_url: a PostgreSQL database of its own (SQLAlchemy URL, psycopg2 driver).
    :param redis_url: Celery's broker (database 0); database 1 holds the fleet's quota.
    :param quota_per_minute: the ``sheets_quota_per_minute`` of ``google_cloud_default``.
    """

    #: this deployment runs no triggerer
    components = ("metadatabase", "scheduler", "dag_processor")

    def __init__(
        self,
        log_dir: Path,
        bootstrap_servers: str,
        sheets_url: str,
        database_url: str,
        redis_base_url: str,
        quota_per_minute: int,
    ) -> None:
        super().__init__(log_dir / "api-server.log", bootstrap_servers, sheets_url)
        self.log_dir = log_dir
        self.database_url = database_url
        self.redis_base_url = redis_base_url.rstrip("/")
        self.quota_per_minute = quota_per_minute
        self.groups: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def quota_redis_url(self) -> str:
        return f"{self.redis_base_url}/1"

    def _env(self, port: int) -> dict[str, str]:
        env = server_env(self.url, port, self.bootstrap_servers, self.sheets_url)
        result_backend = "db+" + self.database_url  # psycopg2, as the metadata DB (no psycopg 3 here)
        google = json.loads(env["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"])
        google["extra"]["sheets_quota_per_minute"] = self.quota_per_minute
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
                "AIRFLOW__CELERY__BROKER_URL": f"{self.redis_base_url}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CONCURRENCY),
                "AIRFLOW__SHEETS_TO_KAFKA__QUOTA_REDIS_URL": self.quota_redis_url,
                "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(google),
                # a worker that dies is noticed in seconds, not Airflow's 5 minutes
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
                "AIRFLOW__CORE__PARALLELISM": "16",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
                "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")]),
            }
        )
        return env

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self.groups) and all(process.poll() is None for process in self.groups.values())

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        watchdog = (
            f'"$0" -m airflow "$@" & child=$!; '
            f"while kill -0 {os.getpid()} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 2; done; "
            "pkill -KILL -s $$"  # the session: task processes lead process groups of their own
        )
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.groups[name] = subprocess.Popen(
                ["sh", "-c", watchdog, sys.executable, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, **(extra_env or {})},
                cwd=self.env["AIRFLOW_HOME"],
                start_new_session=True,
            )

    def start(self, timeout: float = 300.0, wait_for: tuple[str, ...] = ("sheets_fleet",)) -> CeleryAirflow:
        if self.running:
            return self
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = self._env(port)
        self.http.close()
        self.http = httpx.Client(base_url=f"{self.url}/api/v2", timeout=30.0)
        self.cli("db", "migrate", timeout=600)
        self._spawn("api-server", ["api-server", "--port", str(port), "--host", "127.0.0.1"])
        self._spawn("scheduler", ["scheduler"])
        self._spawn("dag-processor", ["dag-processor"])
        for name in WORKERS:
            self.start_worker(name)
        self._wait_started(time.monotonic() + timeout, wait_for)
        return self

    def _wait_more(self, deadline: float) -> None:
        for name in WORKERS:
            self.wait_worker_ready(name, deadline)

    def start_worker(self, name: str) -> None:
        self._spawn(
            f"worker-{name}",
            ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", str(CONCURRENCY)],
            {"SHEETS_WORKER_NAME": name, "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.celery_airflow.worker_hostname"},
        )

    def wait_worker_ready(self, name: str, deadline: float) -> None:
        log = self.log_dir / f"worker-{name}.log"
        while time.monotonic() < deadline:
            self._check_alive()
            if log.exists() and f"{name}@" in (text := log.read_text(errors="replace")) and " ready." in text:
                return
            time.sleep(1.0)
        raise AssertionError(f"Celery worker {name} did not get ready\n{self.log_tail(name=f'worker-{name}')}")

    def _check_alive(self) -> None:
        for name, process in self.groups.items():
            if process.poll() is not None and not name.startswith("worker-"):
                raise AssertionError(f"{name} exited with code {process.returncode}\n{self.log_tail(name=name)}")

    def kill_worker(self, name: str) -> None:
        """
        SIGKILL a worker's whole process tree, as a machine lost: the worker, its pool, the task
        supervisors and the task processes (which the Task SDK puts in process groups of their own).
        """
        process = self.groups[f"worker-{name}"]
        tree = _tree(process.pid)
        for member in tree:
            with contextlib.suppress(psutil.Error):
                member.kill()
        gone, alive = psutil.wait_procs(tree, timeout=10)
        assert not alive, f"worker {name}: {alive} outlived SIGKILL"
        process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM every process of every component (task processes too), SIGKILL what is left after 20 s."""
        groups, self.groups = self.groups, {}
        tree = [member for process in groups.values() for member in _tree(process.pid)]
        for member in tree:
            with contextlib.suppress(psutil.Error):
                member.terminate()
        _, alive = psutil.wait_procs(tree, timeout=20)
        for member in alive:
            with contextlib.suppress(psutil.Error):
                member.kill()
        psutil.wait_procs(alive, timeout=10)
        for process in groups.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    def log_tail(self, lines: int = 80, name: str | None = None) -> str:
        names = [name] if name else ["scheduler", *(f"worker-{w}" for w in WORKERS)]
        parts = []
        for part in names:
            path = self.log_dir / f"{part}.log"
            try:
                text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            except OSError as err:
                text = f"(no log: {err})"
            parts.append(f"--- last {lines} lines of {path} ---\n{text}")
        return "\n".join(parts)

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
        """Every attempt of a mapped task instance (the API's task instance history)."""
        from urllib.parse import quote

        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/{map_index}/tries"
        return self.get(path)["task_instances"]
