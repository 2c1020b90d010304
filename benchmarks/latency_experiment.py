"""Batch layer vs speed layer: latency from a form submission to Kafka, and Sheets API requests per hour.

Runs everything locally, with no Google account and no Docker:

* a Kafka-protocol broker (``LocalBroker``) and the local Sheets v4 server (``SheetsServer``, in this
  process), with one spreadsheet per configuration so that requests can be counted per configuration;
* a writer that appends one Forms-like row to both spreadsheets ``--rate`` times a second and notes
  the wall time of each append (by row number);
* **batch**: the real ``SheetToKafkaOperator`` run by ``dag.test()`` every ``--batch-interval``
  seconds, in a worker process with its own ``AIRFLOW_HOME`` (``airflow db migrate`` is done here);
* **stream**: ``python -m airflow_provider_sheets.cli stream`` polling every ``--stream-interval``;
* a consumer that notes, per row and topic, the record's broker timestamp and the time it was seen.

Writes ``latency.md``, ``latency.json`` and ``latency.png`` to ``--out``::

    python benchmarks/latency_experiment.py --minutes 3 --rate 1.0 --batch-interval 60 \\
        --stream-interval 5 --out benchmarks/results/
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Google Sheets API read quotas (requests): per minute per user, and per minute per project.
QUOTA_PER_USER_PER_MIN = 60
QUOTA_PER_PROJECT_PER_MIN = 300

BATCH_DAG_ID = "latency_batch"
DAG_FILE = '''\
"""The batch layer of the latency experiment: one SheetToKafkaOperator, arguments from the environment."""

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

with DAG(dag_id="{dag_id}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    SheetToKafkaOperator(
        task_id="publish",
        spreadsheet_id=os.environ.get("LATENCY_BATCH_SHEET", "unset"),
        topic=os.environ.get("LATENCY_BATCH_TOPIC", "unset"),
        api_endpoint=os.environ.get("LATENCY_API_ENDPOINT") or None,
    )
'''


def arrivals(kind: str, rate: float, duration: float, seed: int) -> list[float]:
    """
    Offsets (seconds) of the appends: a Poisson process (form submissions arrive independently) or
    an evenly spaced series, both at ``rate`` per second within ``duration``.
    """
    if kind == "uniform":
        return [(i + 0.5) / rate for i in range(int(duration * rate))]
    rng = random.Random(seed)
    offsets, t = [], rng.expovariate(rate)
    while t < duration:
        offsets.append(t)
        t += rng.expovariate(rate)
    return offsets


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# --------------------------------------------------------------------------------------------------
# batch worker (a separate process: Airflow configured for the experiment's AIRFLOW_HOME)
# --------------------------------------------------------------------------------------------------


def batch_worker(work: Path) -> int:
    """Run the batch DAG once to warm up, then at every tick listed in ``start.json``."""
    events = work / "batch_events.jsonl"

    def emit(**event: Any) -> None:
        with events.open("a") as out:
            out.write(json.dumps(event) + "\n")

    spec = importlib.util.spec_from_file_location(
        "latency_dag", os.environ["AIRFLOW__CORE__DAGS_FOLDER"] + "/latency_batch.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag

    def run_once(tick: float | None) -> None:
        started = time.time()
        dag_run = dag.test()
        ended = time.time()
        ti = dag_run.get_task_instance("publish")
        summary = ti.xcom_pull(task_ids="publish") if ti is not None and ti.state == "success" else None
        emit(
            kind="run",
            tick=tick,
            started=started,
            ended=ended,
            state=str(dag_run.state),
            rows=(summary or {}).get("rows_published"),
            requests=(summary or {}).get("sheets_requests"),
        )

    run_once(None)
    emit(kind="ready")
    start_file = work / "start.json"
    while not start_file.exists():
        time.sleep(0.05)
    plan = json.loads(start_file.read_text())
    for tick in plan["ticks"]:
        delay = tick - time.time()
        if delay > 0:
            time.sleep(delay)
        run_once(tick)
    emit(kind="done")
    return 0


# --------------------------------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------------------------------


class Recorder(threading.Thread):
    """Consume both topics from the start; note each row's broker timestamp and first-seen time."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        super().__init__(name="recorder", daemon=True)
        from confluent_kafka import Consumer, TopicPartition

        self.topics = topics  # topic -> configuration name
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"latency-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 20,
            }
        )
        assignment = []
        for topic in topics:
            for partition in self.consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                assignment.append(TopicPartition(topic, partition, 0))
        self.consumer.assign(assignment)
        self.lock = threading.Lock()
        self.seen: dict[str, dict[int, dict[str, float]]] = {name: {} for name in topics.values()}
        self.copies: dict[str, dict[int, int]] = {name: {} for name in topics.values()}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            msg = self.consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            now = time.time()
            name = self.topics[msg.topic()]
            row = int(dict(msg.headers() or [])["sheets.row"])
            _, timestamp_ms = msg.timestamp()
            with self.lock:
                self.copies[name][row] = self.copies[name].get(row, 0) + 1
                self.seen[name].setdefault(row, {"broker": timestamp_ms / 1000.0, "consumed": now})
        self.consumer.close()

    def count(self, name: str) -> int:
        with self.lock:
            return len(self.seen[name])


def _wait_for(predicate, timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(poll)


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _requests(server, spreadsheet_id: str, start: int = 0, end: int | None = None) -> dict[str, int]:
    needle = f"/spreadsheets/{spreadsheet_id}"
    with server._lock:  # the recorded list is appended to by server threads
        records = list(server.requests[start:end])
    counts: dict[str, int] = {}
    for record in records:
        if record.kind != "token" and needle in record.path:
            counts[record.kind] = counts.get(record.kind, 0) + 1
    return counts


def _status_text(line: str) -> str:
    """The message of the runner's ``Stopped: …`` log line, without the timestamp and logger name."""
    text = line[line.index("Stopped:") :]
    return text.split(" [airflow_provider_sheets", 1)[0].strip()


def _summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_s": round(percentile(latencies, 50), 3),
        "p95_s": round(percentile(latencies, 95), 3),
        "max_s": round(max(latencies), 3) if latencies else math.nan,
        "mean_s": round(statistics.fmean(latencies), 3) if latencies else math.nan,
    }


def run_experiment(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_provider_sheets.devkit.airflow_home import airflow_env, migrate_command
    from airflow_provider_sheets.devkit.broker import LocalBroker
    from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, as_submitted, forms_rows
    from airflow_provider_sheets.devkit.sheets_server import SheetsServer

    work = Path(tempfile.mkdtemp(prefix="latency-experiment-"))
    home = work / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True)
    (dags / "latency_batch.py").write_text(DAG_FILE.format(dag_id=BATCH_DAG_ID))
    env = {
        **airflow_env(home, dags),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    print(f"work dir {work}")
    migrate = subprocess.Popen(
        migrate_command(),  # in the background while the broker and the Sheets server start
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    batch_sid, stream_sid = f"batch-{uuid.uuid4().hex[:8]}", f"stream-{uuid.uuid4().hex[:8]}"
    batch_topic, stream_topic = f"latency-batch-{uuid.uuid4().hex[:6]}", f"latency-stream-{uuid.uuid4().hex[:6]}"
    worker = runner = None
    try:
        with LocalBroker(log_path=work / "tansu.log") as broker, SheetsServer() as server:
            broker.create_topics([batch_topic, stream_topic], partitions=3)
            for sid in (batch_sid, stream_sid):
                server.create_spreadsheet(sid, {FORMS_TAB: [FORMS_HEADER]}, title=f"Latency experiment {sid}")
            env.update(
                {
                    "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
                        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True}}
                    ),
                    "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(
                        {"conn_type": "kafka", "extra": {"bootstrap.servers": broker.bootstrap_servers}}
                    ),
                    "LATENCY_BATCH_SHEET": batch_sid,
                    "LATENCY_BATCH_TOPIC": batch_topic,
                    "LATENCY_API_ENDPOINT": server.url,
                }
            )
            _, migrate_err = migrate.communicate(timeout=300)
            if migrate.returncode != 0:
                raise RuntimeError(f"airflow db migrate failed:\n{migrate_err.decode()[-2000:]}")
            print("Airflow DB migrated; starting the batch worker and the streaming runner")
            with open(work / "batch_worker.log", "wb") as out:
                worker = subprocess.Popen(
                    [sys.executable, __file__, "--batch-worker", str(work)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            stream_log = work / "stream.log"
            with open(stream_log, "wb") as out:
                runner = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "airflow_provider_sheets.cli",
                        "stream",
                        "--spreadsheet-id",
                        stream_sid,
                        "--topic",
                        stream_topic,
                        "--bootstrap-servers",
                        broker.bootstrap_servers,
                        "--api-endpoint",
                        server.url,
                        "--poll-interval",
                        str(args.stream_interval),
                        "--status-interval",
                        "30",
                    ],  # fmt: skip
                    env=env,
                    cwd=REPO,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            _wait_for(
                lambda: (
                    any(e["kind"] == "ready" for e in _events(work / "batch_events.jsonl")) or worker.poll() is not None
                ),
                180,
                "the batch worker's warm-up run",
            )
            if worker.poll() is not None:
                raise RuntimeError(f"the batch worker exited:\n{(work / 'batch_worker.log').read_text()[-3000:]}")
            _wait_for(
                lambda: "Streaming " in stream_log.read_text(errors="replace") or runner.poll() is not None,
                60,
                "the streaming runner's start",
            )
            if runner.poll() is not None:
                raise RuntimeError(f"the streaming runner exited:\n{stream_log.read_text()[-3000:]}")
            recorder = Recorder(broker.bootstrap_servers, {batch_topic: "batch", stream_topic: "stream"})
            recorder.start()

            duration = args.minutes * 60
            t0 = time.time() + 1.0
            t_end = t0 + duration - 1.0
            ticks = [t0 + k * args.batch_interval for k in range(math.ceil((t_end - t0) / args.batch_interval) + 1)]
            (work / "start.json").write_text(json.dumps({"t0": t0, "ticks": ticks}))
            time.sleep(max(0.0, t0 - time.time()))
            start_index = len(server.requests)
            print(
                f"appending {args.rate} rows/s ({args.arrivals}) for {duration:.0f} s; batch runs at +"
                + ", +".join(f"{tick - t0:.0f}" for tick in ticks)
                + f" s; stream polls every {args.stream_interval} s"
            )

            appended: dict[int, float] = {}
            for i, offset in enumerate(arrivals(args.arrivals, args.rate, t_end - t0, args.seed)):
                target = t0 + offset
                delay = target - time.time()
                if delay > 0:
                    time.sleep(delay)
                cells = as_submitted(forms_rows(1, start=i)[0])
                first_batch, _ = server.append_rows(batch_sid, FORMS_TAB, [cells])
                first_stream, _ = server.append_rows(stream_sid, FORMS_TAB, [cells])
                appended[first_stream] = time.time()
                if first_batch != first_stream:
                    raise RuntimeError("the two spreadsheets went out of step")
            time.sleep(max(0.0, t_end - time.time()))
            stream_window_end = len(server.requests)
            window = time.time() - t0
            print(f"appended {len(appended)} rows; waiting for the last batch run and the stream to deliver them")

            _wait_for(
                lambda: (
                    any(e["kind"] == "done" for e in _events(work / "batch_events.jsonl")) or worker.poll() is not None
                ),
                args.batch_interval + 300,
                "the last batch run",
                poll=0.5,
            )
            _wait_for(
                lambda: recorder.count("batch") >= len(appended) and recorder.count("stream") >= len(appended),
                120,
                "delivery of every row to both topics",
                poll=0.2,
            )
            time.sleep(1.0)  # a late duplicate would show up here
            runner.send_signal(signal.SIGTERM)
            stream_rc = runner.wait(60)
            worker.wait(60)
            recorder.stopping.set()
            recorder.join(10)
            runs = [e for e in _events(work / "batch_events.jsonl") if e["kind"] == "run" and e["tick"] is not None]
            batch_requests = _requests(server, batch_sid, start_index)
            stream_requests = _requests(server, stream_sid, start_index, stream_window_end)
            stream_status = [line for line in stream_log.read_text(errors="replace").splitlines() if "Stopped:" in line]
    finally:
        for proc in (runner, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if migrate.poll() is None:
            migrate.kill()

    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/latency_experiment.py " + " ".join(sys.argv[1:]),
        "parameters": {
            "minutes": args.minutes,
            "rate_rows_per_s": args.rate,
            "batch_interval_s": args.batch_interval,
            "stream_interval_s": args.stream_interval,
            "arrivals": args.arrivals,
            "seed": args.seed,
        },
        "rows_appended": len(appended),
        "quota": {
            "per_user_per_hour": QUOTA_PER_USER_PER_MIN * 60,
            "per_project_per_hour": QUOTA_PER_PROJECT_PER_MIN * 60,
        },
        "stream_exit_code": stream_rc,
        "stream_final_status": _status_text(stream_status[-1]) if stream_status else None,
        "batch_runs": runs,
        "configurations": {},
    }
    per_hour = {
        "batch": sum(batch_requests.values()) / max(len(runs), 1) * 3600 / args.batch_interval,
        "stream": sum(stream_requests.values()) / window * 3600,
    }
    for name, counts, interval in (
        ("batch", batch_requests, args.batch_interval),
        ("stream", stream_requests, args.stream_interval),
    ):
        seen = recorder.seen[name]
        rows = sorted(appended)
        broker_latency = [seen[r]["broker"] - appended[r] for r in rows if r in seen]
        visible_latency = [seen[r]["consumed"] - appended[r] for r in rows if r in seen]
        result["configurations"][name] = {
            "interval_s": interval,
            "rows_delivered": len(broker_latency),
            "rows_missing": len(rows) - len(broker_latency),
            "duplicates": sum(n - 1 for n in recorder.copies[name].values()),
            "latency": _summary(broker_latency),
            "visible_latency": _summary(visible_latency),
            "requests": counts,
            "requests_total": sum(counts.values()),
            "requests_per_hour": round(per_hour[name]),
            "share_of_user_quota": round(per_hour[name] / (QUOTA_PER_USER_PER_MIN * 60), 4),
            "share_of_project_quota": round(per_hour[name] / (QUOTA_PER_PROJECT_PER_MIN * 60), 4),
            "points": [
                [round(appended[r] - t0, 3), round(seen[r]["broker"] - appended[r], 3)] for r in rows if r in seen
            ],
        }
    result["batch_run_seconds"] = _summary([r["ended"] - r["started"] for r in runs])
    if args.keep_work:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return result


def markdown(result: dict[str, Any]) -> str:
    p = result["parameters"]
    lines = [
        f"Run {result['date']}: `{result['command']}` — {result['rows_appended']} rows appended at "
        f"{p['rate_rows_per_s']} rows/s ({p['arrivals']}) over {p['minutes']} min.",
        "",
        "| configuration | rows | p50 latency | p95 latency | max latency | Sheets requests (measured) "
        "| requests/hour | share of 60/min/user | share of 300/min/project |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "batch": f"batch: operator via `dag.test()` every {p['batch_interval_s']:g} s",
        "stream": f"stream: `sheets-to-kafka stream --poll-interval {p['stream_interval_s']:g}`",
    }
    for name, conf in result["configurations"].items():
        lat = conf["latency"]
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(conf["requests"].items()))
        lines.append(
            f"| {labels[name]} | {conf['rows_delivered']} | {lat['p50_s']:.2f} s | {lat['p95_s']:.2f} s "
            f"| {lat['max_s']:.2f} s | {conf['requests_total']} ({kinds}) | {conf['requests_per_hour']:,} "
            f"| {conf['share_of_user_quota']:.1%} | {conf['share_of_project_quota']:.1%} |"
        )
    batch_runs = result["batch_run_seconds"]
    confs = result["configurations"]
    lines += [
        "",
        f"Latency: append to the local Sheets server → the record's broker timestamp. Duplicates: "
        f"batch {confs['batch']['duplicates']}, stream {confs['stream']['duplicates']}; rows missing: batch "
        f"{confs['batch']['rows_missing']}, stream {confs['stream']['rows_missing']}. "
        f"A batch run (`dag.test()`, in-process) took {batch_runs['p50_s']:.1f} s at the median "
        f"(max {batch_runs['max_s']:.1f} s). Streaming runner exit code after SIGTERM: {result['stream_exit_code']}.",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"batch": "#1a73e8", "stream": "#e8710a"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, conf in result["configurations"].items():
        points = conf["points"]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        label = f"{name} ({conf['interval_s']:g} s)"
        left.scatter(xs, ys, s=8, color=colors[name], label=label)
        ordered = sorted(ys)
        right.step(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], where="post", color=colors[name],
                   label=label)  # fmt: skip
    left.set_xlabel("append time (s since start)")
    left.set_ylabel("latency to Kafka (s)")
    left.set_title("Latency of each row")
    left.legend()
    left.grid(alpha=0.3)
    right.set_xscale("log")
    right.set_xlabel("latency to Kafka (s, log scale)")
    right.set_ylabel("fraction of rows")
    right.set_title("CDF")
    right.legend(loc="lower right")
    right.grid(alpha=0.3, which="both")
    p = result["parameters"]
    fig.suptitle(
        f"Google Form row → Kafka: batch every {p['batch_interval_s']:g} s vs stream every "
        f"{p['stream_interval_s']:g} s "
        f"({result['rows_appended']} rows, {p['rate_rows_per_s']:g}/s, {result['date'][:10]})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long rows are appended (default 3)")
    parser.add_argument("--rate", type=float, default=1.0, help="rows appended per second (default 1)")
    parser.add_argument("--batch-interval", type=float, default=60.0, help="seconds between batch runs (default 60)")
    parser.add_argument("--stream-interval", type=float, default=5.0, help="stream poll interval (default 5)")
    parser.add_argument(
        "--arrivals", choices=("poisson", "uniform"), default="poisson", help="how appends are spaced (default poisson)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the Poisson arrivals (default 1)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output directory")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument("--batch-worker", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_worker:
        return batch_worker(Path(args.batch_worker))
    if args.minutes <= 0 or args.rate <= 0 or args.batch_interval <= 0 or args.stream_interval <= 0:
        parser.error("--minutes, --rate, --batch-interval and --stream-interval must be positive")

    started = time.monotonic()
    result = run_experiment(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "latency.md").write_text(markdown(result))
    plot(result, out / "latency.png")
    print(markdown(result))
    print(
        f"wrote {out / 'latency.md'}, {out / 'latency.json'}, {out / 'latency.png'} "
        f"in {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
