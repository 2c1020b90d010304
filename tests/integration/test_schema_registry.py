"""
The ``avro`` and ``json_schema`` value formats against a real Schema Registry (Apicurio Registry,
its Confluent API, global compatibility ``BACKWARD``) and a real broker, read back with
confluent-kafka's own ``AvroDeserializer`` / ``JSONDeserializer``: the consumers of record.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timezone

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from airflow_provider_sheets.devkit.sample import FORMS_TAB
from tests.helpers import consume_all, get_variable, run_operator

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

HEADER = ["Timestamp", "Your name", "Rating (1-5)", "Subscribed?", "Day", "At", "평가"]


def _rows() -> list[list[object]]:
    return [
        [datetime(2026, 11, 5, 9, 5, 3), "Ann", 4, True, date(2026, 11, 5), time(9, 30), "좋음"],
        [datetime(2026, 11, 5, 14, 30, 0), "Bob", 2.5, False, date(2026, 11, 6), time(17, 0, 15), ""],
    ]


def _client(registry) -> SchemaRegistryClient:
    # a fresh client each time: a client caches a subject's latest version
    return SchemaRegistryClient({"url": registry.url})


def _avro_reader(registry, topic, reader_schema=None):
    deserializer = AvroDeserializer(_client(registry), reader_schema)
    return lambda value: deserializer(value, SerializationContext(topic, MessageField.VALUE))


def _first_avro_run(sheets_server, connections, topic) -> tuple[str, dict]:
    """A three-question form's first avro run (version 1 of the subject); its spreadsheet and the run's arguments."""
    sid = f"avro-{uuid.uuid4().hex[:8]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [HEADER[:3], *[row[:3] for row in _rows()]]})
    kwargs = {
        "spreadsheet_id": sid,
        "topic": topic,
        "api_endpoint": connections["api_endpoint"],
        "value_format": "avro",
    }
    assert run_operator(**kwargs).state == "success"
    return sid, kwargs


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    ("locale", "zone", "offset"),
    [("en_US", "America/New_York", -5), ("de_DE", "Europe/Berlin", 1)],
    ids=["en_US", "de_DE"],
)
def test_avro_records_are_read_by_the_avro_deserializer(
    connections, sheets_server, broker, keeping_topic, schema_registry, locale, zone, offset
):
    """Values, types and record timestamps, whatever the locale; field names made Avro names, the headers in doc."""
    topic = keeping_topic
    from datetime import timedelta

    sid = f"avro-{uuid.uuid4().hex[:8]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [HEADER, *_rows()]}, locale=locale, time_zone=zone)
    result = run_operator(
        spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"], value_format="avro"
    )
    assert result.state == "success", result
    messages = consume_all(broker.bootstrap_servers, topic, expected=2, decode=_avro_reader(schema_registry, topic))
    tz = timezone(timedelta(hours=offset))
    assert [m.value for m in messages] == [
        {
            "Timestamp": datetime(2026, 11, 5, 9, 5, 3, tzinfo=tz).astimezone(timezone.utc),
            "Your_name": "Ann",
            "Rating_1_5": 4.0,
            "Subscribed": True,
            "Day": date(2026, 11, 5),
            "At": time(9, 30),
            "column_G": "좋음",
        },
        {
            "Timestamp": datetime(2026, 11, 5, 14, 30, 0, tzinfo=tz).astimezone(timezone.utc),
            "Your_name": "Bob",
            "Rating_1_5": 2.5,
            "Subscribed": False,
            "Day": date(2026, 11, 6),
            "At": time(17, 0, 15),
            "column_G": None,
        },
    ]
    assert [m.timestamp for m in messages] == [
        _millis(datetime(2026, 11, 5, 9, 5, 3, tzinfo=tz)),
        _millis(datetime(2026, 11, 5, 14, 30, tzinfo=tz)),
    ], "each record's CreateTime is the submission time"
    latest = _client(schema_registry).get_latest_version(f"{topic}-value")
    import json

    schema = json.loads(latest.schema.schema_str)
    assert [(f["name"], f["doc"]) for f in schema["fields"]] == list(
        zip(["Timestamp", "Your_name", "Rating_1_5", "Subscribed", "Day", "At", "column_G"], HEADER, strict=True)
    )
    assert all(f["default"] is None and f["type"][0] == "null" for f in schema["fields"])


def test_a_question_added_registers_a_new_version_that_old_readers_still_read(
    connections, sheets_server, broker, topic, schema_registry
):
    """A question added at the right: a new, backward-compatible version first, then records that carry it."""
    import json

    sid, kwargs = _first_avro_run(sheets_server, connections, topic)
    subject = f"{topic}-value"
    first = _client(schema_registry).get_latest_version(subject)
    sheets_server.set_cell(sid, FORMS_TAB, 1, 4, "How did you hear of us?")
    sheets_server.append_rows(sid, FORMS_TAB, [[datetime(2026, 11, 7, 8, 0), "Cem", 5, "a friend"]])
    assert run_operator(**kwargs).state == "success"
    client = _client(schema_registry)
    assert client.get_versions(subject) == [first.version, first.version + 1]
    second = client.get_latest_version(subject)
    added = json.loads(second.schema.schema_str)["fields"][-1]
    assert added == {
        "name": "How_did_you_hear_of_us",
        "type": ["null", "string"],
        "default": None,
        "doc": "How did you hear of us?",
    }
    now = consume_all(broker.bootstrap_servers, topic, expected=3, decode=_avro_reader(schema_registry, topic))
    assert now[-1].value["How_did_you_hear_of_us"] == "a friend"
    assert "How_did_you_hear_of_us" not in now[0].value, "the first run's records were written with version 1"
    old = consume_all(
        broker.bootstrap_servers, topic, expected=3, decode=_avro_reader(schema_registry, topic, first.schema)
    )
    assert [sorted(m.value) for m in old] == [["Rating_1_5", "Timestamp", "Your_name"]] * 3
    assert old[-1].value["Your_name"] == "Cem", "a consumer of version 1 still reads the new records"


def test_a_retyped_column_is_refused_before_anything_is_published(
    connections, sheets_server, broker, topic, schema_registry
):
    """A number column made text: the registry refuses the version; the run fails, publishing nothing."""
    sid, kwargs = _first_avro_run(sheets_server, connections, topic)
    key = next(iter(k for k in _watermark_keys(sid)))
    before = get_variable(key)
    sheets_server.set_column_format(sid, FORMS_TAB, 3, "TEXT", "@")
    sheets_server.append_rows(sid, FORMS_TAB, [[datetime(2026, 11, 7, 8, 0), "Cem", 5]])
    result = run_operator(**kwargs)
    assert result.state == "failed"
    assert len(consume_all(broker.bootstrap_servers, topic, decode=lambda v: v)) == 2, "nothing more was published"
    assert get_variable(key) == before, "the watermark did not move"


def _watermark_keys(spreadsheet_id: str) -> list[str]:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        keys = [v.key for v in session.query(Variable).all()]
    return [k for k in keys if spreadsheet_id in k and not k.endswith(".lease")]


def test_the_refusal_names_the_field_and_why(sheets_server, schema_registry):
    """What the run's error says when the registry refuses a version (read from the hook directly)."""
    from airflow_provider_sheets.errors import SchemaRegistryRefusal
    from airflow_provider_sheets.hooks.registry import TopicSchemas
    from airflow_provider_sheets.model.schemas import avro_schema

    schemas = TopicSchemas(_client(schema_registry), f"refusal-{uuid.uuid4().hex[:8]}", "the test's registry")
    schemas.register("avro", avro_schema(["Name", "Score"], [None, "NUMBER"], "Tab"))
    with pytest.raises(SchemaRegistryRefusal) as refused:
        schemas.register("avro", avro_schema(["Name", "Score"], [None, "TEXT"], "Tab"))
    message = str(refused.value)
    assert "field 'Score' changed from double to string" in message
    assert "Incompatible" in message, "the registry's own reason is kept"


def test_json_schema_records_are_read_by_the_json_deserializer(
    connections, sheets_server, broker, topic, schema_registry
):
    """json_schema: typed JSON with the registry's framing; a text answer in a number column is null, counted."""
    sid = f"jsonschema-{uuid.uuid4().hex[:8]}"
    rows = _rows()
    rows[1][2] = "n/a"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [HEADER, *rows]})
    result = run_operator(
        spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"], value_format="json_schema"
    )
    assert result.state == "success", result
    assert result.summary["typed_fallbacks"] == 1
    deserializer = JSONDeserializer(None, schema_registry_client=_client(schema_registry))

    def decode(value: bytes):
        return deserializer(value, SerializationContext(topic, MessageField.VALUE))

    messages = consume_all(broker.bootstrap_servers, topic, expected=2, decode=decode)
    assert [m.value for m in messages] == [
        {
            "Timestamp": "2026-11-05T09:05:03+00:00",
            "Your name": "Ann",
            "Rating (1-5)": 4,
            "Subscribed?": True,
            "Day": "2026-11-05",
            "At": "09:30:00",
            "평가": "좋음",
        },
        {
            "Timestamp": "2026-11-05T14:30:00+00:00",
            "Your name": "Bob",
            "Rating (1-5)": None,
            "Subscribed?": False,
            "Day": "2026-11-06",
            "At": "17:00:15",
            "평가": None,
        },
    ]


def test_a_dry_run_registers_nothing(connections, sheets_server, broker, topic, schema_registry):
    """A dry run checks the schema with the registry but registers no version."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    sid = f"avro-dry-{uuid.uuid4().hex[:8]}"
    sheets_server.create_spreadsheet(sid, {FORMS_TAB: [HEADER[:3], *[row[:3] for row in _rows()]]})
    result = run_operator(
        spreadsheet_id=sid, topic=topic, api_endpoint=connections["api_endpoint"], value_format="avro", dry_run=True
    )
    assert result.state == "success", result
    with pytest.raises(SchemaRegistryError) as missing:
        _client(schema_registry).get_latest_version(f"{topic}-value")
    assert missing.value.http_status_code == 404
