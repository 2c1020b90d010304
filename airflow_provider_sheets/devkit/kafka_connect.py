"""
A Kafka Connect standalone worker with a ``FileStreamSink`` (Apache Kafka's ``connect-runtime``,
``connect-json`` and ``connect-file`` from Maven Central, see ``maven/kafka-connect.xml``): the
consumer of record of the ``connect_json`` value format. It reads a topic with the ``JsonConverter``
(``schemas.enable=true``) and writes each record's value, as Connect sees it, as one line of a file;
a record it cannot convert stops its task (``errors.tolerance=none``).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from airflow_provider_sheets.devkit.apache_kafka import classpath
from airflow_provider_sheets.devkit.broker_process import stop_process

_POM = Path(__file__).with_name("maven") / "kafka-connect.xml"


class FileSinkWorker:
    """
    One standalone worker process sinking ``topic`` into ``<work>/out.txt``.

    :param json_keys: read keys with the ``JsonConverter`` too (``schemas.enable=true``), not as strings.
    """

    def __init__(self, bootstrap_servers: str, topic: str, work: Path, json_keys: bool = False) -> None:
        self.json_keys = json_keys
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.work = Path(work)
        self.out = self.work / "out.txt"
        self.log_path = self.work / "connect.log"
        self.process: subprocess.Popen[Any] | None = None

    def start(self) -> FileSinkWorker:
        libs = classpath(pom=_POM, name="connect")
        self.work.mkdir(parents=True, exist_ok=True)
        worker = self.work / "worker.properties"
        worker.write_text(
            f"bootstrap.servers={self.bootstrap_servers}\n"
            + (
                "key.converter=org.apache.kafka.connect.json.JsonConverter\nkey.converter.schemas.enable=true\n"
                if self.json_keys
                else "key.converter=org.apache.kafka.connect.storage.StringConverter\n"
            )
            + "value.converter=org.apache.kafka.connect.json.JsonConverter\n"
            "value.converter.schemas.enable=true\n"
            f"offset.storage.file.filename={self.work / 'offsets'}\n"
            "offset.flush.interval.ms=1000\n"
            "plugin.discovery=only_scan\n"
        )
        sink = self.work / "sink.properties"
        sink.write_text(
            "name=sheets-file-sink\n"
            "connector.class=org.apache.kafka.connect.file.FileStreamSinkConnector\n"
            "tasks.max=1\n"
            f"topics={self.topic}\n"
            f"file={self.out}\n"
            "errors.tolerance=none\n"
        )
        command = [
            "java",
            "-Xmx384m",
            "-cp",
            f"{libs}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(worker),
            str(sink),
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        return self

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def wait_lines(self, count: int, timeout: float = 90.0) -> list[str]:
        """The file's lines once it has ``count`` (or what it has when the worker died or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.lines()) >= count or (self.process is not None and self.process.poll() is not None):
                break
            time.sleep(0.25)
        return self.lines()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> FileSinkWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
