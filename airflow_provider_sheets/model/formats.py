"""The value formats a record can have (pure constants, shared by the settings, the encoders and the CLI)."""

from __future__ import annotations

#: ``value_format``: ``{field: value}`` JSON, the same JSON as a CloudEvent's data (binary mode), the
#: Kafka Connect JsonConverter envelope, or Avro / JSON Schema through a Schema Registry
VALUE_FORMATS = JSON, CLOUDEVENTS, CONNECT_JSON, AVRO, JSON_SCHEMA = (
    "json",
    "cloudevents",
    "connect_json",
    "avro",
    "json_schema",
)
#: the value formats whose schema lives in a Schema Registry
REGISTRY_FORMATS = frozenset({AVRO, JSON_SCHEMA})
#: ``key_format``: the key as text (the row number or the key column's cell), or in the Connect envelope
KEY_FORMATS = KEY_TEXT, KEY_CONNECT_JSON = ("text", "connect_json")
