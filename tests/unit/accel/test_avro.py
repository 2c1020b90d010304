"""Parity: the fast Avro encoder writes every row byte for byte as confluent-kafka's AvroSerializer."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from airflow_provider_sheets.accel.avro import FastAvroRows, avro_rows, sample_rows
from airflow_provider_sheets.hooks.registry import TopicSchemas
from airflow_provider_sheets.model.schemas import avro_names, avro_schema

FIELDS = ["Timestamp", "Name", "Rating (1-5)", "Subscribed?", "Day", "At", "점수"]
KINDS = ["DATE_TIME", None, "NUMBER", "BOOLEAN", "DATE", "TIME", "PERCENT"]
ROWS = [
    [1793615052000, "Ann", 4.0, True, 20759, 34200000, 0.5],
    [0, "", -0.0, False, 0, 0, 1e300],
    [-2209161600000, "é ∑ 🙏 \x00", 2.0**60, None, -25569, 86399999, float("inf")],
    [None, None, None, None, None, None, None],
    ["2026-11-05T09:05:03+00:00"],  # never given by ConnectTypes: both refuse it alike (see below)
    [1793615052000, "Bob"],
    [],
]


@pytest.fixture
def encoders():
    client = SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})
    schemas = TopicSchemas(client, "t", "mock")
    schema = avro_schema(FIELDS, KINDS, "Form Responses 1")
    schema_id = schemas.register("avro", schema)
    reference = schemas.encoder("avro", schema, avro_names(FIELDS))
    return reference, FastAvroRows(schema, schema_id, avro_names(FIELDS)), schema, schema_id


@pytest.mark.parametrize("row", ROWS[:4] + ROWS[5:], ids=["typed", "zeros", "extremes", "nulls", "short", "empty"])
def test_the_fast_encoder_writes_what_the_serializer_writes(encoders, row):
    reference, fast, _, _ = encoders
    assert fast(row) == reference(row)


def test_both_refuse_a_value_of_the_wrong_type(encoders):
    reference, fast, _, _ = encoders
    for encode in (reference, fast):
        with pytest.raises((ValueError, TypeError)):
            encode(ROWS[4])


def test_the_fast_encoder_is_used_only_when_it_agrees_on_the_sample_rows(encoders):
    reference, fast, schema, schema_id = encoders
    assert isinstance(avro_rows(reference, schema, schema_id, KINDS), FastAvroRows)
    wrong_id = avro_rows(reference, schema, schema_id + 1, KINDS)
    assert wrong_id is reference, "another framing than the serializer's: the serializer is used"
    assert len(sample_rows(KINDS)) == 3
