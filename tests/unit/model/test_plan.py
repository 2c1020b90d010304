"""The run-type decision table and transactional ids (pure)."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_sheets.model.plan import (
    FROM_ROW,
    FULL_REFRESH,
    INCREMENTAL,
    INTERVAL,
    PlanError,
    plan_run,
    transactional_id,
)

START = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
END = datetime(2026, 11, 2, 9, 15, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("run_type", "interval", "options", "mode", "publish", "moves", "after_row"),
    [
        ("scheduled", (START, END), {}, INCREMENTAL, True, True, None),
        ("manual", (None, None), {}, INCREMENTAL, True, True, None),
        ("manual", (START, START), {}, INCREMENTAL, True, True, None),
        (None, None, {}, INCREMENTAL, True, True, None),
        ("DagRunType.MANUAL", None, {}, INCREMENTAL, True, True, None),
        ("asset_triggered", None, {}, INCREMENTAL, True, True, None),
        ("manual", None, {"dry_run": True}, INCREMENTAL, False, False, None),
        ("manual", None, {"full_refresh": True}, FULL_REFRESH, True, True, 1),
        ("manual", None, {"full_refresh": True, "dry_run": True}, FULL_REFRESH, False, False, 1),
        ("manual", None, {"start_row": 40}, FROM_ROW, True, True, 39),
        ("scheduled", (START, END), {"start_row": 2}, FROM_ROW, True, True, 1),
        ("backfill", (START, END), {}, INTERVAL, True, False, 1),
        ("backfill", (START, END), {"dry_run": True}, INTERVAL, False, False, 1),
    ],
)
def test_decision_table(run_type, interval, options, mode, publish, moves, after_row):
    plan = plan_run(run_type, interval, **options)
    assert (plan.mode, plan.publish, plan.moves_watermark, plan.after_row) == (mode, publish, moves, after_row)
    assert plan.reason
    if mode == INTERVAL:
        assert plan.interval == interval
        assert "live watermark is not touched" in plan.reason


def test_header_row_moves_the_first_data_row():
    assert plan_run("manual", None, header_row=3, full_refresh=True).after_row == 3


@pytest.mark.parametrize(
    ("run_type", "interval", "options", "message"),
    [
        ("manual", None, {"full_refresh": True, "start_row": 5}, "cannot be combined"),
        ("manual", None, {"start_row": 1}, "start_row must be below the header row"),
        ("backfill", (None, None), {}, "no data interval"),
        ("backfill", (START, START), {}, "no data interval"),
        ("backfill", (START, END), {"full_refresh": True}, "manual runs only"),
        ("backfill", (START, END), {"start_row": 3}, "manual runs only"),
    ],
)
def test_decision_table_rejects(run_type, interval, options, message):
    with pytest.raises(PlanError, match=message):
        plan_run(run_type, interval, **options)


def test_transactional_id_is_stable_per_task_and_tab_and_per_interval_for_backfills():
    def tid(run_type, interval, **options):
        return transactional_id(plan_run(run_type, interval, **options), "forms", "publish", "1AbC", 0)

    live = "sheets-to-kafka.forms.publish.1AbC.gid0"
    # every run that moves the live watermark shares one id (the lease keeps them one at a time)
    assert tid("scheduled", (START, END)) == tid("manual", (None, None)) == live
    assert tid("manual", None, full_refresh=True) == tid("manual", None, start_row=7) == live
    # backfills: one id per interval, the same for every attempt of that interval
    later = (END, datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc))
    first = tid("backfill", (START, END))
    assert first == f"{live}.20261102T090000-20261102T091500"
    assert first == tid("backfill", (START.astimezone(ZoneInfo("Asia/Seoul")), END))
    assert tid("backfill", later) not in (first, live)
