"""
Backfills of forms in five locales, through the unmodified ``GSheetsHook`` and the local Sheets
server (which formats dates as each locale does): each selects exactly its interval's rows, though
"05/11/2026" is 5 November in en_GB and fr_FR and would be 11 May read as en_US.
"""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.devkit.sheets_server import FORMS_LOCALISED, LOCALES
from airflow_provider_sheets.errors import SheetsConfigError
from airflow_provider_sheets.hooks.sheets import SheetsConnection
from airflow_provider_sheets.pipeline.batch import RunContext
from tests.unit.pipeline.fakes import SPREADSHEET_ID, Harness

ZONES = {
    "en_US": "America/New_York",
    "en_GB": "Europe/London",
    "de_DE": "Europe/Berlin",
    "fr_FR": "Europe/Paris",
    "ko_KR": "Asia/Seoul",
}
# Wall-clock submission times in the spreadsheet's zone; the backfill is 5 November, 00:00 to 24:00 there.
SUBMITTED = [
    datetime(2026, 11, 4, 23, 59, 59),  # the evening before
    datetime(2026, 11, 5, 0, 0, 0),  # the interval's first instant
    datetime(2026, 11, 5, 9, 5, 3),
    datetime(2026, 5, 11, 9, 5, 3),  # 11 May: what "05/11/2026" means in en_US
    datetime(2026, 11, 5, 23, 59, 59),
    datetime(2026, 11, 6, 0, 0, 0),  # the interval's end, excluded
    datetime(2026, 11, 5, 14, 30, 0),  # an afternoon (오후 in ko_KR)
]
IN_INTERVAL = [3, 4, 6, 8]  # sheet rows (row 1 is the header)


def _form(server, locale: str) -> tuple[str, str]:
    tab, timestamp = FORMS_LOCALISED[locale]
    rows = [[timestamp, "Name", "Score"]] + [[moment, f"person {i}", 3.5] for i, moment in enumerate(SUBMITTED)]
    server.create_spreadsheet(SPREADSHEET_ID, {tab: rows}, time_zone=ZONES[locale], locale=locale)
    return tab, timestamp


def _backfill(locale: str) -> RunContext:
    zone = ZoneInfo(ZONES[locale])
    interval = (datetime(2026, 11, 5, tzinfo=zone), datetime(2026, 11, 6, tzinfo=zone))
    return RunContext("forms", "backfill__1", "publish", run_type="backfill", data_interval=interval)


def _harness(server) -> Harness:
    h = Harness([])
    h.reader = accel.reader(SheetsConnection(api_endpoint=server.url))  # the real reader, over HTTP
    return h


@pytest.mark.parametrize("locale", LOCALES)
def test_a_backfill_selects_exactly_its_rows_in_every_locale(server, locale):
    tab, timestamp = _form(server, locale)
    h = _harness(server)
    summary = h.run(_backfill(locale), sheet_name=tab, mapping_process=False)

    assert [int(sent.key) for sent in h.publisher.sent] == IN_INTERVAL
    assert summary.as_xcom()["rows_published"] == len(IN_INTERVAL)
    # the records carry the cells as this locale shows them (so the server really formatted them)
    first = json.loads(h.publisher.sent[0].value)
    shown = {
        "en_US": "11/5/2026 0:00:00",
        "en_GB": "05/11/2026 00:00:00",
        "de_DE": "05.11.2026 00:00:00",
        "fr_FR": "05/11/2026 00:00:00",
        "ko_KR": "2026. 11. 5 \uc624\uc804 12:00:00",
    }
    assert first[timestamp] == shown[locale]
    assert first["Score"] == ("3,5" if locale in ("de_DE", "fr_FR") else "3.5")


def test_a_backfill_reads_only_the_timestamp_column_and_the_selected_span(server):
    tab, _ = _form(server, "en_GB")
    h = _harness(server)
    start = len(server.requests)
    h.run(_backfill("en_GB"), sheet_name=tab, mapping_process=False)
    batch_gets = [r for r in server.requests[start:] if r.kind == "values.batchGet"]
    asked = [(r.query["ranges"], r.query["valueRenderOption"][0]) for r in batch_gets]
    quoted = f"'{tab}'"
    assert asked == [
        ([f"{quoted}!A1:Z1"], "FORMATTED_VALUE"),  # the header
        ([f"{quoted}!A2:A1000"], "UNFORMATTED_VALUE"),  # the timestamps, as serial numbers
        ([f"{quoted}!A1:Z1", f"{quoted}!A3:Z8"], "FORMATTED_VALUE"),  # the span of the selected rows
    ]
    assert batch_gets[1].query["dateTimeRenderOption"] == ["SERIAL_NUMBER"]


def test_a_backfill_with_nothing_in_its_interval_reads_no_rows(server):
    tab, _ = _form(server, "de_DE")
    zone = ZoneInfo(ZONES["de_DE"])
    run = RunContext(
        "forms",
        "backfill__2",
        "publish",
        run_type="backfill",
        data_interval=(datetime(2027, 1, 1, tzinfo=zone), datetime(2027, 1, 2, tzinfo=zone)),
    )
    h = _harness(server)
    start = len(server.requests)
    h.run(run, sheet_name=tab, mapping_process=False)
    assert h.publisher.sent == []
    assert [r.kind for r in server.requests[start:]] == ["spreadsheets.get", "values.batchGet", "values.batchGet"]


def test_text_in_the_timestamp_column_is_read_in_the_locale_or_named(server):
    tab, _ = _form(server, "en_GB")
    server.set_cell(SPREADSHEET_ID, tab, 4, 1, "05/11/2026 10:00:00")  # typed as text: day first in en_GB
    h = _harness(server)
    h.run(_backfill("en_GB"), sheet_name=tab, mapping_process=False)
    assert [int(sent.key) for sent in h.publisher.sent] == IN_INTERVAL

    server.set_cell(SPREADSHEET_ID, tab, 5, 1, "next Tuesday")
    h = _harness(server)
    with pytest.raises(SheetsConfigError) as info:
        h.run(_backfill("en_GB"), sheet_name=tab, mapping_process=False)
    assert str(info.value).startswith(
        "row 5: cell A5 ('Timestamp') cannot be placed in time: 'next Tuesday' is text that is not a date-time of "
        "locale en_GB, nor ISO 8601 (spreadsheet locale en_GB, time zone Europe/London). Nothing was published."
    )
    assert h.publisher.sent == []
