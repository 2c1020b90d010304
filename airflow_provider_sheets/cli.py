"""The ``sheets-to-kafka`` command.

``sheets-to-kafka stream`` runs :class:`~airflow_provider_sheets.streaming.SheetStream` in the
foreground until SIGTERM or SIGINT (it then finishes the current batch, saves its position and exits
0). It needs no Airflow database: the Google and Kafka connections are defined as
``AIRFLOW_CONN_*`` environment variables of its own process, so the provider's hooks are used
unmodified.

Exit codes: 0 after a clean stop, 1 on an unexpected failure, 2 when a setting is missing or wrong
(one line on stderr that names the fix).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_sheets.model.checks import DRIFT_POLICIES
from airflow_provider_sheets.model.formats import KEY_FORMATS, REGISTRY_FORMATS, VALUE_FORMATS
from airflow_provider_sheets.model.sheet import RENDER_OPTIONS

PROG = "sheets-to-kafka"

#: Connection ids the command defines for itself (as ``AIRFLOW_CONN_<ID>`` in its own environment).
GCP_CONN_ID = "sheets_to_kafka_google"
KAFKA_CONN_ID = "sheets_to_kafka_kafka"
REGISTRY_CONN_ID = "sheets_to_kafka_schema_registry"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class UsageError(Exception):
    """A missing or wrong setting; the message names the fix."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Move Google Sheets rows into Kafka.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    stream = commands.add_parser(
        "stream",
        help="poll a tab continuously and publish new rows (the speed layer)",
        description="Poll a tab continuously and publish every new row to a Kafka topic; the position is kept "
        "in a compacted topic. Stops cleanly on SIGTERM/SIGINT.",
    )
    _sheet_arguments(stream.add_argument_group("sheet"))
    _kafka_arguments(stream.add_argument_group("kafka"))
    _loop_arguments(stream.add_argument_group("loop"))
    return parser


def _sheet_arguments(sheet: argparse._ArgumentGroup) -> None:
    sheet.add_argument("--spreadsheet-id", metavar="ID", help="the id in the sheet's URL (between /d/ and /edit)")
    sheet.add_argument("--sheet-name", metavar="TAB", help="the tab title (default: the first tab)")
    sheet.add_argument(
        "--key-file",
        metavar="SA.json",
        help="a service-account key file (JSON); default: Application Default Credentials",
    )
    sheet.add_argument(
        "--impersonate",
        metavar="SA[,SA...]",
        help="service account(s) to impersonate, a chain separated by commas (as impersonation_chain)",
    )
    sheet.add_argument(
        "--api-endpoint",
        metavar="URL",
        help="a custom Sheets API endpoint; a loopback URL without --key-file is "
        "used anonymously (the local Sheets server of the demo)",
    )
    sheet.add_argument(
        "--num-retries", metavar="N", type=int, help="client retries of a 429/5xx before the runner's own backoff"
    )
    sheet.add_argument(
        "--sheets-quota-per-minute",
        metavar="N",
        type=int,
        help="Sheets read requests a minute at most (default: the connection's, else 60, Google's default per "
        "user; 0: no pacing)",
    )
    sheet.add_argument(
        "--header-row", metavar="ROW", type=int, default=1, help="the row holding the field names (default 1)"
    )
    sheet.add_argument("--value-render-option", default=RENDER_OPTIONS[0], choices=RENDER_OPTIONS)


def _kafka_arguments(kafka: argparse._ArgumentGroup) -> None:
    kafka.add_argument("--topic", metavar="TOPIC", help="the destination topic (must exist)")
    kafka.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="HOST:PORT[,HOST:PORT...]")
    kafka.add_argument(
        "--kafka-config",
        metavar="FILE",
        help="librdkafka settings: a .properties (key=value lines) or .json file; "
        "--bootstrap-servers overrides its bootstrap.servers",
    )
    kafka.add_argument(
        "--position-topic", metavar="TOPIC", help="compacted topic holding the position (default: <topic>.position)"
    )
    kafka.add_argument(
        "--key-column", metavar="HEADER", help="a header whose cell becomes the record key (default: the row number)"
    )
    kafka.add_argument(
        "--on-drift",
        choices=DRIFT_POLICIES,
        default="fail",
        help="when rows above the position were deleted or inserted (an edit of the last row is published again): "
        "stop (default), read on after where the last published row is now, publish every row again, or "
        "reconcile (needs --fingerprint-topic)",
    )
    kafka.add_argument(
        "--value-format",
        choices=VALUE_FORMATS,
        default="json",
        help="json (default): {field: value}; cloudevents: the same as CloudEvents (binary mode); connect_json: "
        "Kafka Connect's JsonConverter envelope (typed)",
    )
    kafka.add_argument(
        "--typed-values",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record values as typed JSON (numbers, booleans, ISO 8601 dates with the spreadsheet's offset), "
        "whatever the spreadsheet's locale (the default, unless --value-render-option is given); "
        "--no-typed-values: each cell as the sheet shows it",
    )
    kafka.add_argument(
        "--key-format",
        choices=KEY_FORMATS,
        default="text",
        help="text (default): the key column's cell or the row number; connect_json: the same in Kafka Connect's "
        "JsonConverter envelope",
    )
    kafka.add_argument(
        "--schema-registry",
        metavar="URL",
        help="the Schema Registry of --value-format avro|json_schema (Confluent's API; Apicurio: "
        "http://HOST:PORT/apis/ccompat/v7)",
    )
    kafka.add_argument(
        "--event-time-column",
        metavar="HEADER",
        help="with typed values, the column whose date-time is each record's Kafka timestamp (default: Timestamp)",
    )
    kafka.add_argument(
        "--fingerprint-topic",
        metavar="TOPIC",
        help="a compacted topic where every record's key and value hash are written: what --reconcile compares "
        "the tab with",
    )
    kafka.add_argument(
        "--reconcile",
        action="store_true",
        help="start with a reconcile pass: publish what makes the topic match the tab (changed and new rows, "
        "tombstones of rows gone, each with a sheets.change header), then stream on",
    )


def _loop_arguments(loop: argparse._ArgumentGroup) -> None:
    loop.add_argument(
        "--poll-interval", metavar="SECONDS", type=float, default=5.0, help="seconds between polls (default 5)"
    )
    loop.add_argument(
        "--page-size", metavar="ROWS", type=int, default=None, help="rows per values request (default 5000)"
    )
    loop.add_argument(
        "--status-interval",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="seconds between status lines (default 30)",
    )
    loop.add_argument(
        "--flush-timeout", metavar="SECONDS", type=float, default=60.0, help="seconds to wait for a batch's acks"
    )
    loop.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="default: Airflow's [logging] logging_level (INFO)",
    )


def read_kafka_config(path: str) -> dict[str, Any]:
    """Read librdkafka settings from a ``.json`` object or a Java-style ``.properties`` file."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(
            f"--kafka-config {path!r} does not exist; pass a .properties or .json file of librdkafka "
            f"settings (e.g. bootstrap.servers=broker:9092)"
        )
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise UsageError(
                f"--kafka-config {path!r} is not valid JSON ({err}); write one object of librdkafka settings"
            ) from None
        if not isinstance(data, dict):
            raise UsageError(f"--kafka-config {path!r} must hold one JSON object of librdkafka settings")
        return {str(k): v for k, v in data.items()}
    config: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise UsageError(f"--kafka-config {path!r} line {number} is not key=value: {line!r}")
        config[key.strip()] = value.strip()
    return config


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in _LOOPBACK or host.startswith("127.")


def google_connection(args: argparse.Namespace) -> dict[str, Any]:
    """The ``google_cloud_platform`` connection: key file, anonymous (local endpoint) or ADC."""
    extra: dict[str, Any] = {}
    if args.key_file:
        key_file = Path(args.key_file)
        try:
            key = json.loads(key_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise UsageError(
                f"--key-file {args.key_file!r} cannot be read as a JSON key ({err}); download the "
                f"service account's key (IAM > Service accounts > Keys > Add key > JSON)"
            ) from None
        if not isinstance(key, dict) or "type" not in key:
            raise UsageError(
                f"--key-file {args.key_file!r} is not a Google credentials file; download the "
                f"service account's JSON key"
            )
        extra["key_path"] = str(key_file.resolve())
    elif args.api_endpoint and _is_loopback(args.api_endpoint):
        extra["is_anonymous"] = True
    if args.num_retries is not None:
        extra["num_retries"] = args.num_retries
    return {"conn_type": "google_cloud_platform", "extra": extra}


def kafka_connection(args: argparse.Namespace) -> dict[str, Any]:
    """The ``kafka`` connection: the librdkafka settings of --kafka-config and --bootstrap-servers."""
    config = read_kafka_config(args.kafka_config) if args.kafka_config else {}
    if args.bootstrap_servers:
        config["bootstrap.servers"] = args.bootstrap_servers
    if not config.get("bootstrap.servers"):
        raise UsageError(
            "no Kafka brokers: pass --bootstrap-servers HOST:PORT or --kafka-config FILE with "
            "bootstrap.servers=HOST:PORT"
        )
    return {"conn_type": "kafka", "extra": config}


def define_connection(conn_id: str, connection: dict[str, Any]) -> None:
    """Define an Airflow connection for this process only, as ``AIRFLOW_CONN_<ID>``."""
    os.environ["AIRFLOW_CONN_" + conn_id.upper()] = json.dumps(connection)


def check_stream_args(args: argparse.Namespace) -> None:
    """The settings the runner needs, checked by the coercers every shell uses, under their option names."""
    from airflow_provider_sheets.errors import SheetsConfigError
    from airflow_provider_sheets.settings import as_int, as_positive

    if not args.spreadsheet_id:
        raise UsageError(
            "--spreadsheet-id is missing: pass the id from the sheet's URL (the part between /d/ and /edit)"
        )
    if not args.topic:
        raise UsageError(
            "--topic is missing: pass the destination topic (create it first, e.g. kafka-topics.sh "
            "--create --topic responses --partitions 3)"
        )
    if args.value_format in REGISTRY_FORMATS and not args.schema_registry:
        raise UsageError(
            f"--value-format {args.value_format} registers the tab's schema in a Schema Registry: pass "
            "--schema-registry URL (e.g. http://localhost:8081, or Apicurio's http://HOST:PORT/apis/ccompat/v7)"
        )
    try:
        for option in ("--poll-interval", "--status-interval", "--flush-timeout"):
            as_positive(option, getattr(args, option[2:].replace("-", "_")))
        as_int("--header-row", args.header_row, minimum=1)
        if args.page_size is not None:
            as_int("--page-size", args.page_size, minimum=1)
        if args.sheets_quota_per_minute is not None:
            as_int("--sheets-quota-per-minute", args.sheets_quota_per_minute, minimum=0)
    except SheetsConfigError as err:
        raise UsageError(str(err)) from None


def _stream(args: argparse.Namespace) -> Any:
    """The stream runner the arguments describe (its own checks may refuse them: :class:`SheetsConfigError`)."""
    from airflow_provider_sheets.settings import DEFAULT_PAGE_SIZE
    from airflow_provider_sheets.streaming import SheetStream

    return SheetStream(
        args.spreadsheet_id,
        args.topic,
        sheet_name=args.sheet_name,
        gcp_conn_id=GCP_CONN_ID,
        kafka_config_id=KAFKA_CONN_ID,
        api_endpoint=args.api_endpoint,
        impersonation_chain=[sa.strip() for sa in args.impersonate.split(",") if sa.strip()]
        if args.impersonate
        else None,
        poll_interval=args.poll_interval,
        page_size=args.page_size or DEFAULT_PAGE_SIZE,
        key_column=args.key_column,
        position_topic=args.position_topic,
        status_interval=args.status_interval,
        header_row=args.header_row,
        value_render_option=args.value_render_option,
        flush_timeout=args.flush_timeout,
        on_drift=args.on_drift,
        sheets_quota_per_minute=args.sheets_quota_per_minute,
        fingerprint_topic=args.fingerprint_topic,
        reconcile=args.reconcile,
        value_format=args.value_format,
        typed_values=args.typed_values,
        event_time_column=args.event_time_column,
        key_format=args.key_format,
        schema_registry_conn_id=REGISTRY_CONN_ID,
    )


def stream_command(args: argparse.Namespace) -> int:
    check_stream_args(args)
    google, kafka = google_connection(args), kafka_connection(args)
    define_connection(GCP_CONN_ID, google)
    define_connection(KAFKA_CONN_ID, kafka)
    if args.schema_registry:
        define_connection(REGISTRY_CONN_ID, {"conn_type": "schema_registry", "host": args.schema_registry})
    if args.log_level:
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = args.log_level

    from google.auth.exceptions import GoogleAuthError

    from airflow_provider_sheets.errors import SheetsConfigError, SheetsToKafkaError

    try:
        stream = _stream(args)
    except SheetsConfigError as err:
        return _fail(EXIT_USAGE, str(err))
    signal.signal(signal.SIGTERM, stream.stop)
    signal.signal(signal.SIGINT, stream.stop)
    try:
        stream.run()
    except SheetsConfigError as err:
        return _fail(EXIT_USAGE, str(err))
    except GoogleAuthError as err:
        return _fail(
            EXIT_USAGE,
            f"no usable Google credentials ({err}); pass --key-file SA.json, or set up "
            f"Application Default Credentials (gcloud auth application-default login)",
        )
    except SheetsToKafkaError as err:
        return _fail(EXIT_FAILURE, str(err))
    return EXIT_OK


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)  # noqa: T201 - the CLI's output
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "stream":
            return stream_command(args)
    except UsageError as err:
        return _fail(EXIT_USAGE, f"{args.command}: {err}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
