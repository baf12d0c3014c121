"""The sandbox's well-formed bad answers (short pages and files, records cut in half, header echoes, HTML
pages, type drift), the object store's MD5 ETag, and the fault rules themselves.

Each fault is checked against the answer the same request gets without it, in-process and (for the
ones a transport could hide) over the real loopback server, with the rules posted as JSON
(`sandbox_fault_env.py`). The second marketing-attribution record shape is in
`test_sandbox_attribution_shape.py`."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import pytest

from marketplace_assets.sandbox import FaultRule, object_store, serve
from marketplace_assets_tests.sandbox_fault_env import (  # noqa: F401 (fixtures)
    DEV,
    Env,
    complete,
    csv_rows,
    env_fixture,
    local_fixture,
    ok,
    sandbox_fixture,
)

BASIC = "Basic " + base64.b64encode(b"sandbox@example.com:sandbox-token").decode()
LICENSES = f"{DEV}/licenses"
TRANSACTIONS = f"{DEV}/sales/transactions"
FEEDBACK = f"{DEV}/feedback/details"
STARTER = f"{DEV}/sales/freeStarterTier/export"
LATEST = "/rest/3/reporting/product-catalog/latest"
WINDOW = {"startDate": "2025-06-01", "endDate": "2025-06-30"}
VENDOR_AMOUNT = "purchaseDetails.vendorAmount"


def catalog_link(env: Env) -> str:
    return ok(env.api.get(LATEST)).json()["presignedUrl"]


# --- short_page ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "key", "fraction", "kept"), [
    (TRANSACTIONS, "transactions", 0.5, 5), (LICENSES, "licenses", 0.35, 3),
    (TRANSACTIONS, "transactions", 0, 0),
])  # fmt: skip
def test_short_page_keeps_the_first_records_and_everything_else(env, path, key, fraction, kept):
    params = {**WINDOW, "limit": 10}
    full = ok(env.api.get(path, params=params)).json()
    assert len(full[key]) == 10 and full["totalCount"] > 10 and "next" in full["_links"]
    env.faults(
        {"path": f"{path.rsplit('/', 1)[-1]}$", "kind": "short_page", "fraction": fraction, "times": 1}
    )
    short = json.loads(complete(env.api.get(path, params=params)))
    assert short[key] == full[key][:kept]
    assert {k: v for k, v in short.items() if k != key} == {k: v for k, v in full.items() if k != key}
    assert ok(env.api.get(path, params=params)).json() == full  # the rule is used up


def test_page_and_file_faults_leave_the_other_kind_of_body_alone(local):
    params = {**WINDOW, "accept": "csv"}
    file = ok(local.api.get(f"{LICENSES}/export", params=params)).content
    page = ok(local.api.get(TRANSACTIONS, params=WINDOW)).content
    local.faults({"path": "licenses/export", "kind": "short_page", "times": 1})
    assert ok(local.api.get(f"{LICENSES}/export", params=params)).content == file
    local.faults({"path": "sales/transactions$", "kind": "short_file", "times": 1})
    assert ok(local.api.get(TRANSACTIONS, params=WINDOW)).content == page
    local.faults({"path": "sales/transactions$", "kind": "cut_record", "times": 1})
    assert ok(local.api.get(TRANSACTIONS, params=WINDOW)).content == page
    # A non-200 answer is not rewritten (the rule is spent all the same).
    local.faults({"path": "sales/transactions$", "kind": "short_page", "times": 1})
    denied = local.api.get(TRANSACTIONS, params=WINDOW, auth=("sandbox@example.com", "wrong"))
    assert denied.status_code == 401 and "authenticated" in denied.json()["message"]
    assert local.sb.faults.rules == []


# --- short_file ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.5, 0.1])
def test_short_file_cuts_a_csv_export_between_records(env, fraction):
    params = {**WINDOW, "accept": "csv"}
    full_response = ok(env.api.get(f"{LICENSES}/export", params=params))
    full = full_response.content
    rows = csv_rows(full)
    records = len(rows) - 1
    assert records > 50
    env.faults({"path": "licenses/export", "kind": "short_file", "fraction": fraction, "times": 1})
    response = env.api.get(f"{LICENSES}/export", params=params)
    body = complete(response)
    kept = int(records * fraction)
    assert body == full[: len(body)] and body.endswith(b"\n") and len(body) < len(full)
    assert csv_rows(body) == rows[: 1 + kept]
    assert response.headers["content-disposition"] == full_response.headers["content-disposition"]
    assert response.headers["content-type"] == "text/csv"


def test_short_file_keeps_a_closed_json_array(local):
    params = {**WINDOW, "accept": "json"}
    full = ok(local.api.get(f"{TRANSACTIONS}/export", params=params)).json()
    assert len(full) > 100
    local.faults({"path": "transactions/export", "kind": "short_file", "fraction": 0.25, "times": 1})
    assert (
        json.loads(complete(local.api.get(f"{TRANSACTIONS}/export", params=params))) == full[: len(full) // 4]
    )
    local.faults({"path": "transactions/export", "kind": "short_file", "fraction": 0.0, "times": 1})
    assert complete(local.api.get(f"{TRANSACTIONS}/export", params=params)) == b"[]"


def test_short_file_of_the_free_starter_tier(local):
    full = ok(local.api.get(STARTER, params={"accept": "csv"})).content
    rows = csv_rows(full)
    local.faults({"path": "freeStarterTier", "kind": "short_file", "fraction": 0.25, "times": 1})
    body = complete(local.api.get(STARTER, params={"accept": "csv"}))
    assert csv_rows(body) == rows[: 1 + (len(rows) - 1) // 4] and body == full[: len(body)]


def test_short_file_of_the_catalog_keeps_the_full_objects_etag(env):
    link = catalog_link(env)
    full_response = ok(env.plain.get(link))
    full = complete(full_response)
    rows = csv_rows(full)
    env.faults({"path": "_objects", "kind": "short_file", "fraction": 0.5, "times": 1})
    response = env.plain.get(link)
    body = complete(response)
    assert response.headers["etag"] == full_response.headers["etag"] == f'"{hashlib.md5(full).hexdigest()}"'
    assert hashlib.md5(body).hexdigest() not in response.headers["etag"]
    assert int(response.headers["content-length"]) == len(body) < len(full)
    assert body == full[: len(body)] and body.endswith(b"\n")
    assert csv_rows(body) == rows[: 1 + (len(rows) - 1) // 2]


# --- the object store's ETag ---------------------------------------------------------------------------


def test_catalog_etag_is_the_md5_of_the_object_computed_once(env, monkeypatch):
    made = []
    original = object_store.catalog_chunks

    def counted(*args, **kwargs):
        made.append(args[1:])
        return original(*args, **kwargs)

    monkeypatch.setattr(object_store, "catalog_chunks", counted)
    link = catalog_link(env)
    first = ok(env.plain.get(link))
    body = complete(first)
    assert first.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert first.headers["content-length"] == str(len(body)) and len(body) > 100_000
    assert len(made) == 1  # generated once, hashed on the way
    second = ok(env.plain.get(link))
    assert complete(second) == body and second.headers["etag"] == first.headers["etag"]
    assert len(made) == 2  # streamed again, not hashed again
    object_store.configure_catalog(env.sb.world, scale=2)
    bigger = ok(env.plain.get(catalog_link(env)))
    assert bigger.headers["etag"] == f'"{hashlib.md5(bigger.content).hexdigest()}"' != first.headers["etag"]


# --- cut_record ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.6, 0.02, 1.0])
def test_cut_record_ends_a_csv_inside_a_line(env, fraction):
    params = {**WINDOW, "accept": "csv"}
    full = ok(env.api.get(f"{LICENSES}/export", params=params)).content
    rows = csv_rows(full)
    longest = max(len(line) for line in full.split(b"\n")) + 1
    env.faults({"path": "licenses/export", "kind": "cut_record", "fraction": fraction, "times": 1})
    body = complete(env.api.get(f"{LICENSES}/export", params=params))
    assert body == full[: len(body)] and not body.endswith(b"\n")
    assert abs(len(body) - fraction * len(full)) <= longest
    cut = csv_rows(body)
    complete_lines = len(cut) - 1
    assert complete_lines >= 1 and cut[:complete_lines] == rows[:complete_lines]
    assert 0 < len(cut[-1]) < len(rows[0])  # the last line has fewer fields than the header
    assert full[len(body) : len(body) + 1] != b"\n"  # not cut just before a newline either


@pytest.mark.parametrize("fraction", [0.5, 1.0, 0.0])
def test_cut_record_ends_a_json_array_inside_an_object(local, fraction):
    params = {**WINDOW, "accept": "json"}
    full = ok(local.api.get(f"{TRANSACTIONS}/export", params=params)).content
    texts = [json.dumps(row, separators=(",", ":")).encode() for row in json.loads(full)]
    assert full == b"[" + b",".join(texts) + b"]"
    starts = [1 + sum(len(t) + 1 for t in texts[:i]) for i in range(len(texts))]
    local.faults({"path": "transactions/export", "kind": "cut_record", "fraction": fraction, "times": 1})
    body = complete(local.api.get(f"{TRANSACTIONS}/export", params=params))
    assert body == full[: len(body)]
    for unfinished in (body, body + b"]"):  # inside an object: not even the array's bracket closes it
        with pytest.raises(json.JSONDecodeError):
            json.loads(unfinished)
    inside = [i for i, start in enumerate(starts) if start < len(body) < start + len(texts[i])]
    assert len(inside) == 1 and abs(len(body) - len(full) * fraction) <= len(texts[inside[0]])


# --- echo_headers and html ---------------------------------------------------------------------------


def test_echo_headers_answers_400_with_the_authorization_header_verbatim(env):
    env.faults({"path": "feedback/details", "kind": "echo_headers", "times": 1})
    response = env.api.get(FEEDBACK, headers={"X-Trace-Id": "trace-42"})
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    body = response.json()
    headers = body["request"]["headers"]
    assert headers["authorization"] == BASIC and headers["x-trace-id"] == "trace-42"
    assert body["message"].startswith("Bad request (gateway echo). Request headers: ")
    assert f"authorization: {BASIC}" in body["message"] and "x-trace-id: trace-42" in body["message"]
    assert int(response.headers["content-length"]) == len(response.content)
    assert ok(env.api.get(FEEDBACK)).json()["_links"]  # used up
    env.faults({"path": "feedback/details", "kind": "echo_headers", "status": 502, "times": 1})
    again = env.api.get(FEEDBACK)
    assert again.status_code == 502 and again.json()["request"]["headers"]["authorization"] == BASIC


def test_html_answers_a_200_sign_in_page(env):
    env.faults({"path": "licenses$", "kind": "html", "times": 1})
    response = env.api.get(LICENSES)
    body = complete(response)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert body.startswith(b"<!DOCTYPE html>") and b"<title>Sign in</title>" in body
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert ok(env.api.get(LICENSES)).json()["licenses"]


# --- type_drift ------------------------------------------------------------------------------------


@pytest.mark.parametrize("record", [0, -1, 4])
def test_type_drift_in_a_page_record(local, record):
    params = {**WINDOW, "limit": 10}
    full = ok(local.api.get(TRANSACTIONS, params=params)).json()
    original = full["transactions"][record]["purchaseDetails"]["vendorAmount"]
    assert isinstance(original, int | float)
    local.faults({"path": "transactions$", "kind": "type_drift", "field": "purchaseDetails.vendorAmount",
                  "record": record, "times": 1})  # fmt: skip
    drifted = ok(local.api.get(TRANSACTIONS, params=params)).json()
    assert drifted["transactions"][record]["purchaseDetails"]["vendorAmount"] == "n/a"
    drifted["transactions"][record]["purchaseDetails"]["vendorAmount"] = original
    assert drifted == full


def test_type_drift_in_a_json_export(local):
    params = {**WINDOW, "accept": "json"}
    full = ok(local.api.get(f"{TRANSACTIONS}/export", params=params)).json()
    local.faults({"path": "transactions/export", "kind": "type_drift", "field": VENDOR_AMOUNT,
                  "record": -2, "value": "N/A", "times": 1})  # fmt: skip
    drifted = json.loads(complete(local.api.get(f"{TRANSACTIONS}/export", params=params)))
    assert (
        drifted[-2]["purchaseDetails"]["vendorAmount"] == "N/A" != full[-2]["purchaseDetails"]["vendorAmount"]
    )
    drifted[-2]["purchaseDetails"]["vendorAmount"] = full[-2]["purchaseDetails"]["vendorAmount"]
    assert drifted == full


@pytest.mark.parametrize(("record", "value"), [(2, 'twelve, "approx"'), (-1, "n/a")])
def test_type_drift_in_a_csv_export_keeps_quoting_valid(env, record, value):
    params = {**WINDOW, "accept": "csv"}
    full = csv_rows(ok(env.api.get(f"{TRANSACTIONS}/export", params=params)).content)
    column = full[0].index("purchaseDetails.vendorAmount")
    env.faults({"path": "transactions/export", "kind": "type_drift", "field": "purchaseDetails.vendorAmount",
                "record": record, "value": value, "times": 1})  # fmt: skip
    drifted = csv_rows(complete(env.api.get(f"{TRANSACTIONS}/export", params=params)))
    assert len(drifted) == len(full) and all(len(row) == len(full[0]) for row in drifted)
    data_row = record + 1 if record >= 0 else record
    assert drifted[data_row][column] == value != full[data_row][column]
    drifted[data_row][column] = full[data_row][column]
    assert drifted == full


def test_type_drift_of_an_unknown_csv_column_changes_nothing(local):
    params = {**WINDOW, "accept": "csv"}
    full = ok(local.api.get(f"{LICENSES}/export", params=params)).content
    local.faults({"path": "licenses/export", "kind": "type_drift", "field": "noSuchColumn", "times": 1})
    assert ok(local.api.get(f"{LICENSES}/export", params=params)).content == full


# --- the rules themselves --------------------------------------------------------------------------


def test_fault_rule_fields_defaults_and_validation():
    assert FaultRule(path="x", kind="echo_headers").status == 400
    assert FaultRule(path="x", kind="html").status == 200
    assert FaultRule(path="x").status == 503 and FaultRule(path="x", kind="short_file").status == 503
    assert FaultRule(path="x", kind="echo_headers", status=401).status == 401
    rule = FaultRule.from_dict(
        {"path": "x", "kind": "type_drift", "field": "a.b", "value": "7", "record": -1, "fraction": "0.3"}
    )
    assert (rule.field, rule.value, rule.record, rule.fraction) == ("a.b", "7", -1, 0.3)
    assert FaultRule.from_dict(rule.to_dict()) == rule
    for bad in (
        {"kind": "short_file", "fraction": 1.5},
        {"kind": "type_drift"},
        {"kind": "type_drift", "field": "a", "record": "last"},
        {"kind": "echo_headers", "status": 42},
    ):
        with pytest.raises(ValueError):
            FaultRule.from_dict({"path": "x", **bad})


def test_invalid_rules_over_http_are_400(sb):
    with serve(sb) as url, httpx.Client(base_url=url) as control:
        answer = control.post("/_sandbox/faults", json=[{"path": "x", "kind": "type_drift"}])
        assert answer.status_code == 400 and "field" in answer.json()["message"]
        listed = control.post("/_sandbox/faults", json={"path": "x", "kind": "echo_headers"}).json()["faults"]
        assert listed[0]["status"] == 400 and listed[0]["fraction"] == 0.5 and listed[0]["value"] == "n/a"
