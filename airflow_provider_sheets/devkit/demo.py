"""
The end-to-end demo on embedded defaults: no Google account, no Docker.

It starts a local Kafka-protocol broker and a local Sheets v4 server holding a sample Google Forms
responses sheet, migrates a throw-away Airflow metadata DB, runs the example DAG
``sheets_to_kafka`` with ``dag.test()``, appends new responses through the real Google client,
runs the DAG again, prints what arrived in Kafka and the watermark, and stops what it started.

Run it from a checkout: ``make demo`` (or ``python -m airflow_provider_sheets.devkit.demo``);
``make demo FORMAT=avro`` (or ``--value-format``) shows another value format.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from airflow_provider_sheets.devkit.airflow_home import airflow_env, migrate
from airflow_provider_sheets.devkit.broker import BROKER_KINDS, make_broker
from airflow_provider_sheets.model.formats import REGISTRY_FORMATS, VALUE_FORMATS

SPREADSHEET_ID = "demo-forms-responses"
TOPIC = "form-responses"
DAG_ID = "sheets_to_kafka"


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _prepare_airflow(home: Path, dags_folder: Path) -> None:
    """Point Airflow at a temporary home and migrate its SQLite metadata DB (before importing it)."""
    os.environ.update(airflow_env(home, dags_folder))
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    migrate(os.environ)


def _run_dag(dags_folder: Path) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_folder))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(DAG_ID)
    dag_run = dag.test()
    ti = dag_run.get_task_instance("publish_new_responses")
    if str(dag_run.state) != "success":
        raise RuntimeError(f"the DAG run ended {dag_run.state}; see the task log above")
    return ti.xcom_pull(task_ids="publish_new_responses")


def _pairs(headers: Any) -> list[tuple[Any, Any]]:
    """A record's headers as (name, value) pairs, whichever form the client gave them in."""
    if not headers:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def _read_topic(bootstrap_servers: str) -> list[Any]:
    """Every record of the demo's topic, in row order: its row, partition, offset, key, headers, value, timestamp."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap_servers, "group.id": "demo-reader", "enable.auto.commit": False}
    )
    partitions = sorted(consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in partitions}
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in partitions])
    pending = {p for p, end in ends.items() if end}
    records = []
    while pending:
        msg = consumer.poll(5)
        if msg is None:
            break
        if msg.error():
            raise RuntimeError(str(msg.error()))
        partition, offset = msg.partition() or 0, msg.offset() or 0
        headers = {str(k): (v or b"").decode() if isinstance(v, bytes) else str(v) for k, v in _pairs(msg.headers())}
        row = int(headers.get("sheets.row", 0))
        records.append((row, partition, offset, msg.key(), headers, msg.value(), msg.timestamp()[1]))
        if offset + 1 >= ends[partition]:
            pending.discard(partition)
    consumer.close()
    return sorted(records, key=lambda record: record[:3])


def _print_records(records: list[Any], decode: Any, show_row: int | None, framed: bool = False) -> None:
    _say(f"\n{len(records)} records in topic {TOPIC!r}:")
    for row, partition, offset, _key, headers, value, _stamp in records:
        _say(
            f"  row={row:>3}  partition={partition}  offset={offset:>2}  "
            f"run={headers['airflow.run_id'][:30]}  {json.dumps(decode(value), ensure_ascii=False, default=str)}"
        )
    for row, partition, offset, key, headers, value, stamp in records:
        if row != show_row:
            continue
        _say(f"\nThe record of row {row} as it is in Kafka (partition {partition}, offset {offset}):")
        shown_key = key.decode("utf-8", "replace") if key else repr(key)
        _say(f"  key:       {shown_key}")
        _say(f"  timestamp: {stamp} (CreateTime, epoch ms)")
        _say("  headers:   " + json.dumps(headers, ensure_ascii=False))
        if not framed:
            _say(f"  value:     {value.decode('utf-8')}")
        else:  # a registry format's value: its 5-byte framing (magic byte, schema id), then Avro or JSON
            schema_id = int.from_bytes(value[1:5], "big")
            _say(f"  value:     {len(value)} bytes: magic byte {value[0]}, schema id {schema_id}, then the data")
            _say("  decoded:   " + json.dumps(decode(value), ensure_ascii=False, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--dags-folder", default=str(Path.cwd() / "dags"), help="folder with the example DAG")
    parser.add_argument("--initial-rows", type=int, default=12)
    parser.add_argument("--new-rows", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME")
    parser.add_argument(
        "--broker",
        choices=BROKER_KINDS,
        default="tansu",
        help="tansu (pip-only, the default) or kafka (Apache Kafka; needs Java, fetches its jars with Maven)",
    )
    parser.add_argument(
        "--value-format",
        choices=VALUE_FORMATS,
        default="json",
        help="the records' value format; avro and json_schema also start an Apicurio Registry (needs Java)",
    )
    parser.add_argument(
        "--show-row", type=int, default=14, help="print this row's record in full (key, headers, value)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    dags_folder = Path(args.dags_folder).resolve()
    if not (dags_folder / "sheets_to_kafka.py").is_file():
        parser.error(f"{dags_folder} has no sheets_to_kafka.py; run from a checkout or pass --dags-folder")

    from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, as_submitted, forms_rows
    from airflow_provider_sheets.devkit.sheets_server import SheetsServer

    home = Path(tempfile.mkdtemp(prefix="sheets-demo-airflow-"))
    try:
        with (
            SheetsServer() as sheets,
            make_broker(args.broker, log_path=home / "broker.log") as broker,
            contextlib.ExitStack() as closing,
        ):
            sheets.create_spreadsheet(
                SPREADSHEET_ID,
                {FORMS_TAB: [list(FORMS_HEADER), *forms_rows(args.initial_rows)]},
                title="Meetup feedback",
            )
            broker.create_topics([TOPIC], partitions=3)
            _say(f"Sheets v4 server: {sheets.url}  (spreadsheet {SPREADSHEET_ID!r}, tab {FORMS_TAB!r})")
            _say(f"Kafka broker:     {broker.bootstrap_servers}  ({broker.version}; topic {TOPIC!r}, 3 partitions)")
            os.environ["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"] = json.dumps(
                {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True}}
            )
            os.environ["AIRFLOW_CONN_KAFKA_DEFAULT"] = json.dumps(
                {"conn_type": "kafka", "extra": {"bootstrap.servers": broker.bootstrap_servers}}
            )
            os.environ["AIRFLOW_VAR_SHEETS_SPREADSHEET_ID"] = SPREADSHEET_ID
            os.environ["AIRFLOW_VAR_SHEETS_TOPIC"] = TOPIC
            os.environ["AIRFLOW_VAR_SHEETS_API_ENDPOINT"] = sheets.url
            os.environ["AIRFLOW_VAR_SHEETS_VALUE_FORMAT"] = args.value_format
            registry_url = None
            if args.value_format in REGISTRY_FORMATS:
                from airflow_provider_sheets.devkit.schema_registry import ApicurioRegistry

                registry_url = closing.enter_context(ApicurioRegistry(home / "registry")).url
                os.environ["AIRFLOW_CONN_SCHEMA_REGISTRY_DEFAULT"] = json.dumps(
                    {"conn_type": "schema_registry", "host": registry_url}
                )
                _say(f"Schema Registry:  {registry_url}  (Apicurio Registry; subject {TOPIC}-value)")
            _say(f"Airflow home:     {home}  (migrating the metadata DB…)")
            _prepare_airflow(home, dags_folder)

            _say(f"\n== Run 1: DAG {DAG_ID!r} with {args.initial_rows} responses in the sheet")
            first = _run_dag(dags_folder)
            _say(json.dumps(first, indent=2))

            from airflow.providers.google.suite.hooks.sheets import GSheetsHook

            new = [as_submitted(row) for row in forms_rows(args.new_rows, start=args.initial_rows)]
            GSheetsHook(api_endpoint=sheets.url).append_values(
                SPREADSHEET_ID, f"'{FORMS_TAB}'!A1", new, value_input_option="USER_ENTERED"
            )
            _say(f"\n== {args.new_rows} new responses appended through the Sheets API; Run 2")
            second = _run_dag(dags_folder)
            _say(json.dumps(second, indent=2))

            _say("\n== Run 3: nothing new")
            third = _run_dag(dags_folder)
            _say(f"rows_published={third['rows_published']}")

            from airflow_provider_sheets.transfers.downstream import value_decoder  # Airflow configured by now

            records = _read_topic(broker.bootstrap_servers)
            framed = args.value_format in REGISTRY_FORMATS
            _print_records(records, value_decoder(args.value_format, TOPIC), args.show_row, framed)
            total = len(records)
            from airflow.models.variable import Variable

            _say(f"\nWatermark Variable {second['watermark_key']!r}:")
            _say("  " + Variable.get(second["watermark_key"]))
            expected = args.initial_rows + args.new_rows
            if total != expected:
                _say(f"\nUNEXPECTED: {total} records in Kafka, {expected} responses in the sheet")
                return 1
            _say(f"\nOK: {expected} responses in the sheet, {total} records in Kafka, each exactly once.")
            return 0
    finally:
        if args.keep:
            _say(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
