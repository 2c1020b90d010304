"""
Reconcile: after rows are deleted and edited anywhere in the tab, one reconcile run publishes exactly
what makes the topic match the sheet (updates, inserts, tombstones, each saying so in
``sheets.change``), from the fingerprints kept in the fingerprint topic. Through the unmodified
``GSheetsHook`` and the local Sheets server; the topics are the fake publishers' records.
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_sheets import accel
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from airflow_provider_sheets.errors import SheetsConfigError
from airflow_provider_sheets.hooks.sheets import SheetsConnection
from airflow_provider_sheets.model.mapping import RowMapper
from airflow_provider_sheets.pipeline.batch import RunContext
from tests.unit.pipeline.fakes import SPREADSHEET_ID, TOPIC, Harness

RUN = RunContext("forms", "scheduled__1", "publish", run_type="scheduled")
PRINTS = f"{TOPIC}.fingerprints"


def _harness(server, rows: int = 10, **grid) -> Harness:
    server.create_spreadsheet(SPREADSHEET_ID, {FORMS_TAB: [FORMS_HEADER, *forms_rows(rows)]}, **grid)
    h = Harness([])
    h.reader = accel.reader(SheetsConnection(api_endpoint=server.url))
    return h


def _sheet_view(server, key_column: str | None) -> dict[bytes, bytes]:
    """What the topic must hold after a reconcile: each row of the sheet now, as its record."""
    rows = server.get_rows(SPREADSHEET_ID, FORMS_TAB)
    mapper = RowMapper(rows[0], key_column)
    records = mapper.map_rows(2, [[_shown(c) for c in cells] for cells in rows[1:]])
    return {r.key: r.value for r in records}


def _shown(cell):
    """A stored cell as FORMATTED_VALUE shows it in an en_US sheet."""
    from airflow_provider_sheets.devkit.sample import as_submitted

    return as_submitted([cell])[0] if cell not in (None, "") else ""


def _changes(h: Harness) -> list[tuple[str, str | None]]:
    """``(key, sheets.change)`` of the last run's data records, tombstones as ``delete``."""
    return [(m.key.decode(), m.header.get("sheets.change", b"").decode()) for m in h.publisher.sent if m.topic == TOPIC]


@pytest.mark.parametrize("key_column", [None, FORMS_HEADER[2]], ids=["row-keys", "email-keys"])
def test_a_reconcile_makes_the_latest_value_per_key_match_the_sheet(server, key_column, mapping_process):
    h = _harness(server)
    options = {"fingerprint_topic": PRINTS, "key_column": key_column, "mapping_process": mapping_process}
    h.run(RUN, **options)
    server.delete_rows(SPREADSHEET_ID, FORMS_TAB, 4, 2)  # two responses removed as spam: rows 4 and 5
    server.set_cell(SPREADSHEET_ID, FORMS_TAB, 2, 2, "Edited Name")  # an edit far above the watermark

    summary = h.run(RUN, reconcile=True, **options)

    assert h.fingerprints.latest(TOPIC) == _sheet_view(server, key_column)
    assert summary.mode == "reconcile"
    assert summary.watermark_after == 9, "the tab's last row now"
    changes = _changes(h)
    if key_column is None:
        # rows 4.. moved up two: their keys now hold other responses, and keys 10 and 11 are gone
        assert changes == [
            ("2", "update"),
            *[(str(r), "update") for r in range(4, 10)],
            ("10", "delete"),
            ("11", "delete"),
        ]
    else:
        assert sorted(c for _, c in changes) == ["delete", "delete", "update"], "only the changed keys"
    assert (summary.rows_deleted, summary.rows_published) == (2, len(changes))

    h.run(RUN, reconcile=True, **options)
    assert _changes(h) == [], "a second reconcile finds nothing to do"
    assert h.publisher.sent == []


def test_a_reconcile_publishes_new_rows_as_inserts_and_sets_the_watermark(server):
    h = _harness(server, rows=4)
    options = {"fingerprint_topic": PRINTS, "mapping_process": False}
    h.run(RUN, **options)
    server.append_rows(SPREADSHEET_ID, FORMS_TAB, forms_rows(2, start=4))
    summary = h.run(RUN, reconcile=True, **options)
    assert _changes(h) == [("6", "insert"), ("7", "insert")]
    assert summary.watermark_after == 7
    h.run(RUN, **options)
    assert h.publisher.sent == [], "the incremental run after it starts after row 7"


def test_on_drift_reconcile_reconciles_when_rows_were_deleted_above_the_watermark(server, caplog):
    h = _harness(server)
    options = {"fingerprint_topic": PRINTS, "on_drift": "reconcile", "mapping_process": False}
    h.run(RUN, **options)
    server.delete_rows(SPREADSHEET_ID, FORMS_TAB, 3)
    server.append_rows(SPREADSHEET_ID, FORMS_TAB, forms_rows(1, start=10))
    summary = h.run(RUN, **options)
    assert "1 row was deleted above the watermark" in caplog.text
    assert summary.mode == "reconcile"
    assert h.fingerprints.latest(TOPIC) == _sheet_view(server, None)


def test_on_drift_reconcile_repairs_a_watermark_past_the_tabs_end(server, caplog):
    h = _harness(server, row_count=11)  # a Forms grid: exactly its rows
    options = {"fingerprint_topic": PRINTS, "on_drift": "reconcile", "mapping_process": False}
    h.run(RUN, **options)
    server.delete_rows(SPREADSHEET_ID, FORMS_TAB, 8, 4)  # the grid shrinks to 7 rows: the watermark (11) is past it
    summary = h.run(RUN, **options)
    assert "now has only 7 rows: rows were deleted; on_drift='reconcile': reconciling." in caplog.text
    assert summary.mode == "reconcile"
    assert summary.watermark_after == 7
    assert h.fingerprints.latest(TOPIC) == _sheet_view(server, None)


def test_every_record_of_a_publishing_run_leaves_its_fingerprint(server):
    h = _harness(server, rows=3)
    h.run(RUN, fingerprint_topic=PRINTS, mapping_process=False)
    prints = [m for m in h.publisher.sent if m.topic == PRINTS]
    data = [m for m in h.publisher.sent if m.topic == TOPIC]
    assert [m.key for m in prints] == [m.key for m in data]
    assert [json.loads(m.value)["row"] for m in prints] == [2, 3, 4]


@pytest.mark.parametrize("options", [{"reconcile": True}, {"on_drift": "reconcile"}])
def test_reconcile_without_a_fingerprint_topic_says_how_to_set_one(server, options):
    h = _harness(server, rows=2)
    with pytest.raises(SheetsConfigError, match="reconcile compares the tab with the fingerprints"):
        h.run(RUN, mapping_process=False, **options)


@pytest.mark.parametrize("options", [{"full_refresh": True}, {"start_row": 3}])
def test_reconcile_cannot_be_combined_with_a_full_refresh_or_a_start_row(server, options):
    h = _harness(server, rows=2)
    with pytest.raises(SheetsConfigError, match="reconcile reads every row already"):
        h.run(RUN, reconcile=True, fingerprint_topic=PRINTS, mapping_process=False, **options)
