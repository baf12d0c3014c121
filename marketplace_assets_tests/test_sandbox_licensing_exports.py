"""The simulated Marketplace's licensing and sales exports: sync exports (CSV equals JSON), the async
export lifecycle with its failures and stalls, marketing attribution, the control endpoints for the
clock and export behaviour, streaming, the free starter tier, and determinism and volume."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets.sandbox.endpoints import licensing as licensing_endpoints
from marketplace_assets.sandbox.export_reports import ATTRIBUTION_COLUMNS, FREE_STARTER_COLUMNS
from marketplace_assets.sandbox.exports import cell, configure_exports, flatten
from marketplace_assets.sandbox.license_query import license_columns
from marketplace_assets.sandbox.licensing_data import set_clock
from marketplace_assets.sandbox.sales_data import transactions_per_year
from marketplace_assets_tests.sandbox_licensing_support import (  # noqa: F401 (fixtures)
    AUTH,
    CLOCK,
    DEV,
    LICENSES,
    NO_LINKS,
    TRANSACTIONS,
    client_fixture,
    connect,
    export_json,
    ok,
    sample,
    sandbox_fixture,
)
from marketplace_assets_tests.shape import assert_same_shape

STARTER = f"{DEV}/sales/freeStarterTier/export"


def export_csv(
    client: httpx.Client, path: str, params: Iterable[tuple[str, Any]] = ()
) -> tuple[list[str], list[dict]]:
    response = ok(client.get(f"{path}/export", params=[*params, ("accept", "csv")]))
    assert response.headers["content-type"] == "text/csv"
    reader = csv.DictReader(io.StringIO(response.text))
    return list(reader.fieldnames or []), list(reader)


def as_csv_rows(rows: list[dict], columns: list[str]) -> list[dict]:
    """What a CSV export must hold for these JSON rows."""
    return [{c: cell(flatten(row).get(c)) for c in columns} for row in rows]


# --- sync exports -----------------------------------------------------------------------------------


def test_sync_exports_csv_equals_json_and_format_negotiation(client):
    params = [("startDate", "2025-05-01"), ("endDate", "2025-06-30"), ("withDataInsights", "true")]
    rows = export_json(client, LICENSES, params)
    header, csv_rows = export_csv(client, LICENSES, params)
    assert header == list(license_columns(True)) and "contactDetails.technicalContact.email" in header
    assert csv_rows == as_csv_rows(rows, header)
    sales = export_json(client, TRANSACTIONS, params[:2])
    header, csv_rows = export_csv(client, TRANSACTIONS, params[:2])
    assert {"purchaseDetails.saleDate", "transactionLineItemId", "partnerDetails.partnerName"} <= set(header)
    assert csv_rows == as_csv_rows(sales, header) and len(csv_rows) > 100
    by_header = client.get(
        f"{TRANSACTIONS}/export", params=params[:2], headers={"Accept": "application/json"}
    )
    assert by_header.headers["content-type"] == "application/json" and by_header.json() == sales
    assert client.get(f"{TRANSACTIONS}/export", params=params[:2]).headers["content-type"] == "text/csv"
    assert client.get(f"{TRANSACTIONS}/export", params={"accept": "xml"}).status_code == 400


# --- async exports ------------------------------------------------------------------------------------

ASYNC = {
    "licenses": (LICENSES, "licenses_async_export_start.json", "licenses_async_export_status.json"),
    "transactions": (
        TRANSACTIONS,
        "transactions_async_export_start.json",
        "transactions_async_export_status.json",
    ),
}


def start_export(client: httpx.Client, path: str, params: Any) -> dict:
    return ok(client.post(f"{path}/async/export", params=params)).json()


@pytest.mark.parametrize("kind", ["licenses", "transactions"])
def test_async_export_lifecycle(client, sb, kind):
    path, start_sample, status_sample = ASYNC[kind]
    filters = [("startDate", "2025-04-01"), ("endDate", "2025-06-30"), ("hosting", "cloud")]
    started = start_export(client, path, [*filters, ("accept", "json")])
    assert_same_shape(sample(start_sample), started)
    export_id = started["export"]["id"]
    links = started["_links"]
    assert links["status"]["href"] == f"{path}/async/export/{export_id}/status"
    assert links["download"]["href"] == f"{path}/async/export/{export_id}"
    early = client.get(links["download"]["href"])
    assert early.status_code == 404 and early.json() == {"message": "Export is being processed"}
    statuses = [ok(client.get(links["status"]["href"])).json() for _ in range(3)]
    assert [s["export"] for s in statuses] == [
        {"id": export_id, "status": s} for s in ("QUEUED", "IN_PROGRESS", "COMPLETED")
    ]
    # The transactions status sample is a schema placeholder whose links carry type/title: compare the rest.
    assert_same_shape(
        sample(status_sample), statuses[-1], ignore=NO_LINKS if kind == "transactions" else frozenset()
    )
    assert statuses[-1]["_links"]["download"] == links["download"]
    expected = export_json(client, path, filters)
    set_clock(sb, CLOCK + timedelta(days=30))  # the file is the data as of the start call
    downloaded = ok(client.get(links["download"]["href"]))
    assert downloaded.headers["content-type"] == "application/json" and downloaded.json() == expected
    set_clock(sb, CLOCK)
    as_csv = start_export(client, path, [*filters, ("accept", "csv")])
    assert as_csv["export"]["id"] != export_id
    for _ in range(3):
        client.get(as_csv["_links"]["status"]["href"])
    body = ok(client.get(as_csv["_links"]["download"]["href"]))
    assert body.headers["content-type"] == "text/csv"
    assert body.content == ok(client.get(f"{path}/export", params=[*filters, ("accept", "csv")])).content
    assert client.get(f"{path}/async/export/no-such-export/status").status_code == 404
    other = "transactions" if kind == "licenses" else "licenses"
    assert client.get(f"{ASYNC[other][0]}/async/export/{export_id}").status_code == 404


def test_async_export_failures_unknown_statuses_and_stalls(client, sb):
    def run(polls: int) -> tuple[list[str], httpx.Response]:
        links = start_export(client, LICENSES, {"startDate": "2025-06-01"})["_links"]
        seen = [ok(client.get(links["status"]["href"])).json()["export"]["status"] for _ in range(polls)]
        return seen, client.get(links["download"]["href"])

    assert configure_exports(sb, polls_to_complete=2, fail_next=1)["fail_next"] == 1
    seen, download = run(3)
    assert seen == ["QUEUED", "FAILED", "FAILED"] and download.status_code == 404
    assert run(2)[0] == ["QUEUED", "COMPLETED"]  # only the next one failed
    configure_exports(sb, polls_to_complete=1, unknown_status="PAUSED", unknown_polls=2)
    seen, download = run(3)
    assert seen == ["PAUSED", "PAUSED", "COMPLETED"] and download.status_code == 200
    configure_exports(sb, unknown_polls=0, never_complete=True)
    seen, download = run(8)
    assert seen == ["QUEUED"] + ["IN_PROGRESS"] * 7 and download.json() == {
        "message": "Export is being processed"
    }
    configure_exports(sb, never_complete=False, polls_to_complete=0)
    assert run(0)[1].status_code == 200  # ready without a single status call
    for bad in ({"polls_to_complete": -1}, {"fail_next": "2"}, {"unknown_status": ""}, {"never_complete": 1}):
        with pytest.raises(ValueError):
            configure_exports(sb, **bad)


def test_keep_files_generates_each_export_file_once(client, sb, monkeypatch):
    def download(filters) -> bytes:
        links = start_export(client, TRANSACTIONS, [*filters, ("accept", "csv")])["_links"]
        for _ in range(3):
            client.get(links["status"]["href"])
        return ok(client.get(links["download"]["href"])).content

    generated = []
    real_chunks = licensing_endpoints.csv_chunks

    def counted_chunks(rows, columns):
        generated.append(columns)  # runs when the file is first read, not when the reply is built
        yield from real_chunks(rows, columns)

    monkeypatch.setattr(licensing_endpoints, "csv_chunks", counted_chunks)
    year = [("startDate", "2024-07-01"), ("endDate", "2025-06-30")]
    fresh = download(year)
    assert configure_exports(sb, keep_files=True)["keep_files"] is True
    kept = [download(year), download(year)]
    assert kept == [fresh, fresh] and fresh.count(b"\n") > 1000
    assert len(generated) == 2  # the first download, then once for both kept ones
    other = download([("startDate", "2025-06-01"), ("endDate", "2025-06-30")])
    assert other != fresh and other.startswith(fresh.split(b"\n", 1)[0]) and len(generated) == 3
    with pytest.raises(ValueError, match="keep_files must be true or false"):
        configure_exports(sb, keep_files="yes")


def test_marketing_attribution_export(client):
    sandbox = Sandbox(href_style="bare")
    set_clock(sandbox, CLOCK)
    bare = connect(sandbox)
    params = {"startDate": "2025-06-01", "endDate": "2025-06-14", "accept": "csv"}
    first = ok(bare.post(f"{DEV}/marketing-attribution/async/export", params=params)).json()
    assert_same_shape(sample("marketing_attribution_async_export_start.json"), first)
    again = ok(bare.post(f"{DEV}/marketing-attribution/async/export", params=params)).json()
    other = ok(
        bare.post(f"{DEV}/marketing-attribution/async/export", params={**params, "endDate": "2025-06-13"})
    ).json()
    export_id = first["export"]["id"]
    assert again["export"]["id"] == export_id != other["export"]["id"]
    status, download = first["_links"]["status"]["href"], first["_links"]["download"]["href"]
    generic = f"/reporting/developer-space/sandbox-developer/async/export/{export_id}"
    assert (status, download) == (f"{generic}/status", generic)  # bare hrefs: no /rest/3
    assert ok(bare.get(f"/rest/3{status}")).json()["export"]["status"] == "QUEUED"
    assert ok(bare.get(f"{DEV}/async/export/{export_id}/status")).json()["export"]["status"] == "IN_PROGRESS"
    alias = ok(bare.get(f"{DEV}/marketing-attribution/async/export/{export_id}/status")).json()
    assert_same_shape(sample("async_export_status.json"), alias) and alias["export"]["status"] == "COMPLETED"
    assert (
        ok(bare.post(f"{DEV}/marketing-attribution/async/export", params=params)).json()["export"]["id"]
        == export_id
    )
    reader = csv.DictReader(io.StringIO(ok(bare.get(f"/rest/3{download}")).text))
    rows = list(reader)
    assert reader.fieldnames == list(ATTRIBUTION_COLUMNS) and "productId" in reader.fieldnames
    days = {r["date"] for r in rows}
    assert days == {(date(2025, 6, 1) + timedelta(days=i)).isoformat() for i in range(14)}
    per_day = Counter((r["date"], r["addonKey"]) for r in rows)
    assert set(per_day.values()) == {7} and len(per_day) == 14 * len(sandbox.apps)  # one row per channel
    # Evaluations per app and day are the evaluation licenses that started that day.
    licenses = export_json(
        bare, LICENSES, [("startDate", "2025-06-01"), ("endDate", "2025-06-14"), ("withDataInsights", "true")]
    )
    started = Counter(
        (r["evaluationStartDate"], r["addonKey"])
        for r in {r["appEntitlementId"]: r for r in licenses}.values()
        if r["evaluationStartDate"]
    )
    evaluations = Counter()
    for r in rows:
        evaluations[(r["date"], r["addonKey"])] += int(r["evaluations"])
    assert +evaluations == started and sum(started.values()) > 0


def test_control_endpoints_set_the_clock_and_export_behaviour(sb):
    with (
        serve(sb) as url,
        httpx.Client(base_url=url) as control,
        httpx.Client(base_url=url, auth=AUTH) as api,
    ):
        assert control.get("/_sandbox/clock").json() == {"date": CLOCK.isoformat()}
        assert control.post("/_sandbox/clock", json={"date": "2025-03-31"}).json() == {"date": "2025-03-31"}
        latest = ok(api.get(TRANSACTIONS, params={"startDate": "2025-03-01", "limit": 50})).json()
        assert max(r["purchaseDetails"]["saleDate"] for r in latest["transactions"]) <= "2025-03-31"
        assert control.post("/_sandbox/clock", json={"date": "March"}).status_code == 400
        configured = control.post("/_sandbox/exports", json={"polls_to_complete": 1, "fail_next": 1}).json()
        assert configured["config"]["polls_to_complete"] == 1 and configured["config"]["fail_next"] == 1
        links = ok(api.post(f"{LICENSES}/async/export", params={"startDate": "2025-03-01"})).json()["_links"]
        assert ok(api.get(links["status"]["href"])).json()["export"]["status"] == "FAILED"
        jobs = control.get("/_sandbox/exports").json()["exports"]
        assert [(j["kind"], j["status"], j["as_of"]) for j in jobs] == [("licenses", "FAILED", "2025-03-31")]
        assert control.post("/_sandbox/exports", json={"colour": "red"}).status_code == 400
        assert control.post("/_sandbox/exports", json={"reset": True}).json()["exports"] == []
        assert control.post("/_sandbox/clock", json={"date": None}).json() == {
            "date": date.today().isoformat()
        }


# --- streaming --------------------------------------------------------------------------------------


def test_in_process_export_is_a_streamed_response(client):
    with client.stream(
        "GET", f"{TRANSACTIONS}/export", params={"startDate": "2024-07-01", "accept": "csv"}
    ) as response:
        assert response.headers["transfer-encoding"] == "chunked" and "content-length" not in response.headers
        chunks = list(response.iter_raw())
    assert len(chunks) > 3 and b"".join(chunks).count(b"\n") > 2000


def test_large_transactions_export_streams_over_the_real_server(monkeypatch):
    sandbox = Sandbox(volume=30)
    set_clock(sandbox, CLOCK)
    configure_exports(sandbox, polls_to_complete=1)
    produced = Counter()
    original = licensing_endpoints.iter_transactions

    def counted(*args, **kwargs):
        for row in original(*args, **kwargs):
            produced["rows"] += 1
            yield row

    monkeypatch.setattr(licensing_endpoints, "iter_transactions", counted)
    window = {"startDate": "2025-05-01", "endDate": "2025-06-19", "accept": "csv"}
    with serve(sandbox) as url, httpx.Client(base_url=url, auth=AUTH, timeout=60) as api:
        links = ok(api.post(f"{TRANSACTIONS}/async/export", params=window)).json()["_links"]
        assert ok(api.get(links["status"]["href"])).json()["export"]["status"] == "COMPLETED"
        started = time.monotonic()
        with api.stream("GET", links["download"]["href"]) as response:
            assert response.status_code == 200 and response.headers["content-type"] == "text/csv"
            assert (
                response.headers["transfer-encoding"] == "chunked"
                and "content-length" not in response.headers
            )
            chunks = response.iter_raw()
            first = next(chunks)
            produced_at_first_chunk = produced["rows"]
            lines, size, count = first.count(b"\n"), len(first), 1
            for chunk in chunks:
                lines, size, count = lines + chunk.count(b"\n"), size + len(chunk), count + 1
        elapsed = time.monotonic() - started
    rows = lines - 1
    print(f"\nstreamed {rows} transactions ({size / 1e6:.0f} MB, {count} chunks) in {elapsed:.1f} s")
    assert rows >= 200_000 and rows == produced["rows"]
    # The server sent the first chunk long before it had made the rows: it never held the whole body.
    assert produced_at_first_chunk < rows // 10 and count > 100


# --- the free starter tier --------------------------------------------------------------------------


def test_free_starter_tier_export(client, sb):
    def rows(params) -> list[dict]:
        response = ok(client.get(STARTER, params={"accept": "csv", **params}))
        reader = csv.DictReader(io.StringIO(response.text))
        assert reader.fieldnames == list(FREE_STARTER_COLUMNS) and "productId" not in reader.fieldnames
        return list(reader)

    day = "2025-05-15"
    on_day = rows({"date": day})
    assert on_day and {r["date"] for r in on_day} == {day}
    assert {(r["licenseType"], r["status"], r["hosting"], r["appEdition"]) for r in on_day} == {
        ("starter", "active", "Cloud", "Free")
    }
    # Ranges are ignored: only `date` counts (the clock's day without one).
    assert rows({"date": day, "startDate": "2024-01-01", "endDate": "2024-12-31"}) == on_day
    assert rows({"startDate": "2024-01-01", "endDate": "2024-01-31"}) == rows({"date": CLOCK.isoformat()})
    app = sb.apps[1]
    assert rows({"date": day, "productId": app.product_id}) == [
        r for r in on_day if r["addonKey"] == app.addon_key
    ]
    unknown = client.get(STARTER, params={"date": day, "productId": "00000000-0000-0000-0000-000000000000"})
    assert unknown.status_code == 500 and unknown.json()["message"]
    assert rows({"date": (CLOCK + timedelta(days=1)).isoformat()}) == []  # nothing after the clock
    assert client.get(STARTER, params={"date": "15/05/2025"}).status_code == 400
    set_clock(sb, day)
    params = [
        ("licenseType", "starter"),
        ("status", "active"),
        ("dateType", "end"),
        ("startDate", day),
        ("endDate", day),
    ]
    active = {r["appEntitlementId"] for r in export_json(client, LICENSES, params)}
    assert {r["appEntitlementId"] for r in on_day} == active


# --- determinism and volume -------------------------------------------------------------------------


def test_same_seed_same_bytes_and_volume_scales_transactions():
    def bodies(sandbox: Sandbox) -> list[bytes]:
        set_clock(sandbox, CLOCK)
        c = connect(sandbox)
        return [
            ok(c.get(LICENSES, params={"startDate": "2025-06-01", "limit": 50})).content,
            ok(c.get(TRANSACTIONS, params={"startDate": "2025-06-01", "limit": 50})).content,
            ok(c.get(STARTER, params={"date": "2025-06-01"})).content,
        ]

    first, again, other = bodies(Sandbox(seed=7)), bodies(Sandbox(seed=7)), bodies(Sandbox(seed=8))
    assert first == again and all(a != b for a, b in zip(first, other, strict=True))
    small, large = (transactions_per_year(Sandbox(volume=v).world, CLOCK) for v in (1, 3))
    assert 1500 < small < 3500 and 6 < large / small < 12  # apps x per-app sales: about volume squared
