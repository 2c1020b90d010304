"""Reconcile (pure): fingerprint records, the latest per key, and each record's change."""

from __future__ import annotations

import json

import pytest

from airflow_provider_sheets.model.mapping import Record, fingerprint
from airflow_provider_sheets.model.reconcile import (
    Reconciliation,
    fingerprint_value,
    known_fingerprints,
    parse_fingerprint,
)


def test_a_fingerprint_value_is_the_row_and_the_hash_of_the_record_value():
    assert json.loads(fingerprint_value(7, b'{"a":1}')) == {"row": 7, "hash": fingerprint([b'{"a":1}'])}
    assert parse_fingerprint(fingerprint_value(7, b"x")) == (7, fingerprint([b"x"]))


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"not json", b"[]", b'{"row": "7", "hash": "h"}', b'{"row": true, "hash": "h"}', b'{"row": 7}'],
)
def test_anything_but_a_fingerprint_is_none(raw):
    assert parse_fingerprint(raw) is None


def test_the_latest_fingerprint_per_key_wins_and_a_tombstone_removes_it():
    records = [
        (b"2", fingerprint_value(2, b"a")),
        (b"3", fingerprint_value(3, b"b")),
        (b"2", fingerprint_value(2, b"a2")),
        (b"3", None),
        (None, fingerprint_value(9, b"keyless")),
    ]
    assert known_fingerprints(records) == {b"2": (2, fingerprint([b"a2"]))}


@pytest.mark.parametrize(
    ("record", "change"),
    [
        pytest.param(Record(2, b"2", b"same"), None, id="unchanged"),
        pytest.param(Record(3, b"3", b"edited"), b"update", id="changed"),
        pytest.param((9, b"9", b"new"), b"insert", id="unknown-key-as-a-plain-tuple"),
    ],
)
def test_each_record_is_an_insert_an_update_or_already_right(record, change):
    known = {b"2": (2, fingerprint([b"same"])), b"3": (3, fingerprint([b"before"])), b"4": (4, "h")}
    assert Reconciliation(known).change(record) == change


def test_the_keys_no_row_holds_are_gone_in_row_order():
    done = Reconciliation({b"k5": (5, "h"), b"k2": (2, "h"), b"k3": (3, fingerprint([b"v"]))})
    done.change(Record(3, b"k3", b"v"))
    assert done.gone() == [(b"k2", 2), (b"k5", 5)]
    assert done.unchanged == 1
