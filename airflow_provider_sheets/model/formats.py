"""The value formats a record can have (pure constants, shared by the settings, the encoders and the CLI)."""

from __future__ import annotations

#: ``value_format``: ``{field: value}`` JSON, the same JSON as a CloudEvent's data (binary mode), or
#: the Kafka Connect JsonConverter envelope
VALUE_FORMATS = JSON, CLOUDEVENTS, CONNECT_JSON = ("json", "cloudevents", "connect_json")
