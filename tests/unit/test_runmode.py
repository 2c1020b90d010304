"""The run-type decision table and timestamp parsing (pure)."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_sheets.errors import SheetsConfigError
from airflow_provider_sheets.runmode import FROM_ROW, FULL_REFRESH, INCREMENTAL, INTERVAL, plan_run, transactional_id
from airflow_provider_sheets.timestamps import in_interval, parse_timestamp, sheet_zone

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
    with pytest.raises(SheetsConfigError, match=message):
        plan_run(run_type, interval, **options)


SEOUL = ZoneInfo("Asia/Seoul")


@pytest.mark.parametrize(
    ("cell", "zone", "expected"),
    [
        ("11/2/2026 9:07:01", ZoneInfo("UTC"), datetime(2026, 11, 2, 9, 7, 1, tzinfo=timezone.utc)),
        ("11/2/2026 18:07:01", SEOUL, datetime(2026, 11, 2, 9, 7, 1, tzinfo=timezone.utc)),
        ("2026-11-02 09:07:01", ZoneInfo("UTC"), datetime(2026, 11, 2, 9, 7, 1, tzinfo=timezone.utc)),
        ("2026-11-02T09:07:01+00:00", SEOUL, datetime(2026, 11, 2, 9, 7, 1, tzinfo=timezone.utc)),
        # 45658 is 2025-01-01 in Sheets and Excel; +365 +305 days is 2026-11-02
        (46328.25, ZoneInfo("UTC"), datetime(2026, 11, 2, 6, 0, tzinfo=timezone.utc)),
        (1, ZoneInfo("UTC"), datetime(1899, 12, 31, tzinfo=timezone.utc)),
    ],
)
def test_parse_timestamp(cell, zone, expected):
    assert parse_timestamp(cell, zone) == expected


@pytest.mark.parametrize("blank", [None, ""])
def test_parse_blank_timestamp(blank):
    assert parse_timestamp(blank, ZoneInfo("UTC")) is None


def test_parse_timestamp_names_the_format():
    with pytest.raises(ValueError, match=r"'yesterday' does not match the timestamp format '%m/%d/%Y %H:%M:%S'"):
        parse_timestamp("yesterday", ZoneInfo("UTC"))


def test_custom_format():
    parsed = parse_timestamp("02.11.2026 09:07", ZoneInfo("Europe/Berlin"), "%d.%m.%Y %H:%M")
    assert parsed == datetime(2026, 11, 2, 8, 7, tzinfo=timezone.utc)


@pytest.mark.parametrize(("name", "key"), [("Asia/Seoul", "Asia/Seoul"), ("", "UTC"), ("Mars/Base", "UTC")])
def test_sheet_zone(name, key):
    assert sheet_zone(name).key == key


@pytest.mark.parametrize(
    ("moment", "inside"),
    [(START, True), (END, False), (datetime(2026, 11, 2, 18, 14, 59, tzinfo=SEOUL), True)],
)
def test_in_interval_is_half_open(moment, inside):
    assert in_interval(moment, START, END) is inside


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
