"""What on_drift does about a drift finding: fail with the caller's fix, or warn and go on."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_sheets.errors import DriftError, SheetsConfigError
from airflow_provider_sheets.model.checks import DRIFT_POLICIES
from airflow_provider_sheets.pipeline.drift import CONTINUE, FAIL, RECONCILE, REPUBLISH, on_drift

LOG = logging.getLogger("test")
FINDING = "row 6 of tab 'T', the last row already published, holds different cells: rows above …"
FIX = "Nothing was published. To proceed: …"


def test_the_policies_are_the_settings_choices():
    assert (FAIL, CONTINUE, REPUBLISH, RECONCILE) == DRIFT_POLICIES


def test_fail_raises_the_finding_then_the_fix(caplog):
    with caplog.at_level(logging.WARNING, logger="test"), pytest.raises(DriftError) as info:
        on_drift(FAIL, FINDING, FIX, LOG)
    assert str(info.value) == f"{FINDING} {FIX}"
    assert isinstance(info.value, SheetsConfigError), "a drift is not retried: it needs a decision"
    assert caplog.records == []


@pytest.mark.parametrize(("policy", "republish"), [(CONTINUE, False), (REPUBLISH, True), (RECONCILE, True)])
def test_continue_and_republish_warn_and_go_on(policy, republish, caplog):
    with caplog.at_level(logging.WARNING, logger="test"):
        assert on_drift(policy, FINDING, FIX, LOG) is republish
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"{FINDING} on_drift={policy!r}: going on."
    assert FIX not in record.getMessage(), "the fix is for a failed run"


@pytest.mark.parametrize("policy", [CONTINUE, REPUBLISH])
def test_a_logger_adapter_is_accepted(policy, caplog):
    adapter = logging.LoggerAdapter(LOG, {})
    with caplog.at_level(logging.WARNING, logger="test"):
        on_drift(policy, FINDING, FIX, adapter)
    assert "going on." in caplog.text
