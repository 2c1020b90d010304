"""One way to build a Sheets reader and one way to read a Kafka connection, whichever shell asks.

The readers are the real :class:`SheetsReader` objects each shell builds (no request is made: a
reader connects lazily); the Kafka settings come from the kafka provider's own config builder.
"""

from __future__ import annotations

import json
import uuid

import pytest

from airflow_provider_sheets.hooks.sheets import SheetsConnection

CHAIN = ["robot@project.iam.gserviceaccount.com", "target@project.iam.gserviceaccount.com"]


def oauth_cb(config: str) -> tuple[str, float]:
    """A callback the connection names as a dotted path (allow-listed in the test)."""
    return "token", 0.0


def _operator():
    from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

    return SheetToKafkaOperator(task_id="t", spreadsheet_id="s", topic="x", impersonation_chain=CHAIN).reader


def _sensor():
    from airflow_provider_sheets.sensors.sheet_rows import SheetNewRowsSensor

    return SheetNewRowsSensor(task_id="t", spreadsheet_id="s", topic="x", impersonation_chain=CHAIN).probe.reader


def _trigger():
    """The trigger as the triggerer rebuilds it: from its serialised kwargs."""
    from airflow_provider_sheets.triggers.sheet_rows import SheetNewRowsTrigger

    trigger = SheetNewRowsTrigger(spreadsheet_id="s", sheet_name="Tab", after_row=1, impersonation_chain=CHAIN)
    _, kwargs = trigger.serialize()
    json.dumps(kwargs)  # what the metadata DB stores must be JSON
    return SheetNewRowsTrigger(**kwargs).connection.reader()


def _stream():
    from airflow_provider_sheets.streaming import SheetStream

    return SheetStream("s", "x", impersonation_chain=CHAIN).reader


@pytest.mark.parametrize(
    "build", [_operator, _sensor, _trigger, _stream], ids=["operator", "sensor", "trigger", "stream"]
)
def test_every_shell_passes_the_impersonation_chain_to_its_reader(build):
    reader = build()
    assert list(reader.impersonation_chain) == CHAIN


def test_the_watermark_operator_describes_as_the_impersonated_account(monkeypatch):
    """Its reader is built in execute(); the connection it is built from carries the chain."""
    from airflow_provider_sheets.hooks import sheets
    from airflow_provider_sheets.operators.watermark import SheetsWatermarkOperator

    built = []

    class Recorded(sheets.SheetsConnection):
        def reader(self, value_render_option: str = "FORMATTED_VALUE", tuning=None, typed: bool = False):
            built.append(self)
            raise RuntimeError("stop here: no request is needed")

    monkeypatch.setattr("airflow_provider_sheets.operators.watermark.SheetsConnection", Recorded)
    operator = SheetsWatermarkOperator(
        task_id="t", action="show", spreadsheet_id="s", topic="x", impersonation_chain=CHAIN
    )
    with pytest.raises(RuntimeError, match="stop here"):
        operator.execute({})
    assert [list(c.impersonation_chain) for c in built] == [CHAIN]


@pytest.mark.parametrize(
    ("chain", "serialised"),
    [(None, None), ("one@x.iam.gserviceaccount.com", "one@x.iam.gserviceaccount.com"), (tuple(CHAIN), CHAIN)],
    ids=["none", "one", "tuple"],
)
def test_a_connection_serialises_to_json(chain, serialised):
    as_dict = SheetsConnection("g", "", chain, 30).as_dict()
    assert as_dict == {
        "gcp_conn_id": "g",
        "api_endpoint": None,
        "impersonation_chain": serialised,
        "sheets_quota_per_minute": 30,
    }
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_client_config_is_the_provider_config_without_producer_settings(monkeypatch):
    """Dotted-path callbacks resolved (the OAuth path), producer-only settings left out, overrides on top."""
    from airflow_provider_sheets.adapters.kafka_config import client_config

    conn_id = f"kafka_{uuid.uuid4().hex[:6]}"
    path = f"{__name__}.oauth_cb"
    monkeypatch.setenv("AIRFLOW__APACHE_KAFKA__CALLBACK_ALLOWLIST", path)
    extra = {
        "bootstrap.servers": "broker:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "OAUTHBEARER",
        "oauth_cb": path,
        "enable.idempotence": "true",
        "linger.ms": 20,
        "transactional.id": "x",
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "kafka", "extra": extra}))
    config = client_config(conn_id, {"client.id": "reader", "acks": "all"})
    assert config.pop("oauth_cb") is oauth_cb
    assert config == {
        "bootstrap.servers": "broker:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "OAUTHBEARER",
        "client.id": "reader",
    }


def test_the_position_store_reads_the_connection_the_same_way(monkeypatch):
    from airflow_provider_sheets.adapters.kafka_config import client_config
    from airflow_provider_sheets.streaming import PositionStore

    conn_id = f"kafka_{uuid.uuid4().hex[:6]}"
    extra = {"bootstrap.servers": "broker:9092", "linger.ms": 5, "sasl.username": "u"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "kafka", "extra": extra}))
    assert PositionStore("x.position", conn_id).client_config == client_config(conn_id)


def test_the_stream_command_takes_an_impersonation_chain(monkeypatch):
    from airflow_provider_sheets import cli, streaming

    seen = {}

    class Recorded:
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            raise KeyboardInterrupt  # stop before anything runs

    monkeypatch.setattr(streaming, "SheetStream", Recorded)
    for conn_id in (cli.GCP_CONN_ID, cli.KAFKA_CONN_ID):  # the command defines them: restored after the test
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", "")
    argv = [
        "stream",
        "--spreadsheet-id",
        "s",
        "--topic",
        "x",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--impersonate",
        f"{CHAIN[0]}, {CHAIN[1]}",
    ]
    with pytest.raises(KeyboardInterrupt):
        cli.main(argv)
    assert seen["impersonation_chain"] == CHAIN
