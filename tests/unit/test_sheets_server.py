"""Tests of the local Sheets v4 server: the A1 parser, and the API as seen through Airflow's GSheetsHook."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from datetime import date, datetime

import pytest

from airflow_provider_sheets.devkit.sheets_server import (
    A1Range,
    SheetsServer,
    column_to_index,
    format_a1,
    index_to_column,
    parse_a1,
    quote_sheet_title,
)

SID = "sheet-under-test"


# --------------------------------------------------------------------------------------------------
# A1 notation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'Tab ''quoted'' name'!A2:J1001", A1Range("Tab 'quoted' name", 1, 2, 10, 1001)),
        ("Tab!A1:B", A1Range("Tab", 1, 1, 2, None)),
        ("Tab!A:A", A1Range("Tab", 1, None, 1, None)),
        ("Tab!B:D", A1Range("Tab", 2, None, 4, None)),
        ("Tab!2:5", A1Range("Tab", None, 2, None, 5)),
        ("Tab!A5", A1Range("Tab", 1, 5, 1, 5)),
        ("Tab!B2:A1", A1Range("Tab", 1, 1, 2, 2)),
        ("Tab", A1Range("Tab")),
        ("Sheet1", A1Range("Sheet1")),
        ("2024", A1Range("2024")),
        ("'Form Responses 1'", A1Range("Form Responses 1")),
        ("Form Responses 1!A2:E", A1Range("Form Responses 1", 1, 2, 5, None)),
        ("A1:B2", A1Range(None, 1, 1, 2, 2)),
        ("C7", A1Range(None, 3, 7, 3, 7)),
        ("tab!a1:zz9", A1Range("tab", 1, 1, 702, 9)),
        ("Tab!AA1:AAA2", A1Range("Tab", 27, 1, 703, 2)),
        ("'It''s'!ZZZ1", A1Range("It's", 18_278, 1, 18_278, 1)),
        ("'a!b'!A1", A1Range("a!b", 1, 1, 1, 1)),
        ("  Tab!A1:B2  ", A1Range("Tab", 1, 1, 2, 2)),
    ],
)
def test_parse_a1(text, expected):
    assert parse_a1(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "'Unclosed!A1",
        "'Tab'x",
        "Tab!",
        "!A1",
        "Tab!A0",
        "Tab!A:1",
        "Tab!1:A",
        "Tab!A",
        "Tab!AAAA1",
        "Tab!A1:B2:C3",
    ],
)
def test_parse_a1_rejects(text):
    with pytest.raises(ValueError):
        parse_a1(text)


@pytest.mark.parametrize(
    ("index", "letters"),
    [(1, "A"), (26, "Z"), (27, "AA"), (52, "AZ"), (53, "BA"), (702, "ZZ"), (703, "AAA"), (18_278, "ZZZ")],
)
def test_columns_round_trip(index, letters):
    assert index_to_column(index) == letters
    assert column_to_index(letters) == index
    assert column_to_index(letters.lower()) == index


@pytest.mark.parametrize(
    ("title", "quoted"),
    [
        ("Sheet1", "Sheet1"),
        ("data_2024", "data_2024"),
        ("Form Responses 1", "'Form Responses 1'"),
        ("Bob's", "'Bob''s'"),
        ("A1", "'A1'"),
        ("abc12", "'abc12'"),
        ("2024", "'2024'"),
        ("R1C1", "'R1C1'"),
        ("a-b", "'a-b'"),
    ],
)
def test_quote_sheet_title(title, quoted):
    assert quote_sheet_title(title) == quoted
    assert parse_a1(f"{quoted}!A1").sheet == title


def test_format_a1():
    assert format_a1("Sheet1", 2, 1, 1001, 10) == "Sheet1!A2:J1001"
    assert format_a1("Form Responses 1", 5, 2, 5, 2) == "'Form Responses 1'!B5"


# --------------------------------------------------------------------------------------------------
# The server through GSheetsHook
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def server():
    with SheetsServer() as running:
        yield running


@pytest.fixture
def hook(server, monkeypatch):
    from airflow.providers.google.suite.hooks.sheets import GSheetsHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"is_anonymous": True, "num_retries": 3, "sheets_quota_per_minute": 0},
            }
        ),
    )
    # no back-off sleeps between the client's retries
    import googleapiclient.http

    monkeypatch.setattr(googleapiclient.http, "random", types.SimpleNamespace(random=lambda: 0.0))
    return GSheetsHook(gcp_conn_id="google_cloud_default", api_endpoint=server.url)


def _raw_get(hook, range_, **options):
    return hook.get_conn().spreadsheets().values().get(spreadsheetId=SID, range=range_, **options).execute()


def _http_error(excinfo):
    return excinfo.value.resp.status, json.loads(excinfo.value.content)["error"]


def test_get_values_trims_trailing_cells_and_rows(server, hook):
    server.create_spreadsheet(
        SID,
        {"Sheet1": [["h1", "h2", "h3"], ["a", None, "c", None, ""], [], ["x"], [None, ""], ["", None]]},
    )
    assert hook.get_values(SID, "Sheet1!A1:Z") == [["h1", "h2", "h3"], ["a", "", "c"], [], ["x"]]
    response = _raw_get(hook, "Sheet1!A2:C")
    assert response == {"range": "Sheet1!A2:C1000", "majorDimension": "ROWS", "values": [["a", "", "c"], [], ["x"]]}
    assert _raw_get(hook, "Sheet1!B:B")["values"] == [["h2"]]
    assert _raw_get(hook, "Sheet1!2:4")["range"] == "Sheet1!A2:Z4"
    assert _raw_get(hook, "Sheet1!C2")["range"] == "Sheet1!C2"
    assert _raw_get(hook, "Sheet1")["range"] == "Sheet1!A1:Z1000"


def test_missing_values_key_means_no_rows(server, hook):
    server.create_spreadsheet(SID, {"Sheet1": [["h1", "h2"], ["a", "b"]]})
    response = _raw_get(hook, "Sheet1!A3:B")
    assert "values" not in response
    assert response["range"] == "Sheet1!A3:B1000"
    assert hook.get_values(SID, "Sheet1!A3:B") == []
    assert hook.get_values(SID, "Sheet1!C1:D2") == []


def test_empty_row_inside_the_range(server, hook):
    server.create_spreadsheet(SID, {"Sheet1": [["h"], ["1"], [None, None], ["3"]]})
    assert hook.get_values(SID, "Sheet1!A2:A") == [["1"], [], ["3"]]


def test_range_is_clipped_to_the_grid_and_beyond_is_an_error(server, hook):
    from googleapiclient.errors import HttpError

    server.create_spreadsheet(SID, {"Sheet1": [["a", "b"]]}, row_count=10)
    assert _raw_get(hook, "Sheet1!A1:AB5000")["range"] == "Sheet1!A1:Z10"
    with pytest.raises(HttpError) as excinfo:
        _raw_get(hook, "Sheet1!A11:B")
    status, error = _http_error(excinfo)
    assert (status, error["status"]) == (400, "INVALID_ARGUMENT")
    assert "exceeds grid limits. Max rows: 10, max columns: 26" in error["message"]


def test_major_dimension_columns(server, hook):
    server.create_spreadsheet(SID, {"Sheet1": [["a", "b"], ["c"], [None, "d"]]})
    response = _raw_get(hook, "Sheet1!A1:C3", majorDimension="COLUMNS")
    assert response["majorDimension"] == "COLUMNS"
    assert response["values"] == [["a", "c"], ["b", "", "d"]]


def test_batch_get_values_keeps_request_order(server, hook):
    server.create_spreadsheet(SID, {"Sheet1": [["a", "b", "c"], ["d", "e", "f"]], "Other": [["x"]]})
    response = hook.batch_get_values(SID, ["Sheet1!C1:C2", "Other!A1", "A1:A2", "Sheet1!A5:B6"])
    assert response["spreadsheetId"] == SID
    assert response["valueRanges"] == [
        {"range": "Sheet1!C1:C2", "majorDimension": "ROWS", "values": [["c"], ["f"]]},
        {"range": "Other!A1", "majorDimension": "ROWS", "values": [["x"]]},
        {"range": "Sheet1!A1:A2", "majorDimension": "ROWS", "values": [["a"], ["d"]]},
        {"range": "Sheet1!A5:B6", "majorDimension": "ROWS"},
    ]
    assert server.request_count("values.batchGet") == 1


def test_get_spreadsheet_metadata(server, hook):
    server.create_spreadsheet(
        SID,
        {"Form Responses 1": [["x"] * 30], "Summary": [["s"]] * 1500},
        title="Feedback",
        time_zone="Europe/Paris",
    )
    gid = server.add_sheet(SID, "Extra")
    metadata = hook.get_spreadsheet(SID)
    assert metadata["spreadsheetId"] == SID
    assert metadata["properties"] == {"title": "Feedback", "locale": "en_US", "timeZone": "Europe/Paris"}
    assert metadata["spreadsheetUrl"].endswith(f"/{SID}/edit")
    sheets = [sheet["properties"] for sheet in metadata["sheets"]]
    assert [(s["title"], s["index"], s["sheetType"]) for s in sheets] == [
        ("Form Responses 1", 0, "GRID"),
        ("Summary", 1, "GRID"),
        ("Extra", 2, "GRID"),
    ]
    assert sheets[0]["sheetId"] == 0
    assert sheets[0]["sheetId"] < sheets[1]["sheetId"] < sheets[2]["sheetId"] == gid
    assert sheets[0]["gridProperties"] == {"rowCount": 1000, "columnCount": 30}
    assert sheets[1]["gridProperties"] == {"rowCount": 1500, "columnCount": 26}
    assert hook.get_sheet_titles(SID) == ["Form Responses 1", "Summary", "Extra"]


def test_append_values(server, hook):
    server.create_spreadsheet(SID, {"Sheet1": [["h1", "h2"], ["a", "b"], [], ["c"]]}, row_count=4)
    response = hook.append_values(SID, "Sheet1!A1", [["d", 1], ["e", 2.5, True]])
    assert response["tableRange"] == "Sheet1!A1:B4"
    assert response["updates"] == {
        "spreadsheetId": SID,
        "updatedRange": "Sheet1!A5:C6",
        "updatedRows": 2,
        "updatedColumns": 3,
        "updatedCells": 5,
    }
    assert server.get_rows(SID, "Sheet1")[4:] == [["d", 1], ["e", 2.5, True]]
    assert hook.get_sheet_titles(SID) == ["Sheet1"]
    assert hook.get_spreadsheet(SID)["sheets"][0]["properties"]["gridProperties"]["rowCount"] == 6
    assert server.append_rows(SID, "Sheet1", [["f"], ["g"]]) == (7, 8)


def test_update_and_clear(server, hook):
    server.create_spreadsheet(SID, {"Sheet1": [["a", "b"], ["c", "d"]]})
    response = hook.update_values(SID, "Sheet1!B2:C3", [["x", "y"], [None, "z"]])
    assert response["updatedRange"] == "Sheet1!B2:C3"
    assert server.get_rows(SID, "Sheet1") == [["a", "b"], ["c", "x", "y"], [None, None, "z"]]
    assert hook.clear(SID, "Sheet1!B:B") == {"spreadsheetId": SID, "clearedRange": "Sheet1!B1:B1000"}
    assert hook.get_values(SID, "Sheet1") == [["a"], ["c", "", "y"], ["", "", "z"]]


def test_batch_update_data_shows_each_range_as_written_then(server, hook):
    """A later range of the same request does not change what an earlier one reports."""
    server.create_spreadsheet(SID, {"S": [["h1", "h2", "h3"]]})
    body = {
        "valueInputOption": "RAW",
        "includeValuesInResponse": True,
        "data": [
            {"range": "S!A2:B2", "values": [["a", "b"]]},
            {"range": "S!C2:C2", "values": [[7]]},
            {"range": "S!A2:A2", "values": [["z"]]},
        ],
    }
    response = hook.get_conn().spreadsheets().values().batchUpdate(spreadsheetId=SID, body=body).execute()
    assert [r["updatedData"]["values"] for r in response["responses"]] == [[["a", "b"]], [["7"]], [["z"]]]
    assert server.get_rows(SID, "S")[1] == ["z", "b", 7]


def test_unknown_spreadsheet_is_a_404(server, hook):
    from googleapiclient.errors import HttpError

    with pytest.raises(HttpError) as excinfo:
        hook.get_spreadsheet("no-such-sheet")
    assert _http_error(excinfo) == (
        404,
        {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"},
    )
    assert server.request_count() == 1  # a 404 is not retried


def test_unknown_tab_is_unable_to_parse_range(server, hook):
    from googleapiclient.errors import HttpError

    server.create_spreadsheet(SID)
    with pytest.raises(HttpError) as excinfo:
        hook.get_values(SID, "Nope!A1:B")
    assert _http_error(excinfo) == (
        400,
        {"code": 400, "message": "Unable to parse range: Nope!A1:B", "status": "INVALID_ARGUMENT"},
    )


def test_injected_503_is_retried(server, hook):
    server.create_spreadsheet(SID, {"Sheet1": [["a"]]})
    server.fail_next(503)
    assert hook.get_values(SID, "Sheet1!A1:B") == [["a"]]
    assert [(r.kind, r.status) for r in server.requests] == [("values.get", 503), ("values.get", 200)]
    assert server.request_count() == server.request_count("values.get") == 2


def test_injected_fault_filters_and_error_bodies(server, hook):
    from googleapiclient.errors import HttpError

    server.create_spreadsheet(SID, {"Sheet1": [["a"]]})
    server.fail_next(403, path_regex=r"/values/", message="nope")
    hook.get_spreadsheet(SID)  # does not match the path filter
    with pytest.raises(HttpError) as excinfo:
        hook.get_values(SID, "Sheet1!A1")
    assert _http_error(excinfo) == (403, {"code": 403, "message": "nope", "status": "PERMISSION_DENIED"})
    server.fail_next(429, count=2)
    assert hook.get_values(SID, "Sheet1!A1") == [["a"]]
    assert [r.status for r in server.requests[-3:]] == [429, 429, 200]
    assert json.loads(urllib.request.urlopen(f"{server.url}/_stats").read())["requests"] == {
        "spreadsheets.get": 1,
        "values.get": 4,
    }
    server.fail_next(500, count=5)
    server.clear_faults()
    assert hook.get_values(SID, "Sheet1!A1") == [["a"]]
    server.reset_stats()
    assert server.request_count() == 0


def test_datetime_unformatted_serial_and_formatted_string(server, hook):
    server.create_spreadsheet(SID, {"Sheet1": [[datetime(2026, 11, 24, 9, 5, 3), date(1899, 12, 31)]]})
    serial, day = _raw_get(hook, "Sheet1!A1:B1", valueRenderOption="UNFORMATTED_VALUE")["values"][0]
    assert serial == pytest.approx(46350 + (9 * 3600 + 5 * 60 + 3) / 86400)
    assert day == 1
    values = hook.get_values(
        SID, "Sheet1!A1:B1", value_render_option="UNFORMATTED_VALUE", date_time_render_option="FORMATTED_STRING"
    )
    assert values == [["11/24/2026 9:05:03", "12/31/1899"]]


def test_formatted_values(server, hook):
    row = [datetime(2026, 1, 2, 13, 4, 5), 5, 2.5, 3.0, True, False, "#REF!", "text"]
    server.create_spreadsheet(SID, {"Sheet1": [row]})
    assert hook.get_values(SID, "Sheet1!A1:H1") == [
        ["1/2/2026 13:04:05", "5", "2.5", "3", "TRUE", "FALSE", "#REF!", "text"]
    ]
    unformatted = hook.get_values(SID, "Sheet1!B1:H1", value_render_option="UNFORMATTED_VALUE")
    assert unformatted == [[5, 2.5, 3.0, True, False, "#REF!", "text"]]


def test_tab_name_with_space_and_apostrophe(server, hook):
    server.create_spreadsheet(SID, {"Sheet1": [["first"]], "Bob's Responses": [["h"], ["v"]]})
    assert _raw_get(hook, "'Bob''s Responses'!A2:B") == {
        "range": "'Bob''s Responses'!A2:B1000",
        "majorDimension": "ROWS",
        "values": [["v"]],
    }
    assert hook.get_values(SID, "'Bob''s Responses'") == [["h"], ["v"]]
    response = hook.batch_get_values(SID, ["'Bob''s Responses'!A1", "Sheet1!A1"])
    assert [vr["range"] for vr in response["valueRanges"]] == ["'Bob''s Responses'!A1", "Sheet1!A1"]
    assert server.requests[0].path == f"/v4/spreadsheets/{SID}/values/'Bob''s Responses'!A2:B"


def test_helpers_reshape_the_sheet(server, hook):
    server.create_spreadsheet(SID, {"Sheet1": [["h"], ["1"], ["2"], ["3"]]})
    server.delete_rows(SID, "Sheet1", 2)
    server.insert_rows(SID, "Sheet1", 3, [["2b"], ["2c"]])
    server.set_cell(SID, "Sheet1", 6, 2, "x")
    server.rename_sheet(SID, "Sheet1", "Renamed")
    assert hook.get_values(SID, "Renamed!A1:B") == [["h"], ["2"], ["2b"], ["2c"], ["3"], ["", "x"]]
    assert hook.get_spreadsheet(SID)["sheets"][0]["properties"]["gridProperties"]["rowCount"] == 1001
    server.set_rows(SID, "Renamed", [["only"]])
    assert server.get_rows(SID, 0) == [["only"]]
    with pytest.raises(KeyError):
        server.get_rows(SID, "Sheet1")


def test_batch_update_requests(server, hook):
    from googleapiclient.errors import HttpError

    server.create_spreadsheet(SID, {"Sheet1": [["h"], ["1"], ["2"], ["3"]]})
    service = hook.get_conn().spreadsheets()
    body = {
        "requests": [
            {"deleteDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 1, "endIndex": 2}}},
            {"insertDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 3, "endIndex": 4}}},
            {"updateSheetProperties": {"properties": {"sheetId": 0, "title": "Data"}, "fields": "title"}},
            {"addSheet": {"properties": {"title": "New"}}},
        ]
    }
    replies = service.batchUpdate(spreadsheetId=SID, body=body).execute()["replies"]
    assert replies[:3] == [{}, {}, {}]
    assert replies[3]["addSheet"]["properties"]["title"] == "New"
    assert hook.get_values(SID, "Data!A:A") == [["h"], ["2"], ["3"]]
    assert hook.get_sheet_titles(SID) == ["Data", "New"]

    body = {"requests": [{"addSheet": {"properties": {"title": "X"}}}, {"sortRange": {}}]}
    with pytest.raises(HttpError) as excinfo:
        service.batchUpdate(spreadsheetId=SID, body=body).execute()
    assert excinfo.value.resp.status == 400
    assert hook.get_sheet_titles(SID) == ["Data", "New"]  # all or nothing


def test_concurrent_clients(server):
    server.create_spreadsheet(SID, {"Sheet1": [["a"]]})
    errors = []

    def worker():
        try:
            for _ in range(10):
                with urllib.request.urlopen(f"{server.url}/v4/spreadsheets/{SID}/values/Sheet1%21A1") as reply:
                    assert json.loads(reply.read())["values"] == [["a"]]
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert server.request_count("values.get") == 80


# --------------------------------------------------------------------------------------------------
# OAuth2 token endpoint
# --------------------------------------------------------------------------------------------------


def _service_account(server, email="robot@project.iam.gserviceaccount.com", register=True):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if register:
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        server.register_service_account(email, public.decode())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "type": "service_account",
        "project_id": "local-project",
        "private_key_id": "key-1",
        "private_key": private.decode(),
        "client_email": email,
        "client_id": "1",
        "token_uri": f"{server.url}/token",
    }


def _credentials(info):
    from google.oauth2 import service_account

    return service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/spreadsheets.readonly"]
    )


def test_token_endpoint(server):
    import google.auth.exceptions
    import google.auth.transport.requests

    credentials = _credentials(_service_account(server))
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token.startswith("ya29.")
    assert server.request_count("token") == 1
    assert server.request_count() == 0

    stranger = _credentials(_service_account(server, "stranger@project.iam.gserviceaccount.com", register=False))
    with pytest.raises(google.auth.exceptions.RefreshError, match="account not found"):
        stranger.refresh(google.auth.transport.requests.Request())

    forged = _service_account(server, register=False)  # a registered email signed by another key
    with pytest.raises(google.auth.exceptions.RefreshError, match="Invalid JWT Signature"):
        _credentials(forged).refresh(google.auth.transport.requests.Request())
    assert [r.status for r in server.requests] == [200, 400, 400]


def test_require_auth_with_a_service_account_connection(server, monkeypatch):
    import google.auth.exceptions
    from airflow.providers.google.suite.hooks.sheets import GSheetsHook

    server.create_spreadsheet(SID, {"Sheet1": [["a"]]})
    server.require_auth = True
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(f"{server.url}/v4/spreadsheets/{SID}")
    assert excinfo.value.code == 401

    info = _service_account(server)
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"keyfile_dict": info, "num_retries": 0, "sheets_quota_per_minute": 0},
            }
        ),
    )
    hook = GSheetsHook(gcp_conn_id="google_cloud_default", api_endpoint=server.url)
    assert hook.get_values(SID, "Sheet1!A1") == [["a"]]
    assert server.request_count("token") == 1

    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"is_anonymous": True, "num_retries": 0, "sheets_quota_per_minute": 0},
            }
        ),
    )
    anonymous = GSheetsHook(gcp_conn_id="google_cloud_default", api_endpoint=server.url)
    # the client answers a 401 by refreshing the credentials, which anonymous ones cannot do
    with pytest.raises(google.auth.exceptions.InvalidOperation):
        anonymous.get_values(SID, "Sheet1!A1")
    assert server.requests[-1].status == 401


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def test_command_line_serves_until_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_sheets.devkit.sheets_server", "--port", "0", "--seed-forms", "F"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stderr.readline()
        url = line.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/v4/spreadsheets/F/values/'Form%20Responses%201'!A1:E1") as reply:
            assert json.loads(reply.read())["values"] == [["Timestamp", "Name", "Email", "Rating", "Comments"]]
        stats = json.loads(urllib.request.urlopen(f"{url}/_stats").read())
        assert stats == {"requests": {"values.get": 1}}
        time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert stdout == ""
    assert stderr == ""  # nothing after the single start-up line


@pytest.mark.parametrize(
    ("locale", "entered", "stored"),
    [
        (
            "en_US",
            ["11/2/2026 9:05:03", "4", "2.5", "TRUE", "11/3/2026", "'007", "hello", "=1+1"],
            [46328.37850694444, 4, 2.5, True, 46329, "007", "hello", "=1+1"],
        ),
        (
            "de_DE",
            ["02.11.2026 09:05:03", "4", "2,5", "false", "03.11.2026", "'2,5", "hallo", "1.2.3.4.5"],
            [46328.37850694444, 4, 2.5, False, 46329, "2,5", "hallo", "1.2.3.4.5"],
        ),
        (
            "ko_KR",
            ["2026. 11. 2 오후 1:05:03", "4", "2.5"],
            [46328.545173611114, 4, 2.5],
        ),
    ],
)
def test_user_entered_values_are_parsed_as_typed_in_and_raw_ones_kept(server, hook, locale, entered, stored):
    """valueInputOption=USER_ENTERED parses numbers, booleans and dates in the locale; RAW keeps the text."""
    sid = f"entered-{locale}"
    server.create_spreadsheet(sid, {"S": [["h"]]}, locale=locale)
    hook.append_values(sid, "S!A1", [entered], value_input_option="USER_ENTERED")
    hook.append_values(sid, "S!A1", [entered], value_input_option="RAW")
    rows = hook.get_values(
        sid, "S!A2:H3", value_render_option="UNFORMATTED_VALUE", date_time_render_option="SERIAL_NUMBER"
    )
    assert [type(v) for v in rows[0]] == [type(v) for v in stored]
    assert [pytest.approx(v) if type(v) is float else v for v in stored] == rows[0]
    assert rows[1] == entered, "RAW: stored as sent"


def test_a_write_without_value_input_option_is_refused(server):
    """Google requires valueInputOption on values.update and values.append (HTTP 400)."""
    server.create_spreadsheet("no-option", {"S": [["h"]]})
    request = urllib.request.Request(
        f"{server.url}/v4/spreadsheets/no-option/values/S!A2:append",
        data=json.dumps({"values": [["x"]]}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert "'valueInputOption' is required but not specified" in refused.value.read().decode()
