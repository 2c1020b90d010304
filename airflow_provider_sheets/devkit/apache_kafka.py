"""
Apache Kafka (KRaft, one combined broker+controller node) as a local process, from Maven Central.

The broker's runtime classpath is fetched once with Maven (``maven/kafka-broker.xml``, the version
pinned there) into a cache folder: ``$SHEETS_KAFKA_CACHE``, else ``.cache/`` of the checkout, else
``~/.cache/airflow-provider-sheets``. A log directory is formatted with the storage tool and kept
across :meth:`ApacheKafkaBroker.stop` and a new :meth:`~ApacheKafkaBroker.start`, so a test can kill
the JVM and restart it on the same data.

Settings are those of a one-node cluster (replication factors 1, ``min.insync.replicas=1``,
topic auto-creation off) plus a log cleaner that runs every second, so compaction can be observed.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from airflow_provider_sheets.devkit.broker_process import BrokerProcess, free_port

log = logging.getLogger(__name__)

_POM = Path(__file__).resolve().parent / "maven" / "kafka-broker.xml"
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.state.name = state.change.logger
logger.state.level = warn
"""


def kafka_version(pom: Path | None = None) -> str:
    """The Apache Kafka version pinned in a devkit pom (default: the broker's)."""
    pom = pom or _POM
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if not found:
        raise RuntimeError(f"no <kafka.version> in {pom}")
    return found.group(1)


def display_name(version: str | None = None) -> str:
    """How the broker is named in logs and reports: ``Apache Kafka 4.4.0 (KRaft)``."""
    return f"Apache Kafka {version or kafka_version()} (KRaft)"


def cache_root() -> Path:
    if os.environ.get("SHEETS_KAFKA_CACHE"):
        return Path(os.environ["SHEETS_KAFKA_CACHE"])
    checkout = _POM.parents[3]
    if (checkout / "pyproject.toml").is_file() and os.access(checkout, os.W_OK):
        return checkout / ".cache"
    return Path.home() / ".cache" / "airflow-provider-sheets"


def java_available() -> bool:
    return shutil.which("java") is not None


def classpath(version: str | None = None, pom: Path | None = None, name: str = "kafka") -> Path:
    """
    The folder of the jars of a devkit pom (default: the broker's), fetched with Maven on first use.

    :param name: the cache folder's prefix (``kafka-<version>``, ``connect-<version>``).
    :raises FileNotFoundError: Java or Maven is missing (says which and how to get it).
    """
    pom = pom or _POM
    version = version or kafka_version(pom)
    libs = cache_root() / f"{name}-{version}" / "libs"
    done = libs / ".complete"
    if done.is_file():
        return libs
    if not java_available():
        raise FileNotFoundError("Apache Kafka needs Java 17+ on PATH (`java`); Debian: apt-get install openjdk-17-jre")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FileNotFoundError(
            f"the Apache Kafka {version} jars are not in {libs} and Maven (`mvn`) is not on PATH to fetch them; "
            "Debian: apt-get install maven"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    log.info("fetching the Apache Kafka %s classpath with Maven into %s", version, libs)
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        output = result.stdout[-3000:] + result.stderr[-2000:]
        raise RuntimeError(f"mvn could not fetch Apache Kafka {version}:\n{output}")
    (staging / ".complete").write_text(version)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def _cluster_id() -> str:
    """A Kafka ``Uuid`` as the storage tool wants it: 16 random bytes, URL-safe base64, no padding.

    It may start with ``-``, so it is passed as ``--cluster-id=…``, never as a separate argument.
    """
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class ApacheKafkaBroker(BrokerProcess):
    """
    One Apache Kafka node (``process.roles=broker,controller``) on free loopback ports.

    :param data_dir: the log directory (default: a new temporary one, removed by :meth:`cleanup`).
    :param version: the Kafka version (default: the one pinned in the pom).
    :param heap: the JVM heap (``-Xmx``).
    :param overrides: more ``server.properties`` settings, e.g. ``{"broker.session.timeout.ms": "2000"}``.
    :param controller: join this node's cluster as a broker-only node (``node_id`` 2, 3, …) instead
        of starting a cluster of one: the way to have replicas that can fall out of the ISR.
    """

    kind = "kafka"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        version: str | None = None,
        heap: str = "768m",
        overrides: dict[str, str] | None = None,
        controller: ApacheKafkaBroker | None = None,
        node_id: int = 1,
    ) -> None:
        super().__init__(host, port, log_path)
        self.kafka_version: str = version or (controller.kafka_version if controller else kafka_version())
        self.controller = controller
        self.node_id = node_id
        self.controller_port: int = controller.controller_port if controller else free_port(host)
        self.cluster_id: str = controller.cluster_id if controller else _cluster_id()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="apache-kafka-"))
        self.heap = heap
        self.overrides = dict(overrides or {})

    @property
    def version(self) -> str:
        return display_name(self.kafka_version)

    def server_properties(self) -> dict[str, str]:
        listener = f"PLAINTEXT://{self.host}:{self.port}"
        controller_host = self.controller.host if self.controller else self.host
        props = {
            "process.roles": "broker" if self.controller else "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": f"1@{controller_host}:{self.controller_port}",
            "listeners": listener if self.controller else f"{listener},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": listener,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.backoff.ms": "1000",
        }
        props.update(self.overrides)
        return props

    def _java(self, main: str, *args: str, libs: Path) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _prepare(self) -> None:
        libs = classpath(self.kafka_version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        level = os.environ.get("SHEETS_KAFKA_LOG_LEVEL", "INFO")
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2.format(level=level))
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in self.server_properties().items()))
        if (self.data_dir / "logs" / "meta.properties").is_file():
            return  # formatted before: a restart on the same data
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}", "-c", str(config), libs=libs
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def _command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.data_dir / "server.properties"), libs=classpath(self.kafka_version))

    def cleanup(self) -> None:
        """Remove the log directory when this launcher made it."""
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()
