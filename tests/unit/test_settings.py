"""The settings' coercers and BatchSettings.check: good and bad values of every type a template or a Param gives."""

from __future__ import annotations

import math
import re
from dataclasses import fields

import pytest

from airflow_provider_sheets.errors import SheetsConfigError
from airflow_provider_sheets.settings import (
    AT_LEAST_ONCE,
    DEFAULT_PAGE_SIZE,
    DELIVERIES,
    EXACTLY_ONCE,
    RENDER_OPTIONS,
    BatchSettings,
    as_bool,
    as_choice,
    as_int,
    as_non_negative,
    as_optional_int,
    as_optional_text,
    as_positive,
    as_text,
)


def _re(text: str) -> str:
    """``text`` matched literally in a ``match=`` pattern."""
    return re.escape(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (None, False),
        ("true", True),
        ("True", True),
        (" TRUE ", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("", False),
        ("none", False),
        ("None", False),
        (1, True),
        (0, False),
    ],
)
def test_as_bool(value, expected):
    assert as_bool("dry_run", value) is expected


@pytest.mark.parametrize("value", ["maybe", "t", "y", "2", 2, -1, 1.0, 0.0, 0.5, [], {}, "true!"])
def test_as_bool_rejects(value):
    with pytest.raises(SheetsConfigError, match=rf"^dry_run must be true or false, got {_re(repr(value))}$"):
        as_bool("dry_run", value)


@pytest.mark.parametrize(
    ("value", "minimum", "expected"),
    [
        (1, 1, 1),
        (5000, 1, 5000),
        ("7", 1, 7),
        (" 7 ", 1, 7),
        ("+8", 1, 8),
        (5.0, 1, 5),
        (0, 0, 0),
        ("0", 0, 0),
        (-2, -5, -2),
        (10**12, 1, 10**12),
    ],
)
def test_as_int(value, minimum, expected):
    got = as_int("page_size", value, minimum)
    assert got == expected
    assert type(got) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "page_size must be an integer, got True"),
        (False, "page_size must be an integer, got False"),
        (None, "page_size must be an integer, got None"),
        ("", "page_size must be an integer, got ''"),
        ("none", "page_size must be an integer, got 'none'"),
        ("abc", "page_size must be an integer, got 'abc'"),
        ("1.0", "page_size must be an integer, got '1.0'"),
        ("1e3", "page_size must be an integer, got '1e3'"),
        ("0x10", "page_size must be an integer, got '0x10'"),
        (5.5, "page_size must be an integer, got 5.5"),
        (math.nan, "page_size must be an integer, got nan"),
        ([1], "page_size must be an integer, got [1]"),
        (0, "page_size must be at least 1, got 0"),
        (-1, "page_size must be at least 1, got -1"),
        ("-3", "page_size must be at least 1, got -3"),
        (0.0, "page_size must be at least 1, got 0"),
    ],
)
def test_as_int_rejects(value, message):
    with pytest.raises(SheetsConfigError, match=f"^{_re(message)}$"):
        as_int("page_size", value)


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_as_int_rejects_infinity_with_a_config_error(value):
    with pytest.raises(SheetsConfigError, match="page_size must be an integer"):
        as_int("page_size", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        (" ", None),
        ("none", None),
        ("None", None),
        (" NULL ", None),
        ("null", None),
        (5, 5),
        ("5", 5),
        (3.0, 3),
    ],
)
def test_as_optional_int(value, expected):
    assert as_optional_int("max_rows", value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "max_rows must be at least 1, got 0"),
        ("0", "max_rows must be at least 1, got 0"),
        (False, "max_rows must be an integer, got False"),
        ("nil", "max_rows must be an integer, got 'nil'"),
        (1.5, "max_rows must be an integer, got 1.5"),
    ],
)
def test_as_optional_int_rejects(value, message):
    with pytest.raises(SheetsConfigError, match=f"^{_re(message)}$"):
        as_optional_int("max_rows", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1.0), (0.5, 0.5), ("2", 2.0), (" 2.5 ", 2.5), ("1e-3", 0.001), (300, 300.0)],
)
def test_as_positive(value, expected):
    got = as_positive("flush_timeout", value)
    assert got == expected
    assert type(got) is float


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "flush_timeout must be positive, got 0"),
        (0.0, "flush_timeout must be positive, got 0.0"),
        ("0", "flush_timeout must be positive, got '0'"),
        (-1, "flush_timeout must be positive, got -1"),
        (math.nan, "flush_timeout must be a finite number of seconds, got nan"),
        ("nan", "flush_timeout must be a finite number of seconds, got 'nan'"),
        (math.inf, "flush_timeout must be a finite number of seconds, got inf"),
        ("inf", "flush_timeout must be a finite number of seconds, got 'inf'"),
        (True, "flush_timeout must be a number of seconds, got True"),
        (False, "flush_timeout must be a number of seconds, got False"),
        (None, "flush_timeout must be a number of seconds, got None"),
        ("", "flush_timeout must be a number of seconds, got ''"),
        ("none", "flush_timeout must be a number of seconds, got 'none'"),
        ("10s", "flush_timeout must be a number of seconds, got '10s'"),
        ([1], "flush_timeout must be a number of seconds, got [1]"),
    ],
)
def test_as_positive_rejects(value, message):
    with pytest.raises(SheetsConfigError, match=f"^{_re(message)}$"):
        as_positive("flush_timeout", value)


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (0.0, 0.0), (-0.0, 0.0), (0.5, 0.5), ("1", 1.0), (3, 3.0)])
def test_as_non_negative(value, expected):
    got = as_non_negative("lease_settle", value)
    assert got == expected
    assert type(got) is float


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "lease_settle must be zero or more, got -1"),
        (-0.5, "lease_settle must be zero or more, got -0.5"),
        (False, "lease_settle must be a number of seconds, got False"),
        (True, "lease_settle must be a number of seconds, got True"),
        (None, "lease_settle must be a number of seconds, got None"),
        ("abc", "lease_settle must be a number of seconds, got 'abc'"),
    ],
)
def test_as_non_negative_rejects(value, message):
    with pytest.raises(SheetsConfigError, match=f"^{_re(message)}$"):
        as_non_negative("lease_settle", value)


@pytest.mark.parametrize("value", ["0", "0.0", " 0 "])
def test_as_non_negative_takes_zero_spelled_as_a_string(value):
    assert as_non_negative("lease_settle", value) == 0.0


@pytest.mark.parametrize("value", ["a", "Form Responses 1", " padded ", "0"])
def test_as_text(value):
    assert as_text("topic", value) == value


@pytest.mark.parametrize("value", ["", " ", "\n\t", None, 5, b"bytes", ["a"], True])
def test_as_text_rejects(value):
    with pytest.raises(
        SheetsConfigError, match=rf"^topic must be a non-empty string after rendering, got {_re(repr(value))}$"
    ):
        as_text("topic", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a", "a"), ("", None), (None, None), (" ", None), ("\n\t", None), ("Tab 1", "Tab 1")],
)
def test_as_optional_text(value, expected):
    assert as_optional_text("sheet_name", value) == expected


@pytest.mark.parametrize("value", [5, b"bytes", ["a"], True])
def test_as_optional_text_rejects_what_is_not_a_string(value):
    with pytest.raises(SheetsConfigError, match=rf"^sheet_name must be a string, got {_re(repr(value))}$"):
        as_optional_text("sheet_name", value)


@pytest.mark.parametrize(
    ("value", "choices", "ok"),
    [
        ("fail", ("fail", "continue"), True),
        ("continue", ("fail", "continue"), True),
        ("FAIL", ("fail", "continue"), False),
        (" fail", ("fail", "continue"), False),
        ("", ("fail", "continue"), False),
        (None, ("fail", "continue"), False),
        (["fail"], ("fail", "continue"), False),
    ],
)
def test_as_choice(value, choices, ok):
    if ok:
        assert as_choice("on_drift", value, choices) == value
        return
    with pytest.raises(SheetsConfigError, match=rf"^on_drift must be one of fail, continue, got {_re(repr(value))}$"):
        as_choice("on_drift", value, choices)


# -- BatchSettings.check ---------------------------------------------------------------------------

DEFAULTS = {f.name: f.default for f in fields(BatchSettings) if f.name not in ("spreadsheet_id", "topic")}


def rendered(**values):
    """Every name, as the operator hands them in (its attributes after rendering), with ``values`` over them."""
    base = {"spreadsheet_id": "1SheetId", "topic": "responses", **DEFAULTS}
    base.update(values)
    return base


def test_names_are_the_fields_in_order():
    assert BatchSettings.names() == tuple(f.name for f in fields(BatchSettings))
    assert BatchSettings.names()[:2] == ("spreadsheet_id", "topic")


def test_check_keeps_the_defaults():
    checked = BatchSettings.check(rendered())
    expected = {**DEFAULTS, "spreadsheet_id": "1SheetId", "topic": "responses", "state_topic": "responses.state"}
    expected["typed_values"] = True  # the default (None) is typed, with the default value_render_option
    assert {name: getattr(checked, name) for name in BatchSettings.names()} == expected
    assert checked.page_size == DEFAULT_PAGE_SIZE
    assert checked.delivery == AT_LEAST_ONCE
    assert checked.on_drift == "fail"


@pytest.mark.parametrize(
    ("topic", "state_topic", "expected"),
    [
        ("responses", "", "responses.state"),
        ("responses", None, "responses.state"),
        ("a.b-c", "", "a.b-c.state"),
        ("responses", "my-state", "my-state"),
    ],
)
def test_state_topic_defaults_to_the_topic_dot_state(topic, state_topic, expected):
    assert BatchSettings.check(rendered(topic=topic, state_topic=state_topic)).state_topic == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({"page_size": "100"}, {"page_size": 100}, id="page_size-string"),
        pytest.param({"header_row": 3.0}, {"header_row": 3}, id="header_row-whole-float"),
        pytest.param({"start_row": "", "max_rows": "none"}, {"start_row": None, "max_rows": None}, id="optional-ints"),
        pytest.param({"start_row": "5", "max_rows": 10}, {"start_row": 5, "max_rows": 10}, id="optional-ints-set"),
        pytest.param({"dry_run": "True", "full_refresh": "0"}, {"dry_run": True, "full_refresh": False}, id="bools"),
        pytest.param({"dry_run": None}, {"dry_run": False}, id="bool-none"),
        pytest.param(
            {"sheet_name": "", "key_column": "", "dead_letter_topic": "", "watermark_key": "", "api_endpoint": ""},
            {
                "sheet_name": None,
                "key_column": None,
                "dead_letter_topic": None,
                "watermark_key": None,
                "api_endpoint": None,
            },
            id="empty-texts-are-none",
        ),
        pytest.param(
            {"flush_timeout": "30", "lease_ttl": 60}, {"flush_timeout": 30.0, "lease_ttl": 60.0}, id="seconds"
        ),
        pytest.param({"lease_settle": 0}, {"lease_settle": 0.0}, id="settle-zero"),
        pytest.param({"delivery": EXACTLY_ONCE}, {"delivery": EXACTLY_ONCE}, id="exactly-once"),
        pytest.param({"on_drift": "republish"}, {"on_drift": "republish"}, id="on_drift"),
        pytest.param({"value_render_option": "FORMULA"}, {"value_render_option": "FORMULA"}, id="render-option"),
    ],
)
def test_check_coerces(values, expected):
    checked = BatchSettings.check(rendered(**values))
    assert {name: getattr(checked, name) for name in expected} == expected
    for name, value in expected.items():
        assert type(getattr(checked, name)) is type(value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("spreadsheet_id", ""),
        ("spreadsheet_id", None),
        ("topic", " "),
        ("gcp_conn_id", ""),
        ("kafka_config_id", None),
        ("page_size", 0),
        ("page_size", "many"),
        ("header_row", True),
        ("header_row", 0),
        ("start_row", 0),
        ("start_row", "x"),
        ("max_rows", -5),
        ("max_rows", 2.5),
        ("dry_run", "maybe"),
        ("full_refresh", 2),
        ("flush_timeout", 0),
        ("lease_ttl", -1),
        ("lease_wait", "soon"),
        ("checkpoint_interval", -1),
        ("checkpoint_interval", None),
        ("lease_settle", -0.1),
        ("delivery", "exactly-once"),
        ("delivery", None),
        ("on_drift", "ignore"),
        ("value_render_option", "formatted_value"),
    ],
)
def test_check_names_the_wrong_setting(name, value):
    with pytest.raises(SheetsConfigError) as info:
        BatchSettings.check(rendered(**{name: value}))
    assert str(info.value).startswith(f"{name} must be "), str(info.value)
    assert repr(value) in str(info.value) or str(value) in str(info.value)


@pytest.mark.parametrize(
    ("name", "choices"),
    [
        ("delivery", DELIVERIES),
        ("value_render_option", RENDER_OPTIONS),
        ("on_drift", ("fail", "continue", "republish", "reconcile")),
    ],
)
def test_check_lists_the_choices(name, choices):
    with pytest.raises(SheetsConfigError, match=f"{name} must be one of {', '.join(choices)}, got 'nope'"):
        BatchSettings.check(rendered(**{name: "nope"}))


def test_check_needs_every_name():
    values = rendered()
    del values["page_size"]
    with pytest.raises(KeyError, match="page_size"):
        BatchSettings.check(values)


def test_check_leaves_its_argument_alone():
    values = rendered(page_size="100", state_topic="")
    BatchSettings.check(values)
    assert values["page_size"] == "100"
    assert values["state_topic"] == ""


def test_settings_are_frozen():
    checked = BatchSettings.check(rendered())
    with pytest.raises(AttributeError):
        checked.topic = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["lease_wait", "checkpoint_interval", "lease_settle"])
def test_zero_seconds_are_a_setting_of_their_own(name):
    """0: fail at once on a held lease; checkpoint after every page; no settle."""
    assert getattr(BatchSettings.check(rendered(**{name: 0})), name) == 0.0


def test_the_operator_and_the_settings_have_the_same_arguments_and_defaults():
    """The operator's signature is the public one; BatchSettings checks it: neither may drift from the other."""
    import inspect

    from airflow_provider_sheets.transfers.sheet_to_kafka import SheetToKafkaOperator

    parameters = inspect.signature(SheetToKafkaOperator.__init__).parameters
    operator = {name: p.default for name, p in parameters.items() if name not in ("self", "kwargs")}
    settings = {f.name: f.default for f in fields(BatchSettings)}
    assert operator.keys() == settings.keys()
    required = [name for name, default in operator.items() if default is inspect.Parameter.empty]
    assert required == ["spreadsheet_id", "topic"]
    # state_topic: None on the operator means "<topic>.state", which check() fills in
    differ = {n: (operator[n], settings[n]) for n in operator if n not in required and n != "state_topic"}
    assert {n: pair for n, pair in differ.items() if pair[0] != pair[1]} == {}


@pytest.mark.parametrize(
    ("typed_values", "render", "expected"),
    [
        (None, "FORMATTED_VALUE", True),
        (None, "UNFORMATTED_VALUE", False),
        (None, "FORMULA", False),
        ("false", "FORMATTED_VALUE", False),
        ("True", "FORMATTED_VALUE", True),
        (False, "UNFORMATTED_VALUE", False),
        ("", "FORMATTED_VALUE", True),
    ],
)
def test_typed_values_by_default_unless_a_render_option_is_asked_for(typed_values, render, expected):
    values = {**rendered(), "typed_values": typed_values, "value_render_option": render}
    assert BatchSettings.check(values).typed_values is expected


def test_typed_values_and_a_render_option_asked_for_together_are_refused():
    with pytest.raises(SheetsConfigError, match=r"value_render_option='FORMULA' applies to formatted values only"):
        BatchSettings.check({**rendered(), "typed_values": True, "value_render_option": "FORMULA"})
