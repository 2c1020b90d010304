"""Throughput and memory benchmark of the Sheets → Kafka paths, on the local broker and Sheets server.

Run from the repository root::

    .venv/bin/python benchmarks/bench.py --rows 100000 --cols 10

One run starts a Kafka-protocol broker (Tansu) and the local Sheets v4 server, the server in its own
process so that its memory is not counted, then measures each path in its own child process:

* ``sheets_read``: ``SheetsReader.read`` of the whole tab with nothing done to the pages: the pace
  at which the local Sheets server can serve rows, a ceiling for every path that reads the sheet;
* ``raw``: rows already in memory → ``json.dumps`` → confluent-kafka (idempotent, ``linger.ms=50``),
  the raw limit of this machine; ``raw_headers`` adds the operator's ten headers (provenance and row);
* ``noop``: a task that does nothing, run through the same ``dag.test()`` harness (the RSS baseline);
* ``operator``: ``SheetToKafkaOperator.execute`` on the whole tab (first load), through ``dag.test()``
  with a migrated SQLite metadata DB, so the watermark Variable is really read and written;
* ``operator_small``: the same on a tab a tenth of the size (memory must stay flat as a sheet grows);
* ``incremental``: 100 rows appended to the big tab, then the operator again (requests, seconds);
* ``hook_async`` / ``hook_sync``: ``GSheetsHook.get_values`` of the whole tab and
  ``ProduceToTopicOperator`` with ``synchronous=False`` / ``True`` (the latter on 5,000 rows).

Results go to ``benchmarks/results/bench.json`` and ``benchmarks/results/bench.md``. This is a
benchmark, not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable
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
        elif command == "counts":
            counts: dict[str, int] = {}
            for record in server.requests:
                counts[record.kind] = counts.get(record.kind, 0) + 1
            conn.send({"counts": counts, "response_bytes": [r.response_bytes for r in server.requests]})
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
    """The Sheets side alone: ``SheetsReader.read`` of the whole tab, pages dropped as they come."""
    from airflow_provider_sheets.hooks.sheets import SheetsReader

    reader = SheetsReader(
        api_endpoint=spec["api_endpoint"], value_render_option=spec.get("value_render_option") or "FORMATTED_VALUE"
    )
    started = time.perf_counter()
    info = reader.describe(spec["spreadsheet_id"], TAB)
    header, pages = reader.read(info, 1, **({"page_size": spec["page_size"]} if spec.get("page_size") else {}))
    rows = sum(len(page.rows) for page in pages)
    return {"rows": rows, "seconds": time.perf_counter() - started, "sheets_requests": reader.requests}


def _run_dag(dag, task_id: str) -> Any:
    dag_run = dag.test()
    ti = dag_run.get_task_instance(task_id)
    if ti is None or ti.state != "success":
        raise RuntimeError(f"task {task_id} of {dag.dag_id} ended in state {getattr(ti, 'state', None)}")
    return ti.xcom_pull(task_ids=task_id)


def _child_noop(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    with DAG(dag_id="bench_noop", schedule=None, catchup=False) as dag:
        PythonOperator(task_id="task", python_callable=lambda: None)
    started = time.perf_counter()
    _run_dag(dag, "task")
    return {"rows": 0, "seconds": time.perf_counter() - started}


def _child_operator(spec: dict[str, Any]) -> dict[str, Any]:
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
    started = time.perf_counter()
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        summary = profiler.runcall(_run_dag, dag, "task")
        profiler.dump_stats(spec["profile"])
    else:
        summary = _run_dag(dag, "task")
    return {
        "rows": summary["rows_published"],
        "seconds": summary["duration_s"],
        "wall_seconds": time.perf_counter() - started,
        "sheets_requests": summary["sheets_requests"],
        "pages": summary["pages"],
        "watermark_after": summary["watermark_after"],
    }


def _hook_and_produce(spreadsheet_id, api_endpoint, topic, synchronous, limit, cols, **context) -> dict[str, Any]:
    """The plain provider path: read the whole tab with GSheetsHook, produce with ProduceToTopicOperator."""
    from airflow.providers.apache.kafka.operators.produce import ProduceToTopicOperator
    from airflow.providers.google.suite.hooks.sheets import GSheetsHook

    from airflow_provider_sheets.rows import A1Range

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
    return _run_dag(dag, "task")


_CHILDREN = {
    "read": _child_read,
    "raw": _child_raw,
    "noop": _child_noop,
    "operator": _child_operator,
    "hook": _child_hook,
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
        """CPU seconds (user + system) each helper process has used so far."""
        import psutil

        out = {}
        for name, pid in self.helpers.items():
            times = psutil.Process(pid).cpu_times()
            out[name] = times.user + times.system
        return out

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
                {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "num_retries": 2}}
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
            proc = subprocess.run(
                [sys.executable, __file__, "--child", kind, "--spec", json.dumps(spec), "--result", str(result_path)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=3600,
                cwd=REPO,
            )
        if proc.returncode or not result_path.exists():
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
        result = json.loads(result_path.read_text())
        result["helper_cpu_seconds"] = {
            helper: round(seconds - helpers_before[helper], 2) for helper, seconds in self.helper_cpu().items()
        }
        result["rows_per_s"] = round(result["rows"] / result["seconds"], 1) if result["seconds"] else None
        self.results[name] = result
        print(
            f" {result['rows']} rows in {result['seconds']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB", flush=True
        )
        return result

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
        under ``runs``; peak memory is the highest of all runs.
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
            "runs": [
                {key: result.get(key) for key in ("seconds", "rows_per_s", "cpu_seconds", "peak_rss_mb")}
                for result in runs
            ],
        }
        self.results[name] = chosen
        return chosen


def _topic(broker) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    broker.create_topics([name], partitions=3)
    return name


def run(args: argparse.Namespace) -> dict[str, Any]:

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


def _run_in(args: argparse.Namespace, work: Path, small_rows: int, wanted) -> dict[str, Any]:
    from airflow_provider_sheets.devkit.broker import LocalBroker

    bench = Bench(args, work)
    print(f"starting broker and Sheets server ({args.rows} + {small_rows} rows × {args.cols} cols) …", flush=True)
    with LocalBroker(log_path=work / "tansu.log") as broker:
        server = SheetsServerProcess(args.rows, small_rows, args.cols)
        bench.helpers = {"server": server.process.pid, "broker": broker.process.pid}
        try:
            bench.env = bench.airflow_env(broker.bootstrap_servers)
            base = {"cols": args.cols, "api_endpoint": server.url, "bootstrap": broker.bootstrap_servers}
            operator_extra = {
                "page_size": args.page_size,
                "producer_config": json.loads(args.producer_config) if args.producer_config else None,
                "value_render_option": args.value_render_option,
                "operator_kwargs": json.loads(args.operator_kwargs) if args.operator_kwargs else None,
                "profile": str(work / "operator.pstats") if args.profile else None,
            }
            if wanted("noop"):
                bench.child("noop", "noop", base)
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
                    topics.append(_topic(broker))
                    return {**operator_base, "topic": topics[-1], **({"profile": None} if run > 1 else {})}

                def server_stats(result: dict[str, Any]) -> None:
                    result["server"] = _server_stats(server)

                bench.repeated("operator", "operator", operator_spec, after=server_stats)
                if args.profile:
                    import pstats

                    pstats.Stats(operator_extra["profile"], stream=sys.stdout).sort_stats("tottime").print_stats(25)
                if wanted("incremental"):  # on top of the last run's watermark
                    first, last = server.call("append", args.rows, INCREMENTAL_ROWS)
                    server.call("reset")
                    spec = {**operator_base, "topic": topics[-1], "profile": None}
                    result = bench.child("incremental", "operator", spec)
                    result["server"] = _server_stats(server)
                    result["appended_rows"] = [first, last]
            if wanted("operator_small"):
                spec = {**base, **operator_extra, "spreadsheet_id": SMALL_ID, "topic": _topic(broker), "profile": None}
                bench.child("operator_small", "operator", spec)
        finally:
            server.stop()
    return bench.results


def _server_stats(server: SheetsServerProcess) -> dict[str, Any]:
    stats = server.call("counts")
    sizes = stats["response_bytes"]
    return {
        "requests": sum(n for kind, n in stats["counts"].items() if kind != "token"),
        "by_kind": stats["counts"],
        "max_response_bytes": max(sizes, default=0),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarize(args: argparse.Namespace, results: dict[str, Any], command: str) -> dict[str, Any]:
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
    checks: dict[str, Any] = {}
    if "operator" in results:
        operator = results["operator"]
        checks["operator_vs_hook_async >= 2.5"] = operator.get("vs_hook_async")
        checks["operator_vs_raw >= 0.7"] = operator.get("vs_raw")
        checks["operator_rss_over_noop_mb <= 100"] = operator.get("rss_over_noop_mb")
    if "operator" in results and "operator_small" in results and noop:
        big, small = results["operator"]["rss_over_noop_mb"], results["operator_small"]["rss_over_noop_mb"]
        checks["rss_over_noop big/small (flat: <= 1.2)"] = _ratio(max(big, 1.0), max(small, 1.0))
    if "incremental" in results:
        incremental = results["incremental"]
        checks["incremental_sheets_requests <= 3"] = incremental["server"]["requests"]
        checks["incremental_execute_s < 1"] = incremental["seconds"]
    return {
        "command": command,
        "rows": args.rows,
        "cols": args.cols,
        "repeat": args.repeat,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "checks": checks,
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
        "the machine's cores.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="data rows of the big tab")
    parser.add_argument("--cols", type=int, default=10, help="text columns per row")
    parser.add_argument("--only", help="comma-separated paths to run (default: all)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each throughput path (raw, raw_headers, hook_async, operator); the run of median time counts",
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
    parser.add_argument("--profile", action="store_true", help="profile the first-load operator task (cProfile)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (task logs, broker log)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where bench.json and bench.md go")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child, json.loads(args.spec), args.result)
        return
    sys.path.insert(0, str(REPO))
    python = Path(sys.executable)
    shown = os.path.relpath(python, Path.cwd()) if python.is_relative_to(Path.cwd()) else str(python)
    command = shlex.join([shown, os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])])
    results = run(args)
    report = summarize(args, results, command)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.results / "bench.md").write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
