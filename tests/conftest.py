"""Session-wide real parts: a migrated Airflow metadata DB, a Kafka-protocol broker, a Sheets v4 server.

Airflow reads its configuration when first imported, so the environment is set here, before any
test module imports it. ``SHEETS_TEST_DB=postgres`` runs the same suite on the local PostgreSQL
(a fresh database per session, dropped at the end); the default is SQLite in a temporary
``AIRFLOW_HOME``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from airflow_provider_sheets.devkit import postgres as _postgres

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_HOME = Path(tempfile.mkdtemp(prefix="sheets-airflow-home-"))
_DB_KIND = os.environ.get("SHEETS_TEST_DB", "sqlite")
_PG_DB: str | None = None

os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# dag.test() needs each DAG it runs to live in the dags folder: the example DAGs plus tests/dags.
_DAGS = _HOME / "dags"
_DAGS.mkdir()
for _dag_file in [*(REPO / "dags").glob("*.py"), *(REPO / "tests" / "dags").glob("*.py")]:
    shutil.copy(_dag_file, _DAGS / _dag_file.name)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_DAGS)
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
# one key for every process of the session (tests, workers, subprocesses): Variables are encrypted
os.environ["AIRFLOW__CORE__FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)

if _DB_KIND == "postgres":
    _PG_DB = f"sheets_test_{uuid.uuid4().hex[:10]}"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = _postgres.url(_PG_DB)
elif _DB_KIND == "sqlite":
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
else:
    raise RuntimeError(f"SHEETS_TEST_DB must be 'sqlite' or 'postgres', got {_DB_KIND!r}")


def _broker_kind() -> str:
    """``$SHEETS_TEST_BROKER``, else Apache Kafka when CI=true or Java is here, else Tansu (pip-only)."""
    from airflow_provider_sheets.devkit.apache_kafka import java_available
    from airflow_provider_sheets.devkit.broker import BROKER_KINDS

    kind = os.environ.get("SHEETS_TEST_BROKER", "")
    if kind and kind not in BROKER_KINDS:
        raise RuntimeError(f"SHEETS_TEST_BROKER must be one of {', '.join(BROKER_KINDS)}, got {kind!r}")
    if kind:
        return kind
    return "kafka" if IN_CI or java_available() else "tansu"


BROKER_KIND = _broker_kind()


def _broker_name() -> str:
    from airflow_provider_sheets.devkit.apache_kafka import display_name
    from airflow_provider_sheets.devkit.broker import TANSU_NAME

    return display_name() if BROKER_KIND == "kafka" else TANSU_NAME


def pytest_report_header(config):
    return [
        f"airflow metadata db: {_DB_KIND} ({os.environ['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']})",
        f"kafka broker: {_broker_name()} (SHEETS_TEST_BROKER={BROKER_KIND})",
    ]


def needs_apache_kafka(why: str):
    """Mark a test that only Apache Kafka gets right (``why``: what a stand-in does wrong); CI always has it."""
    return pytest.mark.skipif(BROKER_KIND != "kafka", reason=f"needs Apache Kafka: {why}")


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata database for this session."""
    if _PG_DB:
        _postgres.admin(f'CREATE DATABASE "{_PG_DB}"')
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def pytest_sessionfinish(session, exitstatus):
    if _PG_DB:
        try:
            from airflow.settings import dispose_orm

            dispose_orm()
        except Exception:  # noqa: BLE001 - best effort before dropping the database
            pass
        try:
            _postgres.admin(f'DROP DATABASE IF EXISTS "{_PG_DB}" WITH (FORCE)')
        except Exception as err:  # noqa: BLE001
            print(f"could not drop test database {_PG_DB}: {err}", file=sys.stderr)
    shutil.rmtree(_HOME, ignore_errors=True)


def _start_broker(path: Path):
    from airflow_provider_sheets.devkit.broker import make_broker

    kwargs = {"data_dir": path / "data"} if BROKER_KIND == "kafka" else {}
    return make_broker(BROKER_KIND, log_path=path / "broker.log", **kwargs).start()


@pytest.fixture(scope="session")
def broker(request, tmp_path_factory):
    """The session's broker process on free loopback ports: Apache Kafka (see :data:`BROKER_KIND`) or Tansu."""
    running = _start_broker(tmp_path_factory.mktemp("broker"))
    # once per session, in the run's log (past pytest's capture, which -q runs would keep)
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\n== kafka broker: {running.version} on {running.bootstrap_servers}", file=sys.stderr, flush=True)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def _spare_broker(tmp_path_factory):
    running = _start_broker(tmp_path_factory.mktemp("spare-broker"))
    try:
        yield running
    finally:
        running.thaw()
        running.stop()


@pytest.fixture
def spare_broker(_spare_broker):
    """
    A second broker of the session's kind for the tests that kill, stop or freeze it (one per
    session: started again, on the same data, when a test left it stopped).
    """
    if _spare_broker.process is None or _spare_broker.process.poll() is not None:
        _spare_broker.start()
    yield _spare_broker
    _spare_broker.thaw()


@pytest.fixture(scope="session")
def sheets_server():
    """The local Sheets v4 server, serving over HTTP to the unmodified Google client."""
    from airflow_provider_sheets.devkit.sheets_server import SheetsServer

    with SheetsServer() as server:
        yield server


@pytest.fixture(scope="session")
def _schema_registry(tmp_path_factory):
    import shutil

    from airflow_provider_sheets.devkit.schema_registry import ApicurioRegistry

    require_or_skip(shutil.which("java") is not None and shutil.which("mvn") is not None, "Java and Maven")
    with ApicurioRegistry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture
def schema_registry(monkeypatch, _schema_registry):
    """The session's Apicurio Registry (Confluent API, BACKWARD), as the ``schema_registry_default`` connection."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCHEMA_REGISTRY_DEFAULT",
        json.dumps({"conn_type": "schema_registry", "host": _schema_registry.url}),
    )
    return _schema_registry


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A Redis of the session (Debian's redis-server) on a free port: the fleet's quota, Celery's broker."""
    from airflow_provider_sheets.devkit.redis_server import RedisServer, redis_available

    require_or_skip(redis_available(), "redis-server (Debian package redis-server)")
    with RedisServer(log_path=tmp_path_factory.mktemp("redis") / "redis.log") as server:
        yield server


@pytest.fixture
def topic(broker):
    """A fresh topic with three partitions (the broker's default retention: seven days)."""
    name = f"responses-{uuid.uuid4().hex[:8]}"
    broker.create_topics([name], partitions=3)
    return name


@pytest.fixture
def keeping_topic(broker):
    """
    A fresh topic with three partitions that keeps records of any age (``retention.ms=-1``): the
    tests' responses are dated weeks back, and records stamped that long ago keep their event
    time only in a topic that keeps them.
    """
    name = f"responses-{uuid.uuid4().hex[:8]}"
    broker.create_topics([name], partitions=3, config={"retention.ms": "-1"})
    return name


@pytest.fixture
def connections(monkeypatch, broker, sheets_server):
    """``google_cloud_default`` (anonymous, for the local server) and ``kafka_default`` as env vars."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"is_anonymous": True, "num_retries": 2, "sheets_quota_per_minute": 0},
            }
        ),
    )
    from tests.helpers import use_kafka

    use_kafka(monkeypatch, broker.bootstrap_servers)
    return {"api_endpoint": sheets_server.url, "bootstrap.servers": broker.bootstrap_servers}


def require_or_skip(available: bool, what: str) -> None:
    """Skip on a laptop without ``what``; fail loudly in CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true but is not available")
    pytest.skip(f"{what} is not available on this machine")
