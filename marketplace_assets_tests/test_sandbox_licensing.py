"""The simulated Marketplace's licenses and transactions: shaped like the reference samples, paged to the
end, filtered as the reference describes, and licenses whose history follows the sandbox clock (with
the rows the service answers twice). Their exports are in `test_sandbox_licensing_exports.py`."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from marketplace_assets.sandbox.licensing_data import DATA_INSIGHTS_FIELDS, clock, set_clock
from marketplace_assets_tests.sandbox_licensing_support import (  # noqa: F401 (fixtures)
    CLOCK,
    LICENSES,
    NO_LINKS,
    TRANSACTIONS,
    client_fixture,
    export_json,
    ok,
    sample,
    sandbox_fixture,
)
from marketplace_assets_tests.shape import assert_same_shape


def with_developer(href: str) -> str:
    return href.replace("{developerId}", "sandbox-developer")


def page_through(client: httpx.Client, path: str, params: Any, key: str) -> tuple[list[dict], list[dict]]:
    bodies, rows = [], []
    response = client.get(path, params=params)
    while True:
        body = ok(response).json()
        bodies.append(body)
        rows.extend(body[key])
        if "next" not in body["_links"]:
            return bodies, rows
        response = client.get(body["_links"]["next"]["href"])


# --- conformance with the reference samples -------------------------------------------------------


def test_licenses_match_the_reference_sample(client):
    params = {"hosting": "cloud", "withDataInsights": "true", "withAttribution": "true", "limit": 50}
    body = ok(
        client.get(LICENSES, params={**params, "licenseType": "COMMERCIAL", "startDate": "2025-01-01"})
    ).json()
    # Deliberate deviation: licenses that never were evaluations carry null evaluation fields; the sample
    # shows a converted evaluation, so the shape is compared on those.
    converted = [row for row in body["licenses"] if row["evaluationLicense"]]
    assert converted and len(converted) < len(body["licenses"])
    assert_same_shape(sample("licenses.json"), {**body, "licenses": converted}, ignore=NO_LINKS)
    expected_query = with_developer(sample("licenses.json")["_links"]["query"]["href"])
    assert body["_links"]["query"] == {"href": expected_query, "templated": True}
    assert [
        (e["type"], dict(parse_qsl(urlsplit(e["href"]).query))["accept"]) for e in body["_links"]["export"]
    ] == [
        ("text/csv", "csv"),
        ("application/json", "json"),
    ]
    assert set(body["_links"]) == {"self", "query", "export", "next"}
    plain = ok(client.get(LICENSES, params={"hosting": "cloud", "startDate": "2025-01-01"})).json()[
        "licenses"
    ]
    assert set(plain[0]) == set(sample("licenses.json")["licenses"][0]) - set(DATA_INSIGHTS_FIELDS)


def test_transactions_match_the_reference_sample(client):
    rows = export_json(client, TRANSACTIONS, {"startDate": "2025-01-01"}.items())
    body = ok(client.get(TRANSACTIONS, params={"limit": 5})).json()
    reference = sample("sales_transactions.json")
    partnered = [r for r in rows if "partnerDetails" in r]
    cloud = [r for r in partnered if r["purchaseDetails"]["hosting"] == "Cloud"]
    on_premise = [r for r in partnered if r["purchaseDetails"]["hosting"] != "Cloud"]
    assert cloud and on_premise and len(partnered) < len(rows)  # partnerDetails only with a partner, as live
    # Cloud rows also carry cloudComplianceBoundaries, as the sample's second (Cloud) transaction does.
    assert_same_shape(
        reference, {**body, "transactions": cloud}, ignore=NO_LINKS | {"cloudComplianceBoundaries"}
    )
    # Deliberate deviation: Data Center and Server sales have no cloud site, so their cloudId is null.
    assert_same_shape(reference, {**body, "transactions": on_premise}, ignore=NO_LINKS | {"cloudId"})
    assert all(r["cloudId"] is None for r in on_premise)
    assert all(
        ("cloudComplianceBoundaries" in r) == (r["purchaseDetails"]["hosting"] == "Cloud") for r in rows
    )
    assert body["_links"]["query"]["href"] == with_developer(reference["_links"]["query"]["href"])


def test_transaction_amounts_sale_types_and_line_items(client):
    rows = export_json(client, TRANSACTIONS, {"startDate": "2024-07-01"}.items())
    assert {r["purchaseDetails"]["saleType"] for r in rows} == {
        "New",
        "Renewal",
        "Upgrade",
        "downgrade",
        "Refund",
    }
    for row in rows:
        p = row["purchaseDetails"]
        for amount in (p["purchasePrice"], p["vendorAmount"], p["partnerDiscountAmount"]):
            assert round(amount, 2) == amount
        assert abs(p["vendorAmount"]) <= abs(p["purchasePrice"])
        assert (p["purchasePrice"] < 0) == (p["saleType"] == "Refund")
        if p["saleType"] in ("Upgrade", "downgrade"):
            users = (int(p["oldTier"].split()[0]), int(p["tier"].split()[0]))
            assert (users[1] > users[0]) == (p["saleType"] == "Upgrade") and p["changeInTier"] == "Yes"
    by_id = Counter(r["transactionId"] for r in rows)
    assert set(by_id.values()) == {1, 2}
    two = [r for r in rows if by_id[r["transactionId"]] == 2]
    assert len({r["transactionLineItemId"] for r in rows}) == len(rows)
    for first, second in zip(two[::2], two[1::2], strict=True):
        assert first["transactionId"] == second["transactionId"]
        assert first["appEntitlementId"] == second["appEntitlementId"]


# --- paging ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "key"), [(LICENSES, "licenses"), (TRANSACTIONS, "transactions")])
def test_pages_to_the_end_with_limit_clamped(client, path, key):
    params = {"startDate": "2025-03-01", "endDate": "2025-06-30", "limit": 500}
    bodies, rows = page_through(client, path, params, key)
    total = bodies[0]["totalCount"]
    assert total > 200 and len(bodies) == -(-total // 50) and len(rows) == total
    assert all(b["totalCount"] == total for b in bodies)
    assert [len(b[key]) for b in bodies[:-1]] == [50] * (len(bodies) - 1)
    assert rows == export_json(client, path, [(k, v) for k, v in params.items() if k != "limit"])
    assert "prev" not in bodies[0]["_links"] and "offset=0" in bodies[1]["_links"]["prev"]["href"]
    assert dict(parse_qsl(urlsplit(bodies[0]["_links"]["next"]["href"]).query)) == {
        "startDate": "2025-03-01", "endDate": "2025-06-30", "offset": "50", "limit": "50",
    }  # fmt: skip
    dates = [
        r["maintenanceStartDate"] if key == "licenses" else r["purchaseDetails"]["saleDate"] for r in rows
    ]
    assert dates == sorted(dates) and dates[0] >= "2025-03-01" and dates[-1] <= "2025-06-30"
    beyond = ok(client.get(path, params={**params, "offset": total})).json()
    assert beyond[key] == [] and "next" not in beyond["_links"]


# --- filters ---------------------------------------------------------------------------------------


def test_license_filters(client, sb):
    everything = export_json(client, LICENSES)
    assert len(everything) > 5000

    def check(params, keep) -> list[dict]:
        got = export_json(client, LICENSES, params)
        assert got == [r for r in everything if keep(r)], params
        assert got, params
        return got

    s, e = "2025-03-01", "2025-03-31"
    overlap = check(
        [("startDate", s), ("endDate", e), ("dateType", "end")],
        lambda r: r["maintenanceStartDate"] <= e and r["maintenanceEndDate"] >= s,
    )
    started = check([("startDate", s), ("endDate", e)], lambda r: s <= r["maintenanceStartDate"] <= e)
    assert set(map(json.dumps, started)) < set(map(json.dumps, overlap))
    assert any(r["maintenanceStartDate"] < s for r in overlap)  # not "ended in the window"
    check([("lastUpdated", "2025-06-01")], lambda r: r["lastUpdated"] >= "2025-06-01")
    a, b = sb.apps[0].product_id, sb.apps[1].product_id
    check([("productId", a), ("productId", b)], lambda r: r["productId"] in (a, b))
    assert export_json(client, LICENSES, [("productId", f"{a},{b}")]) == []
    check([("hosting", "cloud"), ("hosting", "Data Center")], lambda r: r["hosting"] != "Server")
    check(
        [("licenseType", "net_new_evaluation"), ("licenseType", "ACADEMIC"), ("status", "active")],
        lambda r: r["licenseType"] in ("net_new_evaluation", "ACADEMIC") and r["status"] == "active",
    )
    check([("tier", "10"), ("tier", "25")], lambda r: r["tier"] in ("10 Users", "25 Users"))
    company = everything[0]["contactDetails"]["company"]
    check([("text", company.lower())], lambda r: company in (r["contactDetails"]["company"], r["addonName"]))
    assert {r["licenseType"] for r in everything} >= {
        "COMMERCIAL", "ACADEMIC", "COMMUNITY", "EVALUATION", "OPEN_SOURCE", "DEMONSTRATION",
        "net_new_evaluation", "upgrade_evaluation", "starter",
    }  # fmt: skip
    assert {r["hosting"] for r in everything} == {"Cloud", "Data Center", "Server"}
    assert {r["appEdition"] for r in everything} == {"Free", "Standard", "Advanced"}


def test_transaction_filters(client, sb):
    window = [("startDate", "2025-01-01"), ("endDate", "2025-06-30")]
    everything = export_json(client, TRANSACTIONS, window)

    def check(params, keep, base=window) -> None:
        got = export_json(client, TRANSACTIONS, [*base, *params])
        assert got == [r for r in everything if keep(r)] and got, params
        body = ok(client.get(TRANSACTIONS, params=[*base, *params])).json()
        assert body["totalCount"] == len(got)

    check([], lambda r: True)
    dates = [("startDate", "2025-02-10"), ("endDate", "2025-02-20")]
    check(dates, lambda r: "2025-02-10" <= r["purchaseDetails"]["saleDate"] <= "2025-02-20", base=[])
    check(
        [("saleType", "upgrade"), ("saleType", "downgrade")],
        lambda r: r["purchaseDetails"]["saleType"] in ("Upgrade", "downgrade"),
    )
    check([("hosting", "data center")], lambda r: r["purchaseDetails"]["hosting"] == "Data Center")
    check([("tier", "100")], lambda r: r["purchaseDetails"]["tier"] == "100 Users")
    check([("lastUpdated", "2025-06-15")], lambda r: r["lastUpdated"] >= "2025-06-15")
    check([("paymentStatus", "open")], lambda r: r["paymentStatus"] == "Open")
    check([("partnerType", "expert")], lambda r: r.get("partnerDetails", {}).get("partnerType") == "Expert")
    check([("productId", sb.apps[2].product_id)], lambda r: r["productId"] == sb.apps[2].product_id)
    check(
        [("text", everything[7]["transactionId"])],
        lambda r: r["transactionId"] == everything[7]["transactionId"],
    )
    # Nothing after the clock.
    assert all(r["purchaseDetails"]["saleDate"] <= CLOCK.isoformat() for r in everything)


@pytest.mark.parametrize("path", [LICENSES, TRANSACTIONS, f"{LICENSES}/export", f"{TRANSACTIONS}/export"])
def test_reversed_ranges_are_empty_and_malformed_dates_400(client, path):
    reversed_ = ok(
        client.get(path, params={"startDate": "2025-03-01", "endDate": "2025-02-01", "accept": "json"})
    )
    body = reversed_.json()
    if path.endswith("/export"):
        assert body == []
    else:
        assert (
            body["totalCount"] == 0 and body[path.rsplit("/", 1)[-1]] == [] and "next" not in body["_links"]
        )
    for bad in ({"startDate": "2025-13-01"}, {"endDate": "20250101"}, {"lastUpdated": "yesterday"}):
        response = client.get(path, params=bad)
        assert response.status_code == 400 and response.json()["message"]
    assert client.get(path, params={"limit": "ten"}).status_code == (400 if "export" not in path else 200)


# --- license history, the clock and the duplicate-row bug -------------------------------------------


def test_license_history_follows_the_clock(client, sb):
    window = [("startDate", "2023-01-01"), ("endDate", "2024-12-31")]
    early, late = date(2025, 3, 31), CLOCK
    set_clock(sb, early)
    before = {r["appEntitlementId"]: r for r in export_json(client, LICENSES, window)}
    recent_before = ok(client.get(LICENSES, params={"startDate": "2025-01-01"})).json()["totalCount"]
    set_clock(sb, late)
    assert clock(sb.world) == late
    after = {r["appEntitlementId"]: r for r in export_json(client, LICENSES, window)}
    assert after.keys() == before.keys()
    due = [
        i
        for i, r in before.items()
        if r["status"] == "active" and early.isoformat() < r["maintenanceEndDate"] < late.isoformat()
    ]
    renewed = [i for i in due if after[i]["status"] == "active"]
    churned = [i for i in due if after[i]["status"] == "inactive"]
    assert renewed and churned
    for i in renewed:  # version 2: a new term from the old end date
        assert after[i]["lastUpdated"] == before[i]["maintenanceEndDate"] > before[i]["lastUpdated"]
        assert after[i]["maintenanceEndDate"] > before[i]["maintenanceEndDate"]
    for i in churned:  # version 2: expired the day after its term
        expected = (date.fromisoformat(before[i]["maintenanceEndDate"]) + timedelta(days=1)).isoformat()
        assert (
            after[i]["lastUpdated"] == expected
            and after[i]["maintenanceEndDate"] == before[i]["maintenanceEndDate"]
        )
    unchanged = [i for i, r in before.items() if r["lastUpdated"] == after[i]["lastUpdated"]]
    assert all(before[i] == after[i] for i in unchanged) and len(unchanged) > len(due)
    recent_after = ok(client.get(LICENSES, params={"startDate": "2025-01-01"})).json()["totalCount"]
    assert recent_after > recent_before > 0  # licenses started after the old clock appear


def test_transactions_match_the_license_versions(client, sb):
    sales = export_json(client, TRANSACTIONS, [("startDate", "2025-05-01"), ("endDate", "2025-05-31")])
    licenses = {r["appEntitlementId"]: r for r in export_json(client, LICENSES)}
    for sale in sales:
        license_ = licenses[sale["appEntitlementId"]]
        assert license_["appEntitlementNumber"] == sale["appEntitlementNumber"]
        assert license_["hosting"] == sale["purchaseDetails"]["hosting"]
        assert license_["contactDetails"]["company"] == sale["customerDetails"]["company"]
    for sale in sales[::25]:  # as of the sale day, the license's current version is the one the sale made
        day = sale["purchaseDetails"]["saleDate"]
        set_clock(sb, day)
        params = {"text": sale["appEntitlementNumber"], "dateType": "end", "startDate": day, "endDate": day}
        (license_,) = {json.dumps(r) for r in ok(client.get(LICENSES, params=params)).json()["licenses"]}
        license_ = json.loads(license_)
        assert license_["lastUpdated"] == day and license_["tier"] == sale["purchaseDetails"]["tier"]
        if sale["purchaseDetails"]["saleType"] != "Refund":
            assert license_["maintenanceEndDate"] == sale["purchaseDetails"]["maintenanceEndDate"]


def test_some_license_rows_are_answered_twice(client):
    rows = export_json(client, LICENSES)
    counts = Counter(r["appEntitlementId"] for r in rows)
    doubled = [i for i, n in counts.items() if n == 2]
    assert set(counts.values()) == {1, 2} and 0.005 < len(doubled) / len(counts) < 0.05
    positions = [n for n, r in enumerate(rows) if r["appEntitlementId"] == doubled[0]]
    assert positions[1] == positions[0] + 1 and rows[positions[0]] == rows[positions[1]]
    page = ok(client.get(LICENSES, params={"limit": 1})).json()
    assert page["totalCount"] == len(rows)
