"""
Apicurio Registry as a local process, from Maven Central: a real Schema Registry that speaks the
Confluent API under ``/apis/ccompat/v7``, for the ``avro`` and ``json_schema`` value formats.

Its server package (``io.apicurio:apicurio-registry-app:<version>:tar.gz:all``, the version pinned
here; 3.0.x runs on Java 17) is fetched once with Maven into the same cache folder as the Kafka jars
and unpacked there. The registry keeps its schemas in memory (H2), listens on a free loopback port,
and starts with the global compatibility level ``BACKWARD``, the Confluent registry's default.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from airflow_provider_sheets.devkit.apache_kafka import cache_root, java_available
from airflow_provider_sheets.devkit.broker_process import free_port, stop_process

log = logging.getLogger(__name__)

#: the Apicurio Registry release run here (3.0.x is built for Java 17; 3.3.x needs Java 21)
APICURIO_VERSION = "3.0.9"
#: where the Confluent-compatible API lives on an Apicurio server
CCOMPAT_PATH = "/apis/ccompat/v7"


def server_package(version: str = APICURIO_VERSION) -> Path:
    """The unpacked server (its runner jar), fetched with Maven on first use."""
    home = cache_root() / f"apicurio-{version}"
    jar = home / f"apicurio-registry-app-{version}-runner.jar"
    if jar.is_file():
        return jar
    if not java_available():
        raise FileNotFoundError(
            "Apicurio Registry needs Java 17+ on PATH (`java`); Debian: apt-get install openjdk-17-jre"
        )
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FileNotFoundError(
            f"Apicurio Registry {version} is not in {home} and Maven (`mvn`) is not on PATH to fetch it"
        )
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="apicurio-", dir=home.parent))
    artifact = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
    command = [mvn, "-B", "-q", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={staging}"]
    log.info("fetching Apicurio Registry %s with Maven into %s", version, home)
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    packages = list(staging.glob("*.tar.gz"))
    if result.returncode != 0 or not packages:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"mvn could not fetch {artifact}:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    with tarfile.open(packages[0]) as package:
        package.extractall(staging / "unpacked", filter="data")
    shutil.rmtree(home, ignore_errors=True)
    (staging / "unpacked").rename(home)
    shutil.rmtree(staging, ignore_errors=True)
    if not jar.is_file():
        raise RuntimeError(
            f"the Apicurio {version} package has no {jar.name}; found: {sorted(p.name for p in home.iterdir())}"
        )
    return jar


class ApicurioRegistry:
    """
    One Apicurio Registry process; :attr:`url` is the Confluent-compatible API's base URL.

    :param work: where its log goes.
    """

    def __init__(self, work: Path, version: str = APICURIO_VERSION) -> None:
        self.work = Path(work)
        self.version = version
        self.port = 0
        self.process: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def log_path(self) -> Path:
        return self.work / "apicurio.log"

    def start(self, timeout: float = 120.0) -> ApicurioRegistry:
        jar = server_package(self.version)
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command = [
            "java",
            "-Xmx512m",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.management.host=127.0.0.1",
            "-Dquarkus.management.port=0",
            "-jar",
            str(jar),
        ]
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=jar.parent)
        self._wait(timeout)
        self.request("PUT", "/config", {"compatibility": "BACKWARD"})
        log.info("Apicurio Registry %s at %s", self.version, self.url)
        return self

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"Apicurio Registry exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                self.request("GET", "/subjects")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"Apicurio Registry did not answer within {timeout:.0f} s:\n{self.log()[-3000:]}")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """A request to the Confluent-compatible API; its JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> ApicurioRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
