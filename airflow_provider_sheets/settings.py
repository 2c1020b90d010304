"""
The one set of coercers for settings: the operator's rendered template fields and Params, the
sensor's arguments, the stream runner's and the command line's. Each takes the name the user knows
the setting by (``page_size``, ``--page-size``) and raises :class:`SheetsConfigError` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from airflow_provider_sheets.errors import SheetsConfigError
from airflow_provider_sheets.model.checks import DRIFT_POLICIES
from airflow_provider_sheets.model.formats import KEY_FORMATS, VALUE_FORMATS
from airflow_provider_sheets.model.sheet import RENDER_OPTIONS

#: the provider's section of Airflow's configuration (``[sheets_to_kafka]``, ``AIRFLOW__SHEETS_TO_KAFKA__…``)
CONFIG_SECTION = "sheets_to_kafka"
AT_LEAST_ONCE = "at_least_once"
EXACTLY_ONCE = "exactly_once"
DELIVERIES = (AT_LEAST_ONCE, EXACTLY_ONCE)
#: Default number of rows per values request; Google advises payloads of at most ~2 MB.
DEFAULT_PAGE_SIZE = 5_000

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "", "none")
_NONE = ("", "none", "null")


def as_bool(name: str, value: Any) -> bool:
    """``True``/``False``, or their spellings in a template or a Param (``"true"``, ``"0"``, ``""``…)."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SheetsConfigError(f"{name} must be true or false, got {value!r}")


def as_int(name: str, value: Any, minimum: int = 1) -> int:
    """An integer of at least ``minimum`` (a whole float or a decimal string is one too; a bool is not)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value)
        if isinstance(value, float) and value != number:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise SheetsConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise SheetsConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def as_optional_int(name: str, value: Any, minimum: int = 1) -> int | None:
    """:func:`as_int`, or ``None`` for ``None`` and its spellings (``""``, ``"none"``, ``"null"``)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    return as_int(name, value, minimum)


def _seconds(name: str, value: Any) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise SheetsConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(number):
        raise SheetsConfigError(f"{name} must be a finite number of seconds, got {value!r}")
    return number


def as_positive(name: str, value: Any) -> float:
    """A number of seconds above zero."""
    number = _seconds(name, value)
    if not number > 0:
        raise SheetsConfigError(f"{name} must be positive, got {value!r}")
    return number


def as_non_negative(name: str, value: Any) -> float:
    """A number of seconds, zero or more."""
    number = _seconds(name, value)
    if number < 0:
        raise SheetsConfigError(f"{name} must be zero or more, got {value!r}")
    return number


def as_text(name: str, value: Any) -> str:
    """A non-empty string (after rendering: a template may give anything)."""
    if not isinstance(value, str) or not value.strip():
        raise SheetsConfigError(f"{name} must be a non-empty string after rendering, got {value!r}")
    return value


def as_optional_text(name: str, value: Any) -> str | None:
    """A string, or ``None`` for nothing, an empty or a blank one (a template that rendered to nothing)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise SheetsConfigError(f"{name} must be a string, got {value!r}")
    return value


def as_optional_bool(name: str, value: Any) -> bool | None:
    """:func:`as_bool`, or ``None`` (the default decides) for ``None`` and its spellings."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    return as_bool(name, value)


def as_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise SheetsConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def typed_values_for(typed_values: bool | None, value_render_option: str, name: str = "typed_values") -> bool:
    """
    Whether values are typed: as asked, else (``None``, the default) unless the cells are asked for
    as some ``value_render_option`` other than the default one, which only formatted values can honour.
    """
    if typed_values is None:
        return value_render_option == RENDER_OPTIONS[0]
    if typed_values and value_render_option != RENDER_OPTIONS[0]:
        raise SheetsConfigError(
            f"{name} reads the cells' values and number formats itself; value_render_option="
            f"{value_render_option!r} applies to formatted values only: set {name}=False with it"
        )
    return typed_values


@dataclass(frozen=True)
class BatchSettings:
    """
    A batch run's settings, checked: the operator's arguments once templates and Params are
    rendered (see :class:`~airflow_provider_sheets.transfers.sheet_to_kafka.SheetToKafkaOperator`
    for what each means).
    """

    spreadsheet_id: str
    topic: str
    sheet_name: str | None = None
    gcp_conn_id: str = "google_cloud_default"
    kafka_config_id: str = "kafka_default"
    api_endpoint: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    key_column: str | None = None
    watermark_key: str | None = None
    header_row: int = 1
    dry_run: bool = False
    full_refresh: bool = False
    start_row: int | None = None
    max_rows: int | None = None
    timestamp_column: str = "Timestamp"
    timestamp_format: str | None = None
    value_render_option: str = "FORMATTED_VALUE"
    impersonation_chain: str | Sequence[str] | None = field(default=None, repr=False)
    #: may hold credentials (sasl.password): never in a repr
    producer_config: dict[str, Any] | None = field(default=None, repr=False)
    flush_timeout: float = 300.0
    lease_ttl: float = 600.0
    lease_settle: float = 0.1
    lease_wait: float = 120.0
    delivery: str = AT_LEAST_ONCE
    #: default ``<topic>.state`` (filled in by :meth:`check`)
    state_topic: str = ""
    on_drift: str = "fail"
    dead_letter_topic: str | None = None
    checkpoint_interval: float = 60.0
    mapping_process: bool | None = None
    airflow_headers: bool = True
    sheets_quota_per_minute: int | None = None
    reconcile: bool = False
    fingerprint_topic: str | None = None
    #: ``None`` (the operator's default): typed unless a ``value_render_option`` is asked for
    typed_values: bool | None = None
    event_time_column: str | None = None
    value_format: str = "json"
    key_format: str = "text"
    schema_registry_conn_id: str = "schema_registry_default"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def check(cls, values: dict[str, Any]) -> BatchSettings:
        """Coerce rendered values (any type a template or a Param gives), or name the one that is wrong."""
        v = dict(values)
        for name in ("spreadsheet_id", "topic", "gcp_conn_id", "kafka_config_id", "schema_registry_conn_id"):
            v[name] = as_text(name, v[name])
        for name in ("page_size", "header_row"):
            v[name] = as_int(name, v[name], minimum=1)
        for name in ("start_row", "max_rows"):
            v[name] = as_optional_int(name, v[name], minimum=1)
        v["sheets_quota_per_minute"] = as_optional_int("sheets_quota_per_minute", v["sheets_quota_per_minute"], 0)
        v["mapping_process"] = as_optional_bool("mapping_process", v["mapping_process"])
        v["typed_values"] = as_optional_bool("typed_values", v["typed_values"])
        for name in ("dry_run", "full_refresh", "airflow_headers", "reconcile"):
            v[name] = as_bool(name, v[name])
        for name in (
            "sheet_name",
            "key_column",
            "dead_letter_topic",
            "watermark_key",
            "state_topic",
            "api_endpoint",
            "timestamp_format",
            "fingerprint_topic",
            "event_time_column",
        ):
            v[name] = as_optional_text(name, v[name])
        for name in ("flush_timeout", "lease_ttl"):
            v[name] = as_positive(name, v[name])
        # 0: wait for no other run's lease; checkpoint after every page; no settle (runs claiming together may all stop)
        for name in ("lease_wait", "checkpoint_interval", "lease_settle"):
            v[name] = as_non_negative(name, v[name])
        v["delivery"] = as_choice("delivery", v["delivery"], DELIVERIES)
        v["on_drift"] = as_choice("on_drift", v["on_drift"], DRIFT_POLICIES)
        v["value_format"] = as_choice("value_format", v["value_format"], VALUE_FORMATS)
        v["key_format"] = as_choice("key_format", v["key_format"], KEY_FORMATS)
        v["value_render_option"] = as_choice("value_render_option", v["value_render_option"], RENDER_OPTIONS)
        v["typed_values"] = typed_values_for(v["typed_values"], v["value_render_option"])
        v["state_topic"] = v["state_topic"] or f"{v['topic']}.state"
        return cls(**v)
