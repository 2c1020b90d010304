"""The ``schema_registry`` connection and a topic's schemas, against confluent-kafka's in-memory registry (``mock://``)."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from airflow_provider_sheets.hooks.registry import SchemaRegistryHook, TopicSchemas, registry_url
from airflow_provider_sheets.model.schemas import avro_names, avro_schema


@pytest.mark.parametrize(
    ("host", "port", "path", "url"),
    [
        ("https://registry:8081", None, None, "https://registry:8081"),
        ("registry", 8081, None, "http://registry:8081"),
        ("https://registry", 8443, "/apis/ccompat/v7", "https://registry:8443/apis/ccompat/v7"),
        ("http://127.0.0.1:5000/apis/ccompat/v7", None, None, "http://127.0.0.1:5000/apis/ccompat/v7"),
        ("http://127.0.0.1:5000/", 9999, None, "http://127.0.0.1:5000"),
        ("mock://tests", None, None, "mock://tests"),
    ],
)
def test_the_registry_url_from_a_connection(host, port, path, url):
    assert registry_url(host, port, path) == url


def test_a_connection_gives_basic_auth_and_tls_and_nothing_else(monkeypatch):
    conn = {
        "conn_type": "schema_registry",
        "host": "https://registry.example.com",
        "port": 8081,
        "login": "svc",
        "password": "s3cret",
        "extra": {"ssl.ca.location": "/ca.pem", "unrelated": "x"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_REG_TEST", json.dumps(conn))
    config = SchemaRegistryHook("reg_test").client_config()
    assert config == {
        "url": "https://registry.example.com:8081",
        "basic.auth.user.info": "svc:s3cret",
        "ssl.ca.location": "/ca.pem",
    }


def test_a_connection_without_url_says_so(monkeypatch):
    from airflow_provider_sheets.errors import SchemaRegistryAccessError

    monkeypatch.setenv("AIRFLOW_CONN_REG_EMPTY", json.dumps({"conn_type": "schema_registry", "password": "s3cret"}))
    with pytest.raises(SchemaRegistryAccessError, match="has no URL") as err:
        SchemaRegistryHook("reg_empty").client_config()
    assert "s3cret" not in str(err.value)


def test_rows_serialized_with_the_registered_schema_read_back_with_the_deserializer():
    """Register, then encode rows (short ones padded with null); confluent's deserializer reads them."""
    client = SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})
    schemas = TopicSchemas(client, "t", "mock")
    fields = ["When", "Score", "Name?"]
    schema = avro_schema(fields, ["DATE_TIME", "NUMBER", None], "Tab")
    schema_id = schemas.register("avro", schema)
    encode = schemas.encoder("avro", schema, avro_names(fields))
    assert schemas.encoder("avro", schema, avro_names(fields)) is encode, "one primed encoder per schema"
    value = encode([1762333503000, 4.0])
    assert value[0] == 0, "the Confluent framing: magic byte"
    assert int.from_bytes(value[1:5], "big") == schema_id, "the Confluent framing: the schema's id"
    read = AvroDeserializer(client)(value, SerializationContext("t", MessageField.VALUE))
    assert read["Score"] == 4.0
    assert read["Name"] is None
    assert read["When"].isoformat() == "2025-11-05T09:05:03+00:00"
