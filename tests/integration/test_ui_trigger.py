"""
The example DAG's trigger form in the real Airflow UI, driven by headless Chromium (Playwright).

Needs the ``playwright`` Python package and Debian's ``chromium`` at ``/usr/bin/chromium``
(``scripts/install_chromium.sh``; Playwright's own browser download is not used). Without them
the test is skipped on a laptop and fails when ``CI=true``. A screenshot of the filled form is
written to ``/tmp/ui-trigger.png``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import uuid
from pathlib import Path

import pytest

import tests.airflow_server as harness
from airflow_provider_sheets.devkit.sample import FORMS_HEADER, FORMS_TAB, forms_rows
from airflow_provider_sheets.model.position import default_watermark_key
from tests.airflow_server import EXAMPLE_DAG, EXAMPLE_TASK, loaded_conftest
from tests.helpers import consume_all

# the session's Airflow (pytest finds fixtures by their module-level names)
airflow_server = harness.airflow_server
example_dag = harness.example_dag
airflow_log_on_failure = harness.airflow_log_on_failure

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("SHEETS_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/ui-trigger.png")


@pytest.fixture(scope="module")
def chromium(request) -> Path:
    """Debian's Chromium and the Playwright package (installed by scripts/install_chromium.sh in CI)."""
    conftest = loaded_conftest(request.config)
    require_or_skip = conftest.require_or_skip
    if conftest.IN_CI and not CHROMIUM.exists():
        result = subprocess.run(
            ["bash", str(conftest.REPO / "scripts" / "install_chromium.sh")],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, f"install_chromium.sh failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    require_or_skip(importlib.util.find_spec("playwright") is not None, "the playwright Python package")
    require_or_skip(CHROMIUM.exists(), f"Chromium at {CHROMIUM}")
    return CHROMIUM


@pytest.fixture
def page(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1100})
            context.set_default_timeout(30_000)
            yield context.new_page()
        finally:
            browser.close()


def test_trigger_form_dry_run(airflow_server, example_dag, sheets_server, broker, topic, page):
    spreadsheet_id = f"ui-{uuid.uuid4().hex[:10]}"
    sheets_server.create_spreadsheet(spreadsheet_id, {FORMS_TAB: [FORMS_HEADER, *forms_rows(7)]})
    example_dag.use(spreadsheet_id, topic, quiet=60)
    before = {run["dag_run_id"] for run in airflow_server.runs(EXAMPLE_DAG)}

    page.goto(f"{airflow_server.url}/dags/{EXAMPLE_DAG}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dry_run = dialog.get_by_role("checkbox", name="Dry run")
    full_refresh = dialog.get_by_role("checkbox", name="Full refresh")
    assert not dry_run.is_checked()
    # the switch's input is visually hidden: click the switch itself, as a person would
    dialog.locator("label:has(input[name=element_dry_run]) [data-part=control]").click()
    assert dry_run.is_checked()
    assert not full_refresh.is_checked()
    page.screenshot(path=str(SCREENSHOT))

    with page.expect_response(
        lambda r: r.url.endswith(f"/dags/{EXAMPLE_DAG}/dagRuns") and r.request.method == "POST"
    ) as posted:
        dialog.get_by_test_id("trigger-dag-submit").click()
    response = posted.value
    assert response.status == 200, response.text()
    run_id = response.json()["dag_run_id"]
    assert run_id not in before

    run = airflow_server.wait_run(EXAMPLE_DAG, run_id)
    example_dag.park()
    assert run["run_type"] == "manual"
    assert run["triggered_by"] == "ui"
    assert run["conf"]["dry_run"] is True
    assert not run["conf"].get("full_refresh")
    summary = airflow_server.xcom(EXAMPLE_DAG, run_id, EXAMPLE_TASK)
    assert summary["dry_run"] is True
    assert summary["rows_selected"] == 7
    assert summary["rows_published"] == 0
    assert consume_all(broker.bootstrap_servers, topic) == []
    assert airflow_server.get_variable(default_watermark_key(spreadsheet_id, 0, topic)) is None
