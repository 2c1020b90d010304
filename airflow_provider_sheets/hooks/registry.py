"""
A Schema Registry (the Confluent API: Confluent's, Apicurio's ``/apis/ccompat/v7``, Karapace…),
through confluent-kafka's own client and serializers: the ``avro`` and ``json_schema`` value formats.

The ``schema_registry`` connection: *URL* (``host``: ``https://registry:8081``, or a host name with
``port`` and a path in ``schema``, e.g. ``/apis/ccompat/v7``), basic auth (``login``, ``password``),
and in the extra any of the client's TLS settings (``ssl.ca.location``, ``ssl.certificate.location``,
``ssl.key.location``) and ``timeout``. ``mock://<name>`` is confluent-kafka's in-memory registry.

A tab's value schema is registered under ``<topic>-value`` (TopicNameStrategy) before any record
with it is sent; the registry's compatibility check decides whether a changed schema is accepted.
Rows are then serialized by ``AvroSerializer`` / ``JSONSerializer`` with that schema (no automatic
registration), primed here so that the mapping process makes no request. confluent-kafka's registry
client needs the ``schema-registry`` extra (``pip install airflow-provider-sheets[schema-registry]``):
it is imported only when a registry format is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import BaseHook

from airflow_provider_sheets.errors import SchemaRegistryAccessError, SchemaRegistryRefusal
from airflow_provider_sheets.model.formats import AVRO
from airflow_provider_sheets.model.schemas import schema_changes

#: the client settings a connection's extra may add
CLIENT_EXTRA_KEYS = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "timeout", "max.retries")
_TYPES = {AVRO: "AVRO", "json_schema": "JSON"}


def _client_module() -> Any:
    """confluent-kafka's Schema Registry package (an optional dependency: imported when used)."""
    try:
        import confluent_kafka.schema_registry as registry
        import confluent_kafka.schema_registry.error  # noqa: F401  (SchemaRegistryError)
    except ImportError as err:
        raise SchemaRegistryAccessError(
            f"the avro and json_schema value formats need confluent-kafka's Schema Registry client ({err}): "
            "pip install 'airflow-provider-sheets[schema-registry]'"
        ) from None
    return registry


def _registry_error() -> Any:
    return _client_module().error.SchemaRegistryError


def registry_url(host: str, port: int | None = None, path: str | None = None) -> str:
    """The registry's base URL from a connection's host (a URL or a host name), port and path."""
    url = host if "://" in host else f"http://{host}"
    if port and url.count(":") < 2:
        scheme, rest = url.split("://", 1)
        name, _, tail = rest.partition("/")
        url = f"{scheme}://{name}:{port}" + (f"/{tail}" if tail else "")
    if path:
        url = url.rstrip("/") + "/" + path.strip("/")
    return url.rstrip("/")


class SchemaRegistryHook(BaseHook):
    """
    The ``schema_registry`` connection, as confluent-kafka's ``SchemaRegistryClient``.

    :param schema_registry_conn_id: the connection id.
    """

    conn_name_attr = "schema_registry_conn_id"
    default_conn_name = "schema_registry_default"
    conn_type = "schema_registry"
    hook_name = "Schema Registry"

    def __init__(self, schema_registry_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.schema_registry_conn_id = schema_registry_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"host": "URL", "schema": "Path", "login": "Username", "password": "Password"},
            "placeholders": {
                "host": "https://registry.example.com:8081",
                "schema": "/apis/ccompat/v7 (Apicurio), empty for Confluent's",
                "extra": json.dumps({"ssl.ca.location": "/path/ca.pem"}),
            },
        }

    def client_config(self) -> dict[str, Any]:
        """The client's settings (with the password: never log them)."""
        conn = self.get_connection(self.schema_registry_conn_id)
        if not conn.host:
            raise SchemaRegistryAccessError(
                f"connection {self.schema_registry_conn_id!r} has no URL: set its host to the registry's URL"
            )
        config: dict[str, Any] = {"url": registry_url(conn.host, conn.port, conn.schema)}
        if conn.login:
            config["basic.auth.user.info"] = f"{conn.login}:{conn.password or ''}"
        extra = conn.extra_dejson
        config.update({key: extra[key] for key in CLIENT_EXTRA_KEYS if key in extra})
        return config

    def get_conn(self) -> Any:
        """confluent-kafka's ``SchemaRegistryClient`` (its in-memory one for a ``mock://`` URL)."""
        return _client_module().SchemaRegistryClient.new_client(self.client_config())


class TopicSchemas:
    """
    The value schemas of one topic in a registry: register a tab's schema, and serialize its rows.

    :param client: the registry client (:meth:`SchemaRegistryHook.get_conn`).
    :param where: how the registry is named in errors (a connection id or a URL, never credentials).
    """

    def __init__(self, client: Any, topic: str, where: str) -> None:
        self.client = client
        self.topic = topic
        self.subject = f"{topic}-value"
        self.where = where
        #: the encoder of each schema already primed (a stream asks again at every new header)
        self._encoders: dict[tuple[str, str, tuple[str, ...]], RowSerializer] = {}

    def _latest(self, schema_format: str) -> dict[str, Any] | None:
        try:
            latest = self.client.get_latest_version(self.subject)
        except _registry_error() as err:
            if err.http_status_code == 404:
                return None
            raise self._access_error(err, "read the subject's latest version") from None
        text = latest.schema.schema_str if latest.schema is not None else None
        return json.loads(text) if text else None

    def _access_error(self, err: Any, what: str) -> SchemaRegistryAccessError:
        return SchemaRegistryAccessError(
            f"the Schema Registry ({self.where}) failed to {what} of subject {self.subject!r}: {err.error_message} "
            f"(HTTP {err.http_status_code}, code {err.error_code})"
        )

    def schema(self, schema_format: str, schema: dict[str, Any]) -> Any:
        """confluent-kafka's ``Schema`` of ``schema`` (its text with sorted keys: the same text every run)."""
        return _client_module().Schema(json.dumps(schema, ensure_ascii=False, sort_keys=True), _TYPES[schema_format])

    def check(self, schema_format: str, schema: dict[str, Any]) -> None:
        """Whether the registry would accept ``schema`` (a dry run): :class:`SchemaRegistryRefusal` if not."""
        if self._latest(schema_format) is None:
            return
        try:
            accepted = self.client.test_compatibility(self.subject, self.schema(schema_format, schema))
        except _registry_error() as err:
            raise self._access_error(err, "test a schema") from None
        if not accepted:
            raise self._refusal(schema_format, schema, "its compatibility check refuses it")

    def register(self, schema_format: str, schema: dict[str, Any]) -> int:
        """Register ``schema`` (a new version when it differs); its id. :class:`SchemaRegistryRefusal` if refused."""
        try:
            return self.client.register_schema(self.subject, self.schema(schema_format, schema))
        except _registry_error() as err:
            if err.http_status_code in (409, 422):
                raise self._refusal(schema_format, schema, err.error_message) from None
            raise self._access_error(err, "register a schema") from None

    def _refusal(self, schema_format: str, schema: dict[str, Any], why: str) -> SchemaRegistryRefusal:
        latest = self._latest(schema_format)
        changes = schema_changes(schema_format, latest, schema) if latest is not None else []
        return SchemaRegistryRefusal(
            f"the Schema Registry ({self.where}) refuses the tab's schema as a new version of subject "
            f"{self.subject!r}: {'; '.join(changes) or 'no field changed'}. The registry says: {why}"
        )

    def encoder(
        self, schema_format: str, schema: dict[str, Any], names: Sequence[str]
    ) -> Callable[[Sequence[Any]], bytes]:
        """
        What makes a record's value from a row's cells (one per name): confluent-kafka's serializer
        of the registered ``schema``, already used once here (the schema's id looked up).
        """
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.schema_registry.json_schema import JSONSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        topic_subject_name_strategy = _client_module().topic_subject_name_strategy
        memo = (schema_format, self.schema(schema_format, schema).schema_str or "", tuple(names))
        if memo in self._encoders:
            return self._encoders[memo]
        conf = {"auto.register.schemas": False, "subject.name.strategy": topic_subject_name_strategy}
        if schema_format == AVRO:
            serializer: Any = AvroSerializer(self.client, self.schema(schema_format, schema), conf=conf)
        else:  # the other way round
            serializer = JSONSerializer(self.schema(schema_format, schema), self.client, conf=conf)
        encode = RowSerializer(serializer, tuple(names), SerializationContext(self.topic, MessageField.VALUE))
        try:
            encode([])
        except _registry_error() as err:
            raise self._access_error(err, "look up the registered schema") from None
        self._encoders[memo] = encode
        return encode


class RowSerializer:
    """A row's cells (as many as the fields, or fewer) as ``{field: cell}`` through a registry serializer."""

    def __init__(self, serializer: Any, names: tuple[str, ...], context: Any) -> None:
        self.serializer = serializer
        self.names = names
        self.empty = dict.fromkeys(names)
        self.context = context

    def __call__(self, cells: Sequence[Any]) -> bytes:
        value = dict(self.empty)
        value.update(zip(self.names, cells, strict=False))
        return self.serializer(value, self.context)
