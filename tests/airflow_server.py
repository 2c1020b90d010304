"""
A real Airflow for the integration tests, started when a test first needs it.

``airflow standalone`` runs the scheduler (LocalExecutor), the dag-processor, the API server and
the triggerer as child processes of one process group, on the metadata DB that ``tests/conftest.py``
configured (SQLite by default, PostgreSQL with ``SHEETS_TEST_DB=postgres``), with the conftest's
``AIRFLOW_HOME`` and dags folder (``dags/*.py`` and ``tests/dags/*.py``), on a free loopback port.
Connections ``google_cloud_default`` (anonymous) and ``kafka_default`` point at the session's local
Sheets server and broker; the Variable ``sheets_api_endpoint`` comes from the environment, the
per-test Variables (``sheets_spreadsheet_id``, ``sheets_topic``) are DB Variables set through the
REST API. The simple auth manager lets every request in as admin, so neither the REST API nor the
UI needs a login.

One server serves consecutive tests; it is stopped after a test when the next one does not use it
(other tests share the metadata DB and the CPU) and started again, on a new port, when a later
test does. Everything the processes print goes to ``airflow-standalone.log`` in the session's
temporary directory; its tail is shown when startup fails, when a run fails, and after a failed
test (:func:`airflow_log_on_failure`). Bind the fixtures in a test module with::

    import tests.airflow_server as harness

    airflow_server = harness.airflow_server
    example_dag = harness.example_dag
    airflow_log_on_failure = harness.airflow_log_on_failure
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest

from airflow_provider_sheets.devkit.broker import free_port
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB

#: Seconds to wait for all four components to be healthy and the example DAG to be parsed.
STARTUP_TIMEOUT = float(os.environ.get("SHEETS_AIRFLOW_STARTUP_TIMEOUT", "300"))
EXAMPLE_DAG = "sheets_to_kafka"
EXAMPLE_TASK = "publish_new_responses"
#: the topic the example AssetWatcher DAG (dags/sheets_watch_topic.py) watches, created with the server
WATCHED_TOPIC = "form-responses"
#: seconds an Airflow process waits for the SQLite database's lock (five processes and the CLI
#: write to one file) before its statement fails; a REST call waits longer, for the server's answer
SQLITE_LOCK_TIMEOUT = 60
FINISHED = ("success", "failed")
ACTIVE = ("queued", "running")

# fields of a structured task-log line that are shown first or repeat what the caller knows
_LOG_FIELDS_SHOWN_OR_KNOWN = frozenset(
    {
        "event",
        "timestamp",
        "level",
        "logger",
        "loc",
        "sources",
        "filename",
        "lineno",
        "map_index",
        "task_id",
        "run_id",
        "ti_id",
        "try_number",
        "dag_id",
    }
)
_SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def wait_exited(pids: list[int], timeout: float = 60.0) -> None:
    """Wait until the processes ``pids`` have exited (a zombie has: only its parent's reaping is left)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"task process {pid} still runs {timeout:.0f} s after its run ended")
            time.sleep(0.1)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


class AirflowServer:
    """
    ``airflow standalone`` and a small client for its REST API (``/api/v2``); it can be stopped
    and started again (on a new port).

    :param log_path: the file that receives the processes' output (appended to).
    :param bootstrap_servers: the broker of the ``kafka_default`` connection.
    :param sheets_url: the Sheets endpoint, as the Variable ``sheets_api_endpoint``.
    """

    #: what ``/monitor/health`` must call healthy
    components: tuple[str, ...] = ("metadatabase", "scheduler", "triggerer", "dag_processor")

    def __init__(self, log_path: Path, bootstrap_servers: str, sheets_url: str) -> None:
        self.log_path = log_path
        self.bootstrap_servers = bootstrap_servers
        self.sheets_url = sheets_url
        self.process: subprocess.Popen[bytes] | None = None
        #: the API server's base URL (also the UI's), and the processes' environment (also for CLI calls)
        self.url = ""
        self.env: dict[str, str] = {}
        self.http = httpx.Client()

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = STARTUP_TIMEOUT, wait_for: tuple[str, ...] = (EXAMPLE_DAG,)) -> AirflowServer:
        """Start ``airflow standalone`` and wait until it is healthy and ``wait_for`` DAGs are parsed."""
        if self.running:
            return self
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = server_env(self.url, port, self.bootstrap_servers, self.sheets_url)
        self.http.close()
        self.http = httpx.Client(base_url=f"{self.url}/api/v2", timeout=SQLITE_LOCK_TIMEOUT + 30.0)
        # the shell leads the process group; if this test process dies without stopping the server
        # (killed by a CI timeout...), it takes the group down, so no Airflow outlives the session
        watchdog = (
            f'"$0" -m airflow standalone & child=$!; '
            f"while kill -0 {os.getpid()} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 2; done; "
            "kill -TERM 0"
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["sh", "-c", watchdog, sys.executable],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.env["AIRFLOW_HOME"],
                start_new_session=True,
            )
        self._wait_started(time.monotonic() + timeout, wait_for)
        return self

    def _wait_started(self, deadline: float, wait_for: tuple[str, ...]) -> None:
        """Wait until the components are healthy and ``wait_for`` DAGs parsed; stop everything if not."""
        try:
            self._wait_healthy(deadline)
            self._wait_more(deadline)
            for dag_id in wait_for:
                self.wait_dag(dag_id, timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def _wait_more(self, deadline: float) -> None:
        """What else a deployment waits for (beyond ``/monitor/health``) before it is started."""

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"airflow standalone exited with code {self.process.returncode}\n{self.log_tail()}")

    def _wait_healthy(self, deadline: float) -> None:
        last = "no answer"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                response = self.http.get("/monitor/health", timeout=5.0)
                health = response.json() if response.status_code == 200 else {}
                last = f"HTTP {response.status_code}: {response.text[:500]}"
                if health and all((health.get(c) or {}).get("status") == "healthy" for c in self.components):
                    return
            except (httpx.HTTPError, ValueError) as err:
                last = repr(err)
            time.sleep(1.0)
        raise AssertionError(f"Airflow did not become healthy in time (last health answer: {last})\n{self.log_tail()}")

    def check_health(self) -> None:
        """Fail (with the log) when a component stopped heartbeating: standalone does not restart it."""
        health = self.get("/monitor/health")
        states = {name: health.get(name) for name in self.components}
        unhealthy = {name: state for name, state in states.items() if (state or {}).get("status") != "healthy"}
        if unhealthy:
            raise AssertionError(f"Airflow components are unhealthy: {unhealthy}\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL what is left after 20 s."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        # the children (scheduler, workers, task supervisors...) share the group
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    def log_tail(self, lines: int = 150) -> str:
        """The last lines the Airflow processes printed."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            return f"(no Airflow log at {self.log_path}: {err})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}\n--- end of Airflow log ---"

    def wait_executor_event(self, ti_id: str, timeout: float = 60.0) -> str:
        """
        Wait until the scheduler has processed the executor's report of the attempt ``ti_id`` ending.

        A deferring task's worker exits after the task is already ``deferred``; until the scheduler
        has taken that exit in, a trigger that fires makes Airflow 3.3 mark the resumed attempt
        failed (apache/airflow#72716). Returns the scheduler's log line.
        """
        deadline = time.monotonic() + timeout
        needle = f"ti_id={ti_id}"
        while time.monotonic() < deadline:
            self._check_alive()
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                if "TaskInstance Finished:" in line and needle in line:
                    return line
            time.sleep(0.5)
        raise AssertionError(f"no executor event for task instance {ti_id} within {timeout:.0f} s\n{self.log_tail()}")

    # -- REST API --------------------------------------------------------------------------------------

    def request(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        """One REST call; an unexpected status raises with the response body."""
        response = self.http.request(method, path, **kwargs)
        if response.status_code not in expect:
            raise AssertionError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:2000]}")
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None).json()

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` with the server's environment; a non-zero exit raises with its output."""
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.env["AIRFLOW_HOME"],
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
            )
        return result

    def backfill(self, dag_id: str, from_date: datetime, to_date: datetime, attempts: int = 5) -> dict[str, Any]:
        """
        ``airflow backfill create`` (the documented way); returns the new backfill.

        On SQLite, a CLI transaction that read before writing fails at once with "database is
        locked" when another component committed in between (WAL snapshot): that is retried.
        """
        known = set()
        for earlier in self.get("/backfills", dag_id=dag_id)["backfills"]:
            known.add(earlier["id"])
            if earlier.get("completed_at") is None:
                # the scheduler marks a finished backfill complete only every 30 s; one at a time per DAG
                self.request("PUT", f"/backfills/{earlier['id']}/cancel", expect=(200, 409))
        args = ["backfill", "create", "--dag-id", dag_id, "--from-date", from_date.isoformat()]
        args += ["--to-date", to_date.isoformat()]
        # After a lock error the CLI deletes the runs it had committed; a scheduler already working on
        # them dies of it (ObjectDeletedError). A paused DAG's runs are left alone until it is unpaused.
        was_paused = self.dag(dag_id)["is_paused"]
        self.pause(dag_id)
        try:
            for attempt in range(1, attempts + 1):
                try:
                    self.cli(*args)
                    break
                except AssertionError as err:
                    if "database is locked" not in str(err) or attempt == attempts:
                        raise
                created = [b for b in self.get("/backfills", dag_id=dag_id)["backfills"] if b["id"] not in known]
                if created:  # it was committed before the error
                    break
                time.sleep(0.5 * attempt)
        finally:
            if not was_paused:
                self.unpause(dag_id)
        created = [b for b in self.get("/backfills", dag_id=dag_id)["backfills"] if b["id"] not in known]
        assert len(created) == 1, created
        return created[0]

    # DAGs

    def dag(self, dag_id: str) -> dict[str, Any]:
        return self.get(f"/dags/{dag_id}/details")

    def wait_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``; fails with the import errors otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            response = self.http.get(f"/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            time.sleep(1.0)
        errors = self.get("/importErrors").get("import_errors", [])
        details = "\n".join(f"{e.get('filename')}: {e.get('stack_trace', '')[-1500:]}" for e in errors) or "none"
        raise AssertionError(
            f"DAG {dag_id!r} was not parsed within {timeout:.0f} s; import errors: {details}\n{self.log_tail()}"
        )

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def unpause(self, dag_id: str) -> None:
        self.set_paused(dag_id, False)

    def pause(self, dag_id: str) -> None:
        self.set_paused(dag_id, True)

    def reset_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Delete ``dag_id`` (its runs too) and wait until its file is parsed again: it comes back new and paused."""
        fileloc = self.dag(dag_id)["fileloc"]
        self.request("DELETE", f"/dags/{dag_id}", expect=(200, 204))
        os.utime(fileloc)  # a changed file is parsed at the next refresh, not after min_file_process_interval
        return self.wait_dag(dag_id, timeout=timeout)

    # runs

    def trigger_response(
        self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None, **body: Any
    ) -> httpx.Response:
        """``POST /dags/{dag_id}/dagRuns`` as is (for tests of rejected requests)."""
        payload: dict[str, Any] = {"logical_date": logical_date, **body}
        if conf is not None:
            payload["conf"] = conf
        return self.http.post(f"/dags/{dag_id}/dagRuns", json=payload)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
        """Trigger a manual run; returns the new run (``run_id``, ``conf``, ``state``...)."""
        response = self.trigger_response(dag_id, conf, **body)
        if response.status_code != 200:
            raise AssertionError(f"triggering {dag_id} -> HTTP {response.status_code}: {response.text[:2000]}")
        return response.json()

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")

    def runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        params.setdefault("limit", 100)
        return self.get(f"/dags/{dag_id}/dagRuns", **params)["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")["task_instances"]

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}")

    def wait_run(
        self, dag_id: str, run_id: str, timeout: float = 120.0, expect: str | None = "success"
    ) -> dict[str, Any]:
        """
        Wait until a run has finished; with ``expect``, fail (with the task logs) on another outcome.

        A task instance going to ``up_for_retry`` counts as a failure at once (the example DAG
        retries with minutes of delay).

        It returns only once the processes of the run's tasks have exited: a task process goes on
        writing after its task is marked done (Airflow pushes the operator's extra links then), and
        on SQLite a REST write of the test landing at that moment waits for the database's lock in
        the API server's event loop, which the task's request needs to commit: both stall until the
        lock times out.
        """
        deadline = time.monotonic() + timeout
        next_health_check = time.monotonic() + 15
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self._check_alive()
            if time.monotonic() >= next_health_check:
                next_health_check = time.monotonic() + 15
                self.check_health()
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED:
                break
            if expect == "success":
                retrying = [t for t in self.task_instances(dag_id, run_id) if t["state"] == "up_for_retry"]
                if retrying:
                    raise AssertionError(
                        f"run {run_id} of {dag_id}: task {retrying[0]['task_id']} failed and is up for retry\n"
                        + self.describe_run(dag_id, run_id)
                    )
            time.sleep(0.5)
        else:
            raise AssertionError(
                f"run {run_id} of {dag_id} did not finish within {timeout:.0f} s (state {run.get('state')})\n"
                + self.describe_run(dag_id, run_id)
                + "\n"
                + self.log_tail(80)
            )
        if expect is not None and run["state"] != expect:
            raise AssertionError(
                f"run {run_id} of {dag_id} ended {run['state']}, expected {expect}\n"
                + self.describe_run(dag_id, run_id)
            )
        wait_exited([task["pid"] for task in self.task_instances(dag_id, run_id) if task.get("pid")])
        return run

    def describe_run(self, dag_id: str, run_id: str, logs_of_successes: bool = True) -> str:
        """
        Task states and the task logs of a run (for failure messages); without
        ``logs_of_successes``, only the logs of the tasks that did not succeed (a wide mapped run).
        """
        parts = []
        try:
            for ti in self.task_instances(dag_id, run_id):
                index = ti.get("map_index", -1)
                name = ti["task_id"] if index == -1 else f"{ti['task_id']}[{index}]"
                parts.append(f"task {name}: {ti['state']} (try {ti.get('try_number')}, host {ti.get('hostname')})")
                if ti["state"] == "success" and not logs_of_successes:
                    continue
                for try_number in range(1, (ti.get("try_number") or 0) + 1):
                    parts.append(self.task_log(dag_id, run_id, ti["task_id"], try_number, index))
        except (AssertionError, httpx.HTTPError) as err:
            parts.append(f"(could not read the task instances: {err})")
        return "\n".join(parts)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """A task attempt's log as text (a mapped task's by its ``map_index``)."""
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}"
        params = {"full_content": "true", **({"map_index": str(map_index)} if map_index != -1 else {})}
        response = self.http.get(path, params=params, headers={"Accept": "application/json"})
        if response.status_code != 200:
            return f"(log of {task_id} try {try_number}: HTTP {response.status_code} {response.text[:300]})"
        content = response.json().get("content")
        if isinstance(content, str):
            return content
        lines = [f"--- log of {task_id} (map index {map_index}) try {try_number} ---"]
        for entry in content or []:
            if isinstance(entry, dict):
                extra = {k: v for k, v in entry.items() if k not in _LOG_FIELDS_SHOWN_OR_KNOWN}
                line = f"{entry.get('timestamp', '')} {entry.get('level', '')} {entry.get('event', '')}"
                lines.append(f"{line} {extra}" if extra else line)
            else:
                lines.append(str(entry))
        return "\n".join(lines)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """A task's XCom value (JSON-decoded); a mapped task's by its ``map_index``."""
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
        params = {"deserialize": "true", "map_index": str(map_index)}
        value = self.request("GET", path, params=params).json()["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    # Variables

    def set_variable(self, key: str, value: str) -> None:
        response = self.http.post("/variables", json={"key": key, "value": value})
        if response.status_code == 409:
            self.request("PATCH", f"/variables/{quote(key, safe='')}", json={"key": key, "value": value})
        elif response.status_code not in (200, 201):
            raise AssertionError(f"POST /variables {key} -> HTTP {response.status_code}: {response.text[:500]}")

    def get_variable(self, key: str) -> str | None:
        response = self.http.get(f"/variables/{quote(key, safe='')}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise AssertionError(f"GET /variables/{key} -> HTTP {response.status_code}: {response.text[:500]}")
        return response.json()["value"]

    def get_json_variable(self, key: str) -> dict[str, Any] | None:
        value = self.get_variable(key)
        return None if value is None else json.loads(value)

    def delete_variable(self, key: str) -> None:
        self.request("DELETE", f"/variables/{quote(key, safe='')}", expect=(204, 404))


def loaded_conftest(config: pytest.Config) -> Any:
    """
    The ``tests/conftest.py`` module as pytest loaded it.

    ``tests`` is not a package, so ``from tests.conftest import ...`` would import the file a second
    time under another name and run its set-up again (a new ``AIRFLOW_HOME``, a new PostgreSQL
    database name in the environment).
    """
    path = Path(__file__).resolve().parent / "conftest.py"
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) and Path(plugin.__file__).resolve() == path:
            return plugin
    raise AssertionError(f"{path} is not loaded as a conftest")


def server_env(url: str, port: int, broker_servers: str, sheets_url: str) -> dict[str, str]:
    """The environment of the Airflow processes: the conftest's settings plus the server's."""
    env = os.environ.copy()
    env.update(
        {
            # standalone starts its components as `airflow ...`: this interpreter's
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": _SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            # the log servers default to fixed ports; two sessions on one machine must not clash
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
                {
                    "conn_type": "google_cloud_platform",
                    "extra": {"is_anonymous": True, "num_retries": 2, "sheets_quota_per_minute": 0},
                }
            ),
            "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(
                {"conn_type": "kafka", "extra": {"bootstrap.servers": broker_servers}}
            ),
            # the example AssetWatcher's consumer (its trigger subscribes with the connection's group.id)
            "AIRFLOW_CONN_KAFKA_WATCH": json.dumps(
                {
                    "conn_type": "kafka",
                    "extra": {
                        "bootstrap.servers": broker_servers,
                        "group.id": "sheets_watch_topic",
                        "auto.offset.reset": "earliest",
                    },
                }
            ),
            "AIRFLOW_VAR_SHEETS_API_ENDPOINT": sheets_url,
            "AIRFLOW__SHEETS_TO_KAFKA__KAFKA_UI_TOPIC_URL": "http://kafka-ui.test/ui/clusters/local/all-topics/{topic}",
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
        }
    )
    conn = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if conn.startswith("sqlite") and "timeout=" not in conn:
        # wait for the lock rather than fail after SQLite's 5 s
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"{conn}{'&' if '?' in conn else '?'}timeout={SQLITE_LOCK_TIMEOUT}"
    return env


# One server per session, however many test modules bind the fixtures (a fixture bound in two
# modules is two fixtures to pytest). It is stopped after a test when the next test does not use
# it (other tests share the metadata DB and the CPU), and started again when a later one does.
_SESSION: dict[str, Any] = {}


def _next_test_uses_airflow(request) -> bool:
    session = request.session
    if session.shouldstop or session.shouldfail:
        return False
    items = session.items
    try:
        following = items[items.index(request.node) + 1 :]
    except ValueError:
        return False
    return bool(following) and "airflow_server" in following[0].fixturenames


@pytest.fixture
def airflow_server(request, airflow_db, broker, sheets_server, tmp_path_factory) -> Iterator[AirflowServer]:
    """``airflow standalone`` on the session's DB, broker and Sheets server (see the module doc)."""
    server = _SESSION.get("server")
    if server is None:
        log_path = tmp_path_factory.mktemp("airflow") / "airflow-standalone.log"
        server = _SESSION["server"] = AirflowServer(log_path, broker.bootstrap_servers, sheets_server.url)
        atexit.register(server.stop)  # also after an interrupted session
        broker.create_topics([WATCHED_TOPIC], partitions=1)
    server.start()
    yield server
    if not _next_test_uses_airflow(request):
        server.stop()


@pytest.fixture(autouse=True)
def airflow_log_on_failure(request) -> Iterator[None]:
    """After a failed test that used the server, print the tail of the Airflow log to the terminal."""
    failed_before = request.session.testsfailed
    yield
    server: AirflowServer | None = _SESSION.get("server")
    if request.session.testsfailed == failed_before or server is None or "airflow_server" not in request.fixturenames:
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")
    context = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with context:
        sys.stderr.write(f"\n{request.node.nodeid} failed; Airflow log:\n{server.log_tail(120)}\n")


class ExampleDag:
    """
    Controls the example DAG ``sheets_to_kafka`` for one test at a time.

    The DAG is scheduled every 15 minutes and reads its sheet and topic from Variables, so a
    scheduled run falling in the middle of a test would publish that test's rows. Between tests,
    the Variables point at a *parking* sheet (a header, no rows) and topic; :meth:`use` waits
    until no run is active and the next scheduled run is at least ``quiet`` seconds away before
    pointing the Variables at the test's sheet.
    """

    dag_id = EXAMPLE_DAG
    task_id = EXAMPLE_TASK

    def __init__(self, server: AirflowServer, sheets_server: Any, broker: Any) -> None:
        self.server = server
        self.parking_sheet = f"parking-{uuid.uuid4().hex[:8]}"
        self.parking_topic = f"parking-{uuid.uuid4().hex[:8]}"
        sheets_server.create_spreadsheet(self.parking_sheet, {FORMS_TAB: [FORMS_HEADER]})
        broker.create_topics([self.parking_topic], partitions=1)

    def park(self) -> None:
        """Point the Variables at the parking sheet and topic."""
        self.server.set_variable("sheets_spreadsheet_id", self.parking_sheet)
        self.server.set_variable("sheets_topic", self.parking_topic)

    def seconds_to_next_scheduled_run(self) -> float | None:
        run_after = _parse_time(self.server.dag(self.dag_id).get("next_dagrun_run_after"))
        return None if run_after is None else (run_after - _now()).total_seconds()

    def active_runs(self) -> list[dict[str, Any]]:
        return [run for run in self.server.runs(self.dag_id) if run["state"] in ACTIVE]

    def cleanup(self) -> None:
        """After a test: park, end the backfills, and fail the runs a failed test left running."""
        self.park()
        if self.server.http.get(f"/dags/{self.dag_id}").status_code == 404:
            return
        for backfill in self.server.get("/backfills", dag_id=self.dag_id)["backfills"]:
            if backfill.get("completed_at") is None:
                self.server.request("PUT", f"/backfills/{backfill['id']}/cancel", expect=(200, 409))
        for run in self.active_runs():
            if run["run_type"] != "scheduled":
                path = f"/dags/{self.dag_id}/dagRuns/{quote(run['dag_run_id'], safe='')}"
                self.server.request("PATCH", path, json={"state": "failed"})

    def quiet(self, quiet: float, timeout: float = 300.0) -> None:
        """Park, unpause, and wait for a window of ``quiet`` seconds without scheduled runs or active runs."""
        deadline = time.monotonic() + timeout
        while self.active_runs() and time.monotonic() < deadline:
            # a run's task writing (XCom, Variables) while park() writes the Variables stalled the
            # api-server on SQLite for 60 s: let it finish first
            time.sleep(1.0)
        self.park()
        if self.server.dag(self.dag_id)["is_paused"]:
            self.server.unpause(self.dag_id)
        deadline = time.monotonic() + quiet + timeout
        while time.monotonic() < deadline:
            until_next = self.seconds_to_next_scheduled_run()
            # a run_after in the past: the scheduler is about to create that run
            if until_next is not None and until_next > quiet and not self.active_runs():
                return
            time.sleep(1.0)
        raise AssertionError(f"no quiet window of {quiet:.0f} s for {self.dag_id}\n{self.server.log_tail(60)}")

    def use(self, spreadsheet_id: str, topic: str, quiet: float = 90.0) -> None:
        """Wait for a quiet window, then point the DAG's Variables at this sheet and topic."""
        self.quiet(quiet)
        self.server.set_variable("sheets_spreadsheet_id", spreadsheet_id)
        self.server.set_variable("sheets_topic", topic)

    def trigger(self, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.server.trigger(self.dag_id, conf)

    def run_and_wait(self, conf: dict[str, Any] | None = None, expect: str = "success") -> tuple[dict, Any]:
        """Trigger a manual run, wait for it, and return the run and the task's XCom summary."""
        run = self.trigger(conf)
        run = self.server.wait_run(self.dag_id, run["dag_run_id"], expect=expect)
        summary = self.server.xcom(self.dag_id, run["dag_run_id"], self.task_id) if expect == "success" else None
        return run, summary


@pytest.fixture
def example_dag(airflow_server, sheets_server, broker) -> Iterator[ExampleDag]:
    """The example DAG ``sheets_to_kafka`` with its parking sheet (see :class:`ExampleDag`)."""
    control = _SESSION.get("example_dag")
    if control is None:
        control = _SESSION["example_dag"] = ExampleDag(airflow_server, sheets_server, broker)
    yield control
    if airflow_server.running:
        control.cleanup()
