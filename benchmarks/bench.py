"""Throughput and memory benchmark of the Sheets → Kafka paths, on the local broker and Sheets server.

Run from the repository root::

    .venv/bin/python benchmarks/bench.py --rows 100000 --cols 10
    .venv/bin/python benchmarks/bench.py --rows 100000 --cols 10 --broker kafka

One run starts a Kafka-protocol broker and the local Sheets v4 server, the server in its own
process so that its memory is not counted, then measures each path in its own child process.
``--broker tansu`` (the default) is the pip-only Tansu broker; ``--broker kafka`` is Apache Kafka
(a JVM, KRaft, one node; needs Java, and Maven to fetch its jars once). The paths:

* ``sheets_read``: ``SheetsReader.read`` of the whole tab with nothing done to the pages: the pace
  at which the local Sheets server can serve rows, a ceiling for every path that reads the sheet;
* ``raw``: rows already in memory → ``json.dumps`` → confluent-kafka (idempotent, ``linger.ms=50``),
  the raw limit of this machine; ``raw_headers`` adds the operator's ten headers (provenance and row);
* ``noop``: a task that does nothing, run through the same ``dag.test()`` harness in a child that
  imports the same modules: the baseline of memory (RSS over no-op) and of the whole-task figures,
  repeated like the throughput paths, after an unrecorded warm-up child (the run's first
  ``dag.test()`` writes the DAGs to the fresh metadata DB);
* ``operator``: ``SheetToKafkaOperator.execute`` on the whole tab (first load), through ``dag.test()``
  with a migrated SQLite metadata DB, so the watermark Variable is really read and written;
* ``operator_small``: the same on a tab a tenth of the size (memory must stay flat as a sheet grows);
* ``incremental``: 100 rows appended to the big tab, then the operator again (requests, seconds);
* ``hook_async`` / ``hook_sync``: ``GSheetsHook.get_values`` of the whole tab and
  ``ProduceToTopicOperator`` with ``synchronous=False`` / ``True`` (the latter on 5,000 rows).

Two kinds of time are reported. "Execute" seconds are measured inside the task: the operator's
``execute`` summary (``duration_s``), the hook path from ``get_values`` to the final flush. The
whole-task figures are what a user's task really costs: the parent times every child process
from its spawn to its exit (``time.perf_counter`` around it, CPU from ``RUSAGE_CHILDREN``, so the
child's own children count), and for the ``dag.test()`` paths subtracts the same figures of the
``noop`` child: what is left is the task's own cost beyond a task that does nothing (Python's and
Airflow's start, the imports and ``dag.test()``'s bookkeeping cancel out; the task's teardown, e.g.
freeing the hook path's rows, stays in; a repeated path's whole-process figures are the medians of
its runs). Rows/s and the ratio to ``hook_async`` are given both ways, and the incremental run as
whole-task seconds over the no-op task's.

The report records the broker and its version, and the CPU seconds of the broker process (the JVM
for Kafka; read with psutil from its pid, its children included) and of the Sheets server, during
each path and over the whole run.

Results go to ``benchmarks/results/bench.json`` and ``benchmarks/results/bench.md`` (``--results``
to write them elsewhere). This is a benchmark, not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

SPREADSHEET_ID = "bench-sheet"
SMALL_ID = "bench-sheet-small"
TAB = "Form Responses 1"
#: Empty grid rows below the data, as a new Google sheet has.
SPARE_ROWS = 1000
#: Rows appended for the incremental case.
INCREMENTAL_ROWS = 100
#: Rows sent by ``ProduceToTopicOperator(synchronous=True)`` (one flush per record is slow).
SYNC_ROWS = 5000
#: the first load in another format, against the formatted JSON one of the same run: the floor of its
#: rows/s ratio (``None``: reported, no target)
FORMAT_FLOORS: dict[str, float | None] = {
    "operator_typed": 0.8,
    "operator_avro": 0.5,
    "operator_json_schema": None,
    "operator_connect_json": None,
    "operator_cloudevents": None,
}
#: librdkafka settings of the raw-limit producer.
RAW_CONFIG = {"enable.idempotence": True, "acks": "all", "linger.ms": 50}
#: The operator's provenance headers (values of typical length), for the ``raw_headers`` path.
RAW_HEADERS = [
    ("sheets.spreadsheet_id", b"1FAIpQLSd3x9k2mXfW7vQp0aBcDeFgHiJkLmNoPqRsTuVwXyZ"),
    ("sheets.sheet_name", TAB.encode()),
    ("sheets.sheet_id", b"1234567890"),
    ("sheets.header_hash", b"0123456789abcdef0123456789abcdef"),
    ("airflow.dag_id", b"sheets_to_kafka"),
    ("airflow.run_id", b"scheduled__2026-11-02T09:00:00+00:00"),
    ("airflow.run_type", b"scheduled"),
    ("airflow.task_id", b"publish"),
    ("airflow.try_number", b"1"),
]

_QUESTIONS = [
    "Timestamp",
    "Email Address",
    "Full name",
    "How did you hear about us?",
    "Rating",
    "Which sessions did you attend?",
    "Would you recommend us?",
    "Company",
    "Country",
    "Comments",
]
_CHANNELS = ["Friend", "Meetup", "Search engine", "Newsletter", "Conference talk"]
_SESSIONS = ["Kafka basics, Airflow 3", "Streaming SQL", "Airflow 3, Sheets to Kafka", "Keynote only"]
_COUNTRIES = ["South Korea", "Germany", "Brazil", "Japan", "United States", "France"]
_COMMENTS = ["Great session, thanks!", "More hands-on labs please 🙏", "Très bien", "Slides?", "카프카 최고"]


def header(cols: int) -> list[str]:
    """Form-like question titles for ``cols`` columns."""
    return [_QUESTIONS[i] if i < len(_QUESTIONS) else f"Question {i + 1}" for i in range(cols)]


def bench_rows(start: int, count: int, cols: int) -> list[list[str]]:
    """``count`` text rows numbered from ``start`` (10 columns ≈ 370 bytes of JSON with the header)."""
    rows = []
    for n in range(start, start + count):
        cells = [
            f"11/{1 + n % 28}/2026 {n % 24}:{n % 60:02d}:{(7 * n) % 60:02d}",
            f"respondent{n}@example.com",
            f"Respondent Number {n} of the survey",
            _CHANNELS[n % 5],
            str(1 + n % 5),
            _SESSIONS[n % 4],
            "Yes" if n % 3 else "Maybe",
            f"Company {n % 997} Ltd, Seoul office",
            _COUNTRIES[n % 6],
            _COMMENTS[n % 5],
        ]
        if cols > len(cells):
            cells += [f"answer {n}-{i}" for i in range(len(cells), cols)]
        rows.append(cells[:cols])
    return rows


# ------------------------------------------------------------------------------------------------
# The Sheets server process
# ------------------------------------------------------------------------------------------------


def _sheets_server_main(conn, rows: int, small_rows: int, cols: int) -> None:
    """Serve the benchmark spreadsheets and answer the parent's commands over ``conn``."""
    from airflow_provider_sheets.devkit.sheets_server import SheetsServer

    server = SheetsServer().start()
    names = header(cols)
    server.create_spreadsheet(
        SPREADSHEET_ID, {TAB: [names, *bench_rows(0, rows, cols)]}, row_count=rows + 1 + SPARE_ROWS
    )
    server.create_spreadsheet(
        SMALL_ID, {TAB: [names, *bench_rows(0, small_rows, cols)]}, row_count=small_rows + 1 + SPARE_ROWS
    )
    # the rows live as long as the process: leave them out of the garbage collector's scans
    gc.freeze()
    conn.send(server.url)
    while True:
        command, *args = conn.recv()
        if command == "append":
            conn.send(server.append_rows(SPREADSHEET_ID, TAB, bench_rows(args[0], args[1], cols)))
        elif command == "reset":
            server.reset_stats()
            conn.send(None)
        elif command == "quota":  # Google's per-minute read quota, with its 429 body (no Retry-After)
            server.set_read_quota(args[0], 60.0)
            conn.send(None)
        elif command == "counts":
            counts: dict[str, int] = {}
            for record in server.requests:
                counts[record.kind] = counts.get(record.kind, 0) + 1
            sizes = [r.response_bytes for r in server.requests]
            conn.send({"counts": counts, "response_bytes": sizes, "quota_rejections": server.quota_rejections})
        elif command == "stop":
            server.stop()
            conn.send(None)
            return


class SheetsServerProcess:
    """The local Sheets server in a child process, driven over a pipe."""

    def __init__(self, rows: int, small_rows: int, cols: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_sheets_server_main, args=(child, rows, small_rows, cols), name="sheets-server", daemon=True
        )
        self.process.start()
        self.url: str = self._conn.recv()

    def call(self, *command: Any) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            self.call("stop")
            self.process.join(timeout=10)


# ------------------------------------------------------------------------------------------------
# Child processes (one per measured path)
# ------------------------------------------------------------------------------------------------

_DAG_FILE = '''"""DAG ids run by benchmarks/bench.py through dag.test()."""
from datetime import datetime

from airflow.sdk import DAG
from airflow.providers.standard.operators.python import PythonOperator

for _dag_id in ("bench_noop", "bench_operator", "bench_hook"):
    with DAG(dag_id=_dag_id, schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
        PythonOperator(task_id="task", python_callable=lambda: None)
'''


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """This process's CPU time, plus that of its children that ended (the mapping process)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class _ChildMemory:
    """
    The peak memory that this process's child processes (the operator's mapping process) hold
    alone: their USS (unique set size). A forked child's RSS would also count the pages it still
    shares with its parent, which are already in the parent's RSS. Reading a USS walks the
    child's page tables in the kernel (~4 ms for a child forked from a 300 MB task process):
    sampled every 0.1 s throughout, that took 0.4 CPU s from a measured 1M-row run on two cores.
    So a child is sampled every 0.1 s in its first :attr:`YOUNG` seconds, while its memory grows
    to the pages in flight, and every :attr:`INTERVAL` seconds after that.
    """

    INTERVAL = 0.5
    YOUNG = 1.5

    def __init__(self) -> None:
        import threading

        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-child-memory", daemon=True)

    def __enter__(self) -> _ChildMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        seen: dict[int, float] = {}
        interval = 0.1
        while not self._stop.wait(interval):
            total = 0
            now = time.monotonic()
            children = me.children(recursive=True)
            for child in children:
                seen.setdefault(child.pid, now)
                try:
                    total += child.memory_full_info().uss
                except psutil.Error:  # ended between listing and reading
                    continue
            self.peak_mb = max(self.peak_mb, total / 2**20)
            young = not children or any(now - seen[child.pid] < self.YOUNG for child in children)
            interval = 0.1 if young else self.INTERVAL


def _child_raw(spec: dict[str, Any]) -> dict[str, Any]:
    from confluent_kafka import Producer

    names = header(spec["cols"])
    rows = bench_rows(0, spec["rows"], spec["cols"])
    producer = Producer({"bootstrap.servers": spec["bootstrap"], **RAW_CONFIG})
    producer.list_topics(spec["topic"], timeout=10)
    acked = [0]

    def on_delivery(err, msg) -> None:
        if err is None:
            acked[0] += 1

    static = RAW_HEADERS if spec["headers"] else None
    topic = spec["topic"]
    started = time.perf_counter()
    for row_number, row in enumerate(rows, start=2):
        key = str(row_number).encode()
        value = json.dumps(dict(zip(names, row, strict=False)), ensure_ascii=False, separators=(",", ":")).encode()
        headers = [*static, ("sheets.row", key)] if static else None
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    seconds = time.perf_counter() - started
    return {"rows": acked[0], "seconds": seconds, "unacked": remaining}


def _child_read(spec: dict[str, Any]) -> dict[str, Any]:
    """The Sheets side alone: the operator's ``SheetsReader.read`` of the whole tab, pages dropped as they come."""
    from airflow_provider_sheets import accel
    from airflow_provider_sheets.hooks.sheets import SheetsConnection

    connection = SheetsConnection(api_endpoint=spec["api_endpoint"])
    reader = accel.reader(connection, spec.get("value_render_option") or "FORMATTED_VALUE")
    started = time.perf_counter()
    info = reader.describe(spec["spreadsheet_id"], TAB)
    header, pages = reader.read(info, 1, **({"page_size": spec["page_size"]} if spec.get("page_size") else {}))
    rows = sum(len(page.rows) for page in pages)
    return {"rows": rows, "seconds": time.perf_counter() - started, "sheets_requests": reader.requests}


def _run_dag(dag, task_id: str, profile: str | None = None) -> Any:
    """``dag.test()``, and the task's return value; with ``profile``, under cProfile, dumped there."""
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        try:
            return profiler.runcall(_run_dag, dag, task_id)
        finally:
            profiler.dump_stats(profile)
    dag_run = dag.test()
    ti = dag_run.get_task_instance(task_id)
    if ti is None or ti.state != "success":
        raise RuntimeError(f"task {task_id} of {dag.dag_id} ended in state {getattr(ti, 'state', None)}")
    return ti.xcom_pull(task_ids=task_id)


def _noop_dag():
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    with DAG(dag_id="bench_noop", schedule=None, catchup=False) as dag:
        PythonOperator(task_id="task", python_callable=lambda: None)
    return dag


def _operator_dag(spec: dict[str, Any]):
    from airflow.sdk import DAG

    from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

    kwargs: dict[str, Any] = {
        "spreadsheet_id": spec["spreadsheet_id"],
        "sheet_name": TAB,
        "topic": spec["topic"],
        "api_endpoint": spec["api_endpoint"],
    }
    if spec.get("page_size"):
        kwargs["page_size"] = spec["page_size"]
    if spec.get("producer_config"):
        kwargs["producer_config"] = spec["producer_config"]
    if spec.get("value_render_option"):
        kwargs["value_render_option"] = spec["value_render_option"]
    kwargs.update(spec.get("operator_kwargs") or {})
    with DAG(dag_id="bench_operator", schedule=None, catchup=False) as dag:
        SheetToKafkaOperator(task_id="task", **kwargs)
    return dag


def _child_noop(spec: dict[str, Any]) -> dict[str, Any]:
    dag = _noop_dag()
    started = time.perf_counter()
    _run_dag(dag, "task", spec.get("profile"))
    seconds = time.perf_counter() - started
    return {"rows": 0, "seconds": seconds, "dag_test_s": seconds}


def _child_operator(spec: dict[str, Any]) -> dict[str, Any]:
    dag = _operator_dag(spec)
    started = time.perf_counter()
    summary = _run_dag(dag, "task", spec.get("profile"))
    return {
        "rows": summary["rows_published"],
        "seconds": summary["duration_s"],
        "dag_test_s": time.perf_counter() - started,
        "sheets_requests": summary["sheets_requests"],
        "pages": summary["pages"],
        "watermark_after": summary["watermark_after"],
    }


def _child_warm(spec: dict[str, Any]) -> dict[str, Any]:
    """
    The incremental run in one process, as a worker that already ran a task sees it: a first no-op
    ``dag.test()`` and a first incremental one (what the first runs pay: imports, the execution API's
    app), then ``pairs`` pairs of a no-op ``dag.test()`` and an incremental one, each over
    :data:`INCREMENTAL_ROWS` rows appended (``values.append``, untimed) just before it.
    """
    from airflow.providers.google.suite.hooks.sheets import GSheetsHook

    noop, operator = _noop_dag(), _operator_dag(spec)
    hook = GSheetsHook(api_endpoint=spec["api_endpoint"])
    appended = [spec["first_row"]]

    def timed(dag, append: bool, profile: str | None = None) -> tuple[float, float | None]:
        if append:
            hook.append_values(spec["spreadsheet_id"], TAB, bench_rows(appended[-1], INCREMENTAL_ROWS, spec["cols"]))
            appended.append(appended[-1] + INCREMENTAL_ROWS)
        started = time.perf_counter()
        summary = _run_dag(dag, "task", profile)
        return time.perf_counter() - started, summary["duration_s"] if append else None

    first_noop, _ = timed(noop, False)
    first_incremental, first_execute = timed(operator, True)
    pairs = [(timed(noop, False)[0], *timed(operator, True)) for _ in range(spec["pairs"])]
    if spec.get("profile"):  # one more pair, profiled (not counted)
        timed(noop, False, f"{spec['profile']}-noop.pstats")
        timed(operator, True, f"{spec['profile']}-incremental.pstats")
    over = sorted(incremental - no_op for no_op, incremental, _ in pairs)
    return {
        "rows": INCREMENTAL_ROWS,
        "seconds": _median(execute for _, _, execute in pairs),
        "dag_test_s_over_noop": over[len(over) // 2],
        "first_dag_test_s_over_noop": first_incremental - first_noop,
        "first_execute_s": first_execute,
        "pairs": [{"noop_s": a, "incremental_s": b, "execute_s": c} for a, b, c in pairs],
    }


def _hook_and_produce(spreadsheet_id, api_endpoint, topic, synchronous, limit, cols, **context) -> dict[str, Any]:
    """The plain provider path: read the whole tab with GSheetsHook, produce with ProduceToTopicOperator."""
    from airflow.providers.apache.kafka.operators.produce import ProduceToTopicOperator
    from airflow.providers.google.suite.hooks.sheets import GSheetsHook

    from airflow_provider_sheets.model.a1 import A1Range

    started = time.perf_counter()
    hook = GSheetsHook(api_endpoint=api_endpoint)
    range_ = A1Range.rows(TAB, 1, limit + 1, cols) if limit else A1Range(TAB)
    values = hook.get_values(spreadsheet_id, str(range_))
    names, rows = values[0], values[1:]

    def producer_function():
        for row_number, row in enumerate(rows, start=2):
            yield str(row_number), json.dumps(dict(zip(names, row, strict=False)), ensure_ascii=False)

    ProduceToTopicOperator(
        task_id="produce", topic=topic, producer_function=producer_function, synchronous=synchronous
    ).execute(context)
    return {"rows": len(rows), "seconds": time.perf_counter() - started}


def _child_hook(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    with DAG(dag_id="bench_hook", schedule=None, catchup=False) as dag:
        PythonOperator(
            task_id="task",
            python_callable=_hook_and_produce,
            op_kwargs={
                "spreadsheet_id": spec["spreadsheet_id"],
                "api_endpoint": spec["api_endpoint"],
                "topic": spec["topic"],
                "synchronous": spec["synchronous"],
                "limit": spec.get("limit"),
                "cols": spec["cols"],
            },
        )
    started = time.perf_counter()
    result = _run_dag(dag, "task")
    return {**result, "dag_test_s": time.perf_counter() - started}


_CHILDREN = {
    "read": _child_read,
    "raw": _child_raw,
    "noop": _child_noop,
    "operator": _child_operator,
    "hook": _child_hook,
    "warm": _child_warm,
}


def child_main(kind: str, spec: dict[str, Any], result_path: str) -> None:
    if kind != "raw":
        # the same imports in every Airflow child, so the no-op task is a fair baseline
        import airflow.providers.apache.kafka.operators.produce  # noqa: F401
        import airflow.providers.google.suite.hooks.sheets  # noqa: F401
        import airflow.providers.standard.operators.python  # noqa: F401
        import airflow.sdk  # noqa: F401

        import airflow_provider_sheets.transfers.sheet_to_kafka  # noqa: F401
    rss_before = _peak_rss_mb()
    cpu_before = _cpu_seconds()
    with _ChildMemory() as children:
        result = _CHILDREN[kind](spec)
    result["cpu_seconds"] = round(_cpu_seconds() - cpu_before, 2)
    result["children_peak_uss_mb"] = round(children.peak_mb, 1)
    result["rss_after_imports_mb"] = round(rss_before, 1)
    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    Path(result_path).write_text(json.dumps(result))


# ------------------------------------------------------------------------------------------------
# The parent
# ------------------------------------------------------------------------------------------------


def _tree_cpu_seconds(pid: int) -> float:
    """
    CPU seconds (user + system, every thread) of process ``pid`` and of its live descendants, plus
    those of the children it already waited for: a JVM's or Tansu's, read with psutil.
    """
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        try:
            times = proc.cpu_times()
        except psutil.Error:  # ended between listing and reading
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _rusage_children_cpu() -> float:
    """CPU seconds of this process's children that ended and were waited for (theirs included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir()
        self.env: dict[str, str] = {}
        self.results: dict[str, dict[str, Any]] = {}
        #: the helper processes (Sheets server, broker) whose CPU time each path is charged with
        self.helpers: dict[str, int] = {}

    def helper_cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) each helper process has used so far, its children included."""
        return {name: _tree_cpu_seconds(pid) for name, pid in self.helpers.items()}

    def airflow_env(self, bootstrap: str) -> dict[str, str]:
        from airflow_provider_sheets.devkit.airflow_home import airflow_env, migrate

        home = self.work / "airflow"
        dags = home / "dags"
        dags.mkdir(parents=True)
        (dags / "bench_dags.py").write_text(_DAG_FILE)
        env = {
            **airflow_env(home, dags),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": self.args.log_level,
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
                {
                    "conn_type": "google_cloud_platform",
                    "extra": {"is_anonymous": True, "num_retries": 2, "sheets_quota_per_minute": self.args.quota or 0},
                }
            ),
            "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": bootstrap}}),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
        migrate(env)
        return env

    def child(self, name: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        result_path = self.work / f"{name}.json"
        log_path = self.logs / f"{name}.log"
        print(f"  {name} …", end="", flush=True)
        helpers_before = self.helper_cpu()
        with open(log_path, "wb") as log:
            # the whole child process, spawn to exit, on the same clock for every path
            cpu_before = _rusage_children_cpu()
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--child", kind, "--spec", json.dumps(spec), "--result", str(result_path)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=3600,
                cwd=REPO,
            )
            process_wall_s = time.perf_counter() - started
            process_cpu_s = _rusage_children_cpu() - cpu_before
        if proc.returncode or not result_path.exists():
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
        result = json.loads(result_path.read_text())
        result["process_wall_s"] = round(process_wall_s, 3)
        result["process_cpu_s"] = round(process_cpu_s, 2)
        result["helper_cpu_seconds"] = {
            helper: round(seconds - helpers_before[helper], 2) for helper, seconds in self.helper_cpu().items()
        }
        result["rows_per_s"] = round(result["rows"] / result["seconds"], 1) if result["seconds"] else None
        self.results[name] = result
        print(
            f" {result['rows']} rows in {result['seconds']:.2f} s (whole process {process_wall_s:.2f} s, "
            f"{process_cpu_s:.2f} CPU s), peak RSS {result['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        return result

    def paired_noop(self, label: str, spec: dict[str, Any]) -> dict[str, float]:
        """A no-op child run just before a path's run: its figures, as that run's ``noop_*`` keys."""
        result = self.child(label, "noop", {**spec, "profile": None})
        del self.results[label]
        return {f"noop_{key}": result[key] for key in _PAIRED_KEYS}

    def repeated(
        self,
        name: str,
        kind: str,
        make_spec: Callable[[int], dict[str, Any]],
        after: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """
        Run a path ``--repeat`` times, each in a fresh process (``make_spec(run)`` gives each its own
        topic), and keep the run of median time as the path's result, with every run's figures
        under ``runs``; peak memory is the highest of all runs, whole-process wall and CPU seconds
        the medians of all runs.
        """
        runs = []
        for run in range(1, self.args.repeat + 1):
            label = name if self.args.repeat == 1 else f"{name}-{run}"
            result = self.child(label, kind, make_spec(run))
            if after is not None:
                after(result)
            if label != name:
                del self.results[label]
            runs.append(result)
        median = sorted(runs, key=lambda result: result["seconds"])[len(runs) // 2]
        chosen = {
            **median,
            "peak_rss_mb": max(result["peak_rss_mb"] for result in runs),
            "children_peak_uss_mb": max(result.get("children_peak_uss_mb", 0) for result in runs),
            "runs": [{key: result.get(key) for key in _RUN_KEYS} for result in runs],
            # the whole-task figures take each of these as the median of its own runs
            "process_wall_s_median": _median(result["process_wall_s"] for result in runs),
            "process_cpu_s_median": _median(result["process_cpu_s"] for result in runs),
        }
        if all(result.get("dag_test_s") is not None for result in runs):
            chosen["dag_test_s_median"] = _median(result["dag_test_s"] for result in runs)
        self.results[name] = chosen
        return chosen


#: the whole-task figures of a run that a paired no-op run's are subtracted from
_PAIRED_KEYS = ("process_wall_s", "process_cpu_s", "dag_test_s")
#: what each run of a repeated path keeps under ``runs``
_RUN_KEYS = (
    "seconds",
    "rows_per_s",
    "cpu_seconds",
    *_PAIRED_KEYS,
    *(f"noop_{key}" for key in _PAIRED_KEYS),
    "peak_rss_mb",
    "quota",
)


def _topic(broker) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    broker.create_topics([name], partitions=3)
    return name


def run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the wanted paths: their results by name, and what the broker was and used."""

    only = set(args.only.split(",")) if args.only else None

    def wanted(name: str) -> bool:
        return only is None or name in only

    small_rows = max(args.rows // 10, 1)
    work = Path(tempfile.mkdtemp(prefix="sheets-bench-"))
    try:
        return _run_in(args, work, small_rows, wanted)
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run_in(args: argparse.Namespace, work: Path, small_rows: int, wanted) -> tuple[dict[str, Any], dict[str, Any]]:
    from airflow_provider_sheets.devkit.broker import make_broker

    bench = Bench(args, work)
    print(
        f"starting the {args.broker} broker and Sheets server ({args.rows} + {small_rows} rows × {args.cols} cols) …",
        flush=True,
    )
    with make_broker(args.broker, log_path=work / f"{args.broker}.log") as broker, contextlib.ExitStack() as closing:
        broker_info: dict[str, Any] = {
            "kind": args.broker,
            "version": broker.version,
            # what its start took (a JVM's is most of it), before any path ran
            "cpu_s_at_start": round(_tree_cpu_seconds(broker.process.pid), 2),
        }
        print(f"  {broker.version} on {broker.bootstrap_servers}", flush=True)
        server = SheetsServerProcess(args.rows, small_rows, args.cols)
        bench.helpers = {"server": server.process.pid, "broker": broker.process.pid}
        try:
            bench.env = bench.airflow_env(broker.bootstrap_servers)
            if {"avro", "json_schema"} & set((args.formats or "").split(",")):
                from airflow_provider_sheets.devkit.schema_registry import ApicurioRegistry

                registry = closing.enter_context(ApicurioRegistry(work / "registry"))
                print(f"  Apicurio Registry {registry.version} at {registry.url}", flush=True)
                connection = {"conn_type": "schema_registry", "host": registry.url}
                bench.env["AIRFLOW_CONN_SCHEMA_REGISTRY_DEFAULT"] = json.dumps(connection)
            base = {"cols": args.cols, "api_endpoint": server.url, "bootstrap": broker.bootstrap_servers}
            operator_extra = {
                "page_size": args.page_size,
                "producer_config": json.loads(args.producer_config) if args.producer_config else None,
                "value_render_option": args.value_render_option,
                "operator_kwargs": {
                    **(json.loads(args.operator_kwargs) if args.operator_kwargs else {}),
                    **({"value_format": args.value_format} if args.value_format else {}),
                }
                or None,
                "profile": str(work / "operator.pstats") if args.profile else None,
            }
            if wanted("noop"):
                # The first dag.test() of a run writes the DAG file's DAGs to the fresh metadata DB (later
                # ones find them unchanged) and meets cold caches: an unrecorded warm-up child takes that,
                # so the no-op baseline is what the other dag.test() paths see.
                bench.child("warmup", "noop", base)
                del bench.results["warmup"]
                # the baseline of the whole-task figures: repeated like the paths it is subtracted from
                noop_profile = str(work / "noop.pstats") if args.profile else None
                bench.repeated("noop", "noop", lambda run: {**base, "profile": noop_profile if run == 1 else None})
            if wanted("sheets_read"):
                spec = {**base, **operator_extra, "spreadsheet_id": SPREADSHEET_ID}
                bench.child("sheets_read", "read", spec)
            if wanted("raw"):
                bench.repeated(
                    "raw", "raw", lambda _: {**base, "rows": args.rows, "topic": _topic(broker), "headers": False}
                )
            if wanted("raw_headers"):
                bench.repeated(
                    "raw_headers",
                    "raw",
                    lambda _: {**base, "rows": args.rows, "topic": _topic(broker), "headers": True},
                )
            if wanted("hook_async"):
                bench.repeated(
                    "hook_async",
                    "hook",
                    lambda _: {**base, "spreadsheet_id": SPREADSHEET_ID, "topic": _topic(broker), "synchronous": False},
                )
            if wanted("hook_sync"):
                spec = {
                    **base,
                    "spreadsheet_id": SPREADSHEET_ID,
                    "topic": _topic(broker),
                    "synchronous": True,
                    "limit": min(SYNC_ROWS, args.rows),
                }
                bench.child("hook_sync", "hook", spec)
            if wanted("operator") or wanted("incremental"):
                operator_base = {**base, **operator_extra, "spreadsheet_id": SPREADSHEET_ID}
                topics: list[str] = []

                def operator_spec(run: int) -> dict[str, Any]:
                    # a fresh topic is a fresh watermark: every run is a first load
                    server.call("reset")
                    if args.quota:  # a fresh window too: the run's task process starts with an empty budget
                        server.call("quota", args.quota)
                    topics.append(_topic(broker))
                    return {**operator_base, "topic": topics[-1], **({"profile": None} if run > 1 else {})}

                def server_stats(result: dict[str, Any]) -> None:
                    result["server"] = stats = _server_stats(server)
                    if args.quota:
                        reads = sum(n for kind, n in stats["by_kind"].items() if kind != "token")
                        result["quota"] = {
                            "budget_per_minute": args.quota,
                            "read_requests": reads,
                            "floor_s": quota_floor_s(reads, args.quota),
                            "execute_s": result["seconds"],
                            "rejected_429": stats["rejected_429"],
                        }

                bench.repeated("operator", "operator", operator_spec, after=server_stats)
                if args.profile:
                    _print_profile(operator_extra["profile"], "tottime", 25)
                if wanted("incremental"):  # on top of the last run's watermark, each run 100 rows more
                    appended: list[list[int]] = []
                    paired: list[dict[str, float]] = []

                    def incremental_spec(run: int) -> dict[str, Any]:
                        # each run right after a no-op child of its own: machine noise that drifts over
                        # minutes (1-2 s on a 12 s child) cancels out of the pair's difference
                        paired.append(bench.paired_noop(f"incremental-noop-{run}", base))
                        appended.append(
                            list(server.call("append", args.rows + (run - 1) * INCREMENTAL_ROWS, INCREMENTAL_ROWS))
                        )
                        server.call("reset")
                        profile = str(work / "incremental.pstats") if args.profile and run == 1 else None
                        return {**operator_base, "topic": topics[-1], "profile": profile}

                    result = bench.repeated(
                        "incremental",
                        "operator",
                        incremental_spec,
                        after=lambda r: r.update(server=_server_stats(server), **paired[-1]),
                    )
                    result["appended_rows"] = appended
                    # the same in one warm process: what a worker that already ran a task pays per run
                    warm = {**operator_base, "topic": topics[-1], "cols": args.cols, "pairs": args.repeat}
                    warm["first_row"] = args.rows + args.repeat * INCREMENTAL_ROWS
                    bench.child(
                        "incremental_warm", "warm", {**warm, "profile": str(work / "warm") if args.profile else None}
                    )
                    if args.profile:
                        _print_profile(str(work / "incremental.pstats"), "cumulative", 40)
            for name, extra in _format_paths(args):  # the same first load in other formats, in the same run
                bench.repeated(name, "operator", FormatSpec(server, broker, base, operator_extra, extra))
            if wanted("operator_small"):
                spec = {**base, **operator_extra, "spreadsheet_id": SMALL_ID, "topic": _topic(broker), "profile": None}
                bench.child("operator_small", "operator", spec)
            # from the broker's start to the end of the last path (its shutdown is not counted)
            broker_info["cpu_s_total"] = round(_tree_cpu_seconds(broker.process.pid), 2)
            broker_info["cpu_s_during_paths"] = round(broker_info["cpu_s_total"] - broker_info["cpu_s_at_start"], 2)
        finally:
            server.stop()
    return bench.results, broker_info


def _print_profile(path: str, sort: str, lines: int) -> None:
    """The top ``lines`` of a child's cProfile dump (``--profile``), by ``sort``."""
    import pstats

    pstats.Stats(path, stream=sys.stdout).sort_stats(sort).print_stats(lines)


def _format_paths(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """The first-load paths of ``--typed`` and ``--formats``: their names and operator arguments."""
    paths = [("operator_typed", {"typed_values": True})] if args.typed else []
    for value_format in filter(None, (args.formats or "").split(",")):
        paths.append((f"operator_{value_format}", {"value_format": value_format, "typed_values": True}))
    return paths


class FormatSpec:
    """A first load's spec for one run of a format path: a fresh topic (a first load), the format's arguments."""

    def __init__(self, server, broker, base: dict[str, Any], extra: dict[str, Any], kwargs: dict[str, Any]) -> None:
        self.server, self.broker, self.base, self.extra = server, broker, base, extra
        self.kwargs = {**(extra["operator_kwargs"] or {}), **kwargs}

    def __call__(self, run: int) -> dict[str, Any]:
        self.server.call("reset")
        spec = {**self.base, **self.extra, "spreadsheet_id": SPREADSHEET_ID, "topic": _topic(self.broker)}
        return {**spec, "operator_kwargs": self.kwargs, "profile": None}


def _server_stats(server: SheetsServerProcess) -> dict[str, Any]:
    stats = server.call("counts")
    sizes = stats["response_bytes"]
    return {
        "requests": sum(n for kind, n in stats["counts"].items() if kind != "token"),
        "by_kind": stats["counts"],
        "max_response_bytes": max(sizes, default=0),
        "rejected_429": stats["quota_rejections"],
    }


def quota_floor_s(requests: int, budget: int) -> int:
    """
    The least time ``requests`` reads take when no 60-second window may hold more than ``budget``:
    the first ``budget`` go at once, each further ``budget`` a minute later.
    """
    return ((requests - 1) // budget) * 60 if requests > 0 else 0


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


#: the paths run through ``dag.test()`` like the no-op task, so the no-op child is their baseline
_DAG_KINDS = ("noop", "operator", "hook")


def _median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _over_noop(result: dict[str, Any], noop: dict[str, Any] | None) -> dict[str, float] | None:
    """
    What a path's whole-task figures (:data:`_PAIRED_KEYS`) exceed the no-op task's by: the median of
    each run's difference with the no-op run just before it when its runs are paired, else its
    medians minus the ``noop`` path's (``None`` without one).
    """
    runs = result.get("runs") or [result]
    if all(run.get(f"noop_{key}") is not None for run in runs for key in _PAIRED_KEYS):
        return {key: _median(run[key] - run[f"noop_{key}"] for run in runs) for key in _PAIRED_KEYS}
    if noop is None:
        return None
    return {key: _figure(result, key) - _figure(noop, key) for key in _PAIRED_KEYS}


def _figure(result: dict[str, Any], key: str) -> float:
    """A path's whole-task figure: the median of its runs when it was repeated."""
    return result.get(f"{key}_median", result[key])


def _whole_task(results: dict[str, Any]) -> None:
    """
    Add to every ``dag.test()`` path its whole-task figures: the child process's wall and CPU
    seconds and its ``dag.test()`` time over the no-op task's (:func:`_over_noop`), and rows/s on
    that wall time.
    """
    noop = results.get("noop")
    for name, result in results.items():
        if name == "noop" or result.get("dag_test_s") is None:
            continue
        over = _over_noop(result, noop)
        if over is None:
            continue
        wall = over["process_wall_s"]
        result["task_s_over_noop"] = round(wall, 3)
        result["task_cpu_s_over_noop"] = round(over["process_cpu_s"], 2)
        # the same within the child, from dag.test()'s call to its return (no interpreter start, imports)
        result["dag_test_s_over_noop"] = round(over["dag_test_s"], 3)
        result["task_rows_per_s"] = round(result["rows"] / wall, 1) if wall > 0 and result["rows"] else None
    for result in results.values():
        if "task_rows_per_s" in result:
            result["task_vs_hook_async"] = _ratio(
                result["task_rows_per_s"], results.get("hook_async", {}).get("task_rows_per_s")
            )


def summarize(
    args: argparse.Namespace, results: dict[str, Any], broker: dict[str, Any], command: str
) -> dict[str, Any]:
    def rps(name: str) -> float | None:
        return results.get(name, {}).get("rows_per_s")

    def rss(name: str) -> float | None:
        return results.get(name, {}).get("peak_rss_mb")

    noop = rss("noop")
    for result in results.values():
        if noop and "peak_rss_mb" in result:
            # the task process over the no-op task's, plus what its mapping process held alone
            result["rss_over_noop_mb"] = round(result["peak_rss_mb"] - noop + result.get("children_peak_uss_mb", 0), 1)
        result["vs_raw"] = _ratio(result.get("rows_per_s"), rps("raw"))
        result["vs_hook_async"] = _ratio(result.get("rows_per_s"), rps("hook_async"))
    _whole_task(results)
    whole_task: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    if "operator" in results:
        operator = results["operator"]
        whole_task["operator_task_rows_per_s"] = operator.get("task_rows_per_s")
        whole_task["operator_task_vs_hook_async"] = operator.get("task_vs_hook_async")
        whole_task["operator_execute_vs_hook_async"] = operator.get("vs_hook_async")
        checks["operator_vs_hook_async >= 2.5"] = operator.get("vs_hook_async")
        checks["operator whole task vs hook whole task >= 2.5"] = operator.get("task_vs_hook_async")
        checks["operator_vs_raw >= 0.7"] = operator.get("vs_raw")
        checks["operator_rss_over_noop_mb <= 100"] = operator.get("rss_over_noop_mb")
    for name, floor in FORMAT_FLOORS.items():
        if "operator" in results and name in results:
            other = results[name]
            label = f"{name} / operator rows/s" + (f" >= {floor}" if floor is not None else "")
            checks[label] = _ratio(other["rows_per_s"], results["operator"]["rows_per_s"])
            checks[f"{name}_rss_over_noop_mb <= 100"] = other.get("rss_over_noop_mb")
    if "operator" in results and "operator_small" in results and noop:
        big, small = results["operator"]["rss_over_noop_mb"], results["operator_small"]["rss_over_noop_mb"]
        checks["rss_over_noop big/small (flat: <= 1.2)"] = _ratio(max(big, 1.0), max(small, 1.0))
    if "incremental" in results:
        incremental = results["incremental"]
        checks["incremental_sheets_requests <= 3"] = incremental["server"]["requests"]
        checks["incremental_execute_s < 1"] = incremental["seconds"]
        whole_task["incremental_task_s_over_noop"] = incremental.get("task_s_over_noop")
        checks["incremental whole task over no-op s < 0.3"] = incremental.get("task_s_over_noop")
        checks["incremental dag.test() over no-op s < 0.3"] = incremental.get("dag_test_s_over_noop")
        whole_task["incremental_execute_s"] = incremental["seconds"]
    if "incremental_warm" in results:
        warm = results["incremental_warm"]
        whole_task["incremental_warm_dag_test_s_over_noop"] = round(warm["dag_test_s_over_noop"], 3)
        whole_task["incremental_warm_first_dag_test_s_over_noop"] = round(warm["first_dag_test_s_over_noop"], 3)
        checks["incremental dag.test() over no-op, warm process s < 0.3"] = round(warm["dag_test_s_over_noop"], 3)
    return {
        "command": command,
        "rows": args.rows,
        "cols": args.cols,
        "repeat": args.repeat,
        "broker": broker,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "checks": checks,
        "whole_task": whole_task,
        "results": results,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark: {report['rows']:,} rows × {report['cols']} columns",
        "",
        "```",
        report["command"],
        "```",
        "",
        _broker_line(report.get("broker", {})),
        "",
        "## Inside the task",
        "",
        "| path | rows | seconds | each run s | rows/s | × raw | × hook async | CPU s | server CPU s | broker CPU s "
        "| peak RSS MB | child USS MB | RSS over no-op MB | Sheets requests |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def cell(value: Any, fmt: str = "{}") -> str:
        return "" if value is None else fmt.format(value)

    for name, r in report["results"].items():
        requests = r.get("server", {}).get("requests", r.get("sheets_requests"))
        helpers = r.get("helper_cpu_seconds", {})
        each = " / ".join(f"{run['seconds']:.2f}" for run in r.get("runs", []))
        lines.append(
            f"| {name} | {r['rows']:,} | {r['seconds']:.2f} | {each} | {cell(r.get('rows_per_s'), '{:,.0f}')} | "
            f"{cell(r.get('vs_raw'))} | {cell(r.get('vs_hook_async'))} | {cell(r.get('cpu_seconds'))} | "
            f"{cell(helpers.get('server'))} | {cell(helpers.get('broker'))} | {r['peak_rss_mb']:.0f} | "
            f"{cell(r.get('children_peak_uss_mb'), '{:.0f}')} | "
            f"{cell(r.get('rss_over_noop_mb'), '{:.0f}')} | {cell(requests)} |"
        )
    lines += ["", "| check | measured |", "| --- | ---: |"]
    lines += [f"| {name} | {value} |" for name, value in report["checks"].items()]
    lines += _whole_task_lines(report, cell)
    lines += _quota_lines(report)
    lines += [
        "",
        f"Machine: {report['machine']['cpus']} CPUs, Python {report['machine']['python']}, load average at the end "
        + ", ".join(f"{x:.2f}" for x in report["machine"]["load_avg_at_end"])
        + f". Each throughput path ran {report['repeat']} times, each time in a fresh process and on a fresh topic; "
        "its row shows the run of median time (peak memory: the highest of its runs). "
        "Seconds are measured inside the task (the operator's `execute` summary; the hook path from "
        "`get_values` to the final flush; raw from the first produce to the final flush). Peak RSS is the "
        "child process's `ru_maxrss`; child USS is the peak memory its own children (the operator's mapping "
        "process) held alone, added to RSS over no-op; the Sheets server runs in its own process and is not "
        "counted. CPU s is the child's own and its children's (every thread, Airflow's start included); server "
        "and broker CPU s are what the Sheets server and the broker used while the path ran: all of them share "
        "the machine's cores. Broker CPU s is read with psutil from the broker's pid (for Kafka, the JVM), its "
        "children included.",
        "",
    ]
    return "\n".join(lines)


def _quota_lines(report: dict[str, Any]) -> list[str]:
    """Each run under ``--quota``: read requests, the quota floor, the time taken, the 429s answered."""
    runs = [run for run in report["results"].get("operator", {}).get("runs", []) if run.get("quota")]
    if not runs:
        return []
    lines = [
        "",
        f"## Under a read quota of {runs[0]['quota']['budget_per_minute']} requests a minute",
        "",
        "| run | read requests | quota floor s | execute s | execute / floor | 429 answered |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for number, run in enumerate(runs, start=1):
        q = run["quota"]
        lines.append(
            f"| {number} | {q['read_requests']} | {q['floor_s']} | {q['execute_s']:.1f} | "
            f"{_ratio(q['execute_s'], q['floor_s'])} | {q['rejected_429']} |"
        )
    lines += [
        "",
        "The Sheets server answers Google's 429 `RESOURCE_EXHAUSTED` once a 60-second window holds the budget; "
        "the operator paces itself to the same budget (`sheets_quota_per_minute`). The floor is the least time "
        "that many requests take under it: the first budget at once, each further budget a minute later.",
    ]
    return lines


def _broker_line(broker: dict[str, Any]) -> str:
    if not broker:
        return "Broker: not recorded."
    line = f"Broker: {broker['version']} (`--broker {broker['kind']}`)"
    if broker.get("cpu_s_total") is not None:
        line += (
            f"; its process used {broker['cpu_s_total']:.2f} CPU s from its start to the end of the last path "
            f"({broker['cpu_s_at_start']:.2f} s of it starting up, {broker['cpu_s_during_paths']:.2f} s while "
            "the paths ran, topic creation included)"
        )
    return line + "."


def _whole_task_lines(report: dict[str, Any], cell: Callable[..., str]) -> list[str]:
    """The second table: each ``dag.test()`` child process as a whole, over the no-op task's."""
    results = report["results"]
    rows = {name: r for name, r in results.items() if r.get("dag_test_s") is not None}
    if not rows:
        return []
    lines = [
        "",
        "## What a user's task really costs: the whole task process, minus the no-op task",
        "",
        "| path | rows | whole process wall s | each run wall s | whole process CPU s | wall over no-op s "
        "| CPU over no-op s | dag.test() over no-op s | rows/s on wall over no-op | × hook async, whole task "
        "| × hook async, execute only | execute s | broker CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        each = " / ".join(f"{run['process_wall_s']:.2f}" for run in r.get("runs", []))
        execute = None if name == "noop" else r["seconds"]
        lines.append(
            f"| {name} | {r['rows']:,} | {r.get('process_wall_s_median', r['process_wall_s']):.2f} | {each} | "
            f"{r.get('process_cpu_s_median', r['process_cpu_s']):.2f} | "
            f"{cell(r.get('task_s_over_noop'), '{:.2f}')} | {cell(r.get('task_cpu_s_over_noop'), '{:.2f}')} | "
            f"{cell(r.get('dag_test_s_over_noop'), '{:.2f}')} | "
            f"{cell(r.get('task_rows_per_s'), '{:,.0f}')} | {cell(r.get('task_vs_hook_async'))} | "
            f"{cell(None if name == 'noop' else r.get('vs_hook_async'))} | {cell(execute, '{:.2f}')} | "
            f"{cell(r.get('helper_cpu_seconds', {}).get('broker'))} |"
        )
    headline = report.get("whole_task", {})
    lines.append("")
    if headline.get("operator_task_rows_per_s") is not None or headline.get("operator_task_vs_hook_async"):
        lines.append(
            f"- First load, whole task: {cell(headline.get('operator_task_rows_per_s'), '{:,.0f}')} rows/s, "
            f"{cell(headline.get('operator_task_vs_hook_async'))}× the hook path measured the same way "
            f"(execute only: {cell(headline.get('operator_execute_vs_hook_async'))}×)."
        )
    if headline.get("incremental_task_s_over_noop") is not None:
        lines.append(
            f"- Incremental run ({INCREMENTAL_ROWS} rows appended): {headline['incremental_task_s_over_noop']:.2f} s "
            f"of whole task over the no-op task's ({headline['incremental_execute_s']:.2f} s inside `execute`)."
        )
    if headline.get("incremental_warm_dag_test_s_over_noop") is not None:
        warm = results["incremental_warm"]
        each = " / ".join(f"{pair['incremental_s'] - pair['noop_s']:.2f}" for pair in warm["pairs"])
        lines.append(
            f"- The same in one warm process (a no-op `dag.test()`, then an incremental one over {INCREMENTAL_ROWS} "
            f"rows appended just before, {len(warm['pairs'])} times, after a first pair): "
            f"{headline['incremental_warm_dag_test_s_over_noop']:.3f} s of `dag.test()` over the no-op's (median; "
            f"pairs {each}); `execute` {warm['seconds']:.3f} s (median). The first pair of the process: "
            f"{headline['incremental_warm_first_dag_test_s_over_noop']:.2f} s over the no-op (imports and first "
            f"connections included)."
        )
    noop = results.get("noop")
    lines += [
        "",
        "Whole process: the parent's `time.perf_counter` from spawning the child process to its exit, and its "
        "CPU seconds from `RUSAGE_CHILDREN` (the child's own children included), the same clock for every path. "
        + (
            "The no-op task's child "
            f"({noop.get('process_wall_s_median', noop['process_wall_s']):.2f} s, "
            f"{noop.get('process_cpu_s_median', noop['process_cpu_s']):.2f} CPU s: Python's and Airflow's start, "
            "the same imports, `dag.test()` of a task that does nothing; run after an unrecorded warm-up child) "
            "is subtracted, "
            if noop
            else "Without the `noop` path nothing is subtracted, "
        )
        + "so what is left is what the task itself costs, its teardown included. Each run of the incremental "
        "path comes right after a no-op run of its own, and its figures over no-op are the medians of those pairs' "
        "differences (the drift of a slow machine over minutes cancels out). × hook async compares rows/s "
        "with `hook_async` (GSheetsHook + ProduceToTopicOperator) taken the same way; execute only is the ratio "
        "of the first table. Whole-process wall and CPU s of a repeated path are the medians of its runs (each "
        "run wall s lists them all); execute s and broker CPU s are those of its run of median execute time. "
        "A wall over no-op at or below zero (noise on a small run) has no rows/s. Broker CPU s is what the "
        "broker used while the path ran.",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from airflow_provider_sheets.devkit.broker import BROKER_KINDS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="data rows of the big tab")
    parser.add_argument("--cols", type=int, default=10, help="text columns per row")
    parser.add_argument("--only", help="comma-separated paths to run (default: all)")
    parser.add_argument(
        "--broker",
        choices=BROKER_KINDS,
        default="tansu",
        help="the broker: tansu (pip-only, the default) or kafka (Apache Kafka, needs Java and Maven)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each throughput path (raw, raw_headers, hook_async, operator) and of the no-op baseline; "
        "the run of median time counts",
    )
    parser.add_argument("--page-size", type=int, help="the operator's page_size (default: its own)")
    parser.add_argument("--producer-config", help="JSON librdkafka settings passed as the operator's producer_config")
    parser.add_argument("--value-render-option", help="the operator's value_render_option")
    parser.add_argument("--operator-kwargs", help="JSON object of further SheetToKafkaOperator arguments")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="Airflow's logging level in every task (at INFO, ProduceToTopicOperator logs one line per record)",
    )
    parser.add_argument(
        "--value-format", help="the operator's value_format (json, cloudevents, connect_json) on every operator path"
    )
    parser.add_argument(
        "--typed",
        action="store_true",
        help="also run the first load with typed_values=True (operator_typed) and compare it with the formatted one",
    )
    parser.add_argument(
        "--formats",
        help="also run the first load in these value formats (comma-separated: cloudevents, connect_json, avro, "
        "json_schema; the last two start an Apicurio Registry, which needs Java) as operator_<format>",
    )
    parser.add_argument(
        "--quota",
        type=int,
        help="the Sheets server enforces this many read requests a minute (Google's 429 body) and the operator "
        "paces itself to it (sheets_quota_per_minute): the report gives the quota floor and the time taken",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the first no-op task, the first-load operator task and the first incremental run (cProfile;"
        " with --keep, their .pstats stay in the work directory)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (task logs, broker log)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where bench.json and bench.md go")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child, json.loads(args.spec), args.result)
        return
    python = Path(sys.executable)
    shown = os.path.relpath(python, Path.cwd()) if python.is_relative_to(Path.cwd()) else str(python)
    command = shlex.join([shown, os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])])
    results, broker = run(args)
    report = summarize(args, results, broker, command)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.results / "bench.md").write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
