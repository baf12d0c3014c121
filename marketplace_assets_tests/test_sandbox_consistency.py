"""The sandbox agrees with itself: every aggregate it serves is what its raw records imply.

Each test reads the raw records over the API (the transactions and licenses exports), computes the
aggregate here by the definitions of docs/sandbox-aggregates.md, and compares it with what the
aggregate endpoint serves, after the documented injected differences (late_refund,
whole_dollar_revenue, per_item_mrr_rounding), which are checked to be there exactly as documented.
The sandbox's clock is set to Saturday 2025-03-15, so the data and the late refund are fixed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import httpx
import pytest

from marketplace_assets.sandbox import Sandbox
from marketplace_assets.sandbox.injected_differences import INJECTED_DIFFERENCES
from marketplace_assets.sandbox.licensing_data import set_clock

AUTH = ("sandbox@example.com", "sandbox-token")
DEV = "/rest/3/reporting/developer-space/sandbox-developer"
PARTNER_METRICS = "/rest/3/partner-metrics/developer-space/sandbox-developer"
CLOCK = date(2025, 3, 15)
WINDOW = {"startDate": "2025-02-02", "endDate": "2025-03-15"}  # six weeks, Sunday to Saturday
WEEKS = ["2025-02-02", "2025-02-09", "2025-02-16", "2025-02-23", "2025-03-02", "2025-03-09"]
MONTHS = ["2025-01-01", "2025-02-01", "2025-03-01"]
RENEWAL_TYPES = {"Renewal", "Upgrade", "downgrade"}


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    sandbox = Sandbox()
    set_clock(sandbox, CLOCK)
    return sandbox


@pytest.fixture(scope="module")
def client(sb):
    with httpx.Client(
        transport=sb.transport(), base_url="https://sandbox.invalid/marketplace", auth=AUTH
    ) as c:
        yield c


def get(client: httpx.Client, path: str, params: dict) -> dict:
    response = client.get(f"{DEV}/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def export(client: httpx.Client, kind: str, params: dict) -> list[dict]:
    return get(client, f"{kind}/export", {**params, "accept": "json"})


def sunday(day: str) -> str:
    d = date.fromisoformat(day)
    return (d - timedelta(days=(d.weekday() + 1) % 7)).isoformat()


def cents(amount: float) -> int:
    return int((Decimal(str(amount)) * 100).to_integral_value())


def half_away(value: Fraction) -> int:
    magnitude = int(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


@pytest.fixture(scope="module")
def window_sales(client) -> list[dict]:
    return export(client, "sales/transactions", WINDOW)


@pytest.fixture(scope="module")
def late_refund(client, sb) -> dict:
    """The first app's latest refund as of the clock, found here from the raw refunds."""
    refunds = export(
        client,
        "sales/transactions",
        {"startDate": "2018-01-01", "productId": sb.apps[0].product_id, "saleType": "Refund"},
    )
    return max(refunds, key=lambda r: (r["purchaseDetails"]["saleDate"], r["transactionLineItemId"]))


def test_the_injected_differences_are_named_once():
    names = [d.name for d in INJECTED_DIFFERENCES]
    assert names == ["late_refund", "whole_dollar_revenue", "per_item_mrr_rounding"]
    assert all(d.app and d.where and d.what and d.exercises for d in INJECTED_DIFFERENCES)


# --- sales/transactions/{metric} ---------------------------------------------------------------------

SERIES_OF = {
    "country": lambda r: r["customerDetails"]["country"],
    "region": lambda r: r["customerDetails"]["region"],
    "hosting": lambda r: r["purchaseDetails"]["hosting"],
    "tier": lambda r: r["purchaseDetails"]["tier"],
    "type": lambda r: r["purchaseDetails"]["saleType"],
    "partner": lambda r: (r.get("partnerDetails") or {}).get("partnerName"),
}


def raw_cells(rows: list[dict], metric: str) -> dict[tuple[str, str, str], list[int]]:
    """(addonKey, series, week) -> [line items, line items that are not refunds, vendorAmount cents]."""
    out: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        series = SERIES_OF[metric](row)
        if series is None:
            continue
        cell = out[(row["addonKey"], series, sunday(row["purchaseDetails"]["saleDate"]))]
        cell[0] += 1
        cell[1] += row["purchaseDetails"]["saleType"] != "Refund"
        cell[2] += cents(row["purchaseDetails"]["vendorAmount"])
    return out


def elements(body: dict, total: bool = False) -> list[tuple[str, str, dict]]:
    """(addonKey or "total", series name, element) of a time series answer, datasets flattened."""
    blocks = [*body["addons"], *([{**body["total"], "addonKey": "total"}] if total else [])]
    return [
        (block["addonKey"], series["name"], e)
        for block in blocks
        for part in block.get("datasets") or [block]
        for series in part["series"]
        for e in series["elements"]
    ]


def served_cells(body: dict) -> dict[tuple[str, str, str], list[int]]:
    return {
        (app, name, e["date"]): [e["count"], e["netCount"], cents(e["revenue"])]
        for app, name, e in elements(body, total=True)
    }


@pytest.mark.parametrize("metric", ["country", "hosting", "partner", "region", "tier", "type"])
def test_sales_by_metric_are_the_transactions(client, sb, window_sales, late_refund, metric):
    served = served_cells(get(client, f"sales/transactions/{metric}", WINDOW))
    rows = [r for r in window_sales if r["transactionLineItemId"] != late_refund["transactionLineItemId"]]
    expected = raw_cells(rows, metric)
    second = sb.apps[1].addon_key
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for (app, series, week), value in served.items():
        if app == "total":
            continue
        count, net, revenue = expected.get((app, series, week), [0, 0, 0])
        if app == second:  # whole_dollar_revenue: whole dollars, halves away from zero
            revenue = 100 * half_away(Fraction(revenue, 100))
        assert value == [count, net, revenue], (app, series, week)
        totals[(series, week)] = [t + v for t, v in zip(totals[(series, week)], value, strict=True)]
    assert {k: v for k, v in served.items() if k[0] == "total"} == {
        ("total", *key): value for key, value in totals.items()
    }
    assert {k[2] for k in served} == set(WEEKS)
    assert {(a, s, w) for a, s, w in expected} <= set(served)  # every raw cell is served
    assert sum(v[0] for k, v in served.items() if k[0] == "total") > 20


def test_late_refund_is_the_one_documented(sb, late_refund):
    """docs/sandbox-aggregates.md names it: at clock 2025-03-15, the first app's refund of 2025-02-06."""
    p = late_refund["purchaseDetails"]
    assert (late_refund["addonKey"], sb.apps[0].addon_key) == ("com.sandbox.aurora", "com.sandbox.aurora")
    assert (p["saleDate"], p["hosting"], p["vendorAmount"]) == ("2025-02-06", "Cloud", -2696.29)
    assert (p["maintenanceStartDate"], p["maintenanceEndDate"]) == ("2025-01-23", "2026-01-23")


def test_late_refund_is_in_the_transactions_but_not_in_the_weekly_sales(
    client, sb, window_sales, late_refund
):
    p = late_refund["purchaseDetails"]
    week, amount = sunday(p["saleDate"]), cents(p["vendorAmount"])
    assert WINDOW["startDate"] <= p["saleDate"] <= WINDOW["endDate"] and amount < 0
    assert late_refund in window_sales
    raw = raw_cells(window_sales, "hosting")[(sb.apps[0].addon_key, p["hosting"], week)]
    served = served_cells(get(client, "sales/transactions/hosting", WINDOW))
    assert served[(sb.apps[0].addon_key, p["hosting"], week)] == [raw[0] - 1, raw[1], raw[2] - amount]


def test_whole_dollar_revenue_rounds_only_the_second_app(client, sb, window_sales):
    served = served_cells(get(client, "sales/transactions/tier", WINDOW))
    raw = raw_cells(window_sales, "tier")
    second = {k: v for k, v in served.items() if k[0] == sb.apps[1].addon_key}
    assert all(v[2] % 100 == 0 for v in second.values())
    moved = [k for k, v in second.items() if v[2] != raw.get(k, [0, 0, 0])[2]]
    assert moved and all(abs(second[k][2] - raw[k][2]) <= 50 for k in moved)
    third = {k: v for k, v in served.items() if k[0] == sb.apps[2].addon_key and v[0]}
    assert third and any(v[2] % 100 for v in third.values())  # not rounded


# --- partner metrics: recurring revenue --------------------------------------------------------------


def month_index(day: str) -> int:
    d = date.fromisoformat(day)
    return d.year * 12 + d.month - 1


def months_of(p: dict) -> range:
    """The calendar months (as month indexes) of a line item's maintenance period (the MRR rule)."""
    start, end = date.fromisoformat(p["maintenanceStartDate"]), date.fromisoformat(p["maintenanceEndDate"])
    n = max(1, 12 * (end.year - start.year) + end.month - start.month)
    first = start.year * 12 + start.month - 1
    return range(first, first + n)


@pytest.fixture(scope="module")
def mrr_sales(client) -> list[dict]:
    return export(client, "sales/transactions", {"startDate": "2022-12-01", "endDate": CLOCK.isoformat()})


def rule_mrr(rows: list[dict], per_item_app: str | None = None) -> dict[tuple, dict[str, Fraction]]:
    """(addonKey, hosting, month index) -> license -> MRR in dollars, by the MRR rule."""
    out: dict[tuple, dict[str, Fraction]] = defaultdict(lambda: defaultdict(Fraction))
    for row in rows:
        p = row["purchaseDetails"]
        months = months_of(p)
        share = Fraction(cents(p["vendorAmount"]), 100 * len(months))
        if row["addonKey"] == per_item_app:
            share = Fraction(half_away(share * 100), 100)
        for month in months:
            out[(row["addonKey"], p["hosting"], month)][row["appEntitlementId"]] += share
    return out


def dollars(value: Fraction) -> float:
    return half_away(value * 100) / 100


def query_mrr(client: httpx.Client, attributes: list[str]) -> list[dict]:
    body = {
        "granularity": "MONTH",
        "attributes": [{"name": a} for a in attributes],
        "metrics": {"metricSets": [{"name": "RECURRING_REVENUE"}]},
        "dateRange": {"startDate": MONTHS[0], "endDate": CLOCK.isoformat()},
    }
    response = client.post(PARTNER_METRICS, json=body)
    assert response.status_code == 200, response.text
    return response.json()["records"]


HOSTING_ATTRIBUTE = {"CLOUD": "Cloud", "DATA_CENTER": "Data Center", "SERVER": "Server"}


def test_mrr_follows_the_rule_with_the_documented_differences(client, sb, mrr_sales, late_refund):
    first, second = sb.apps[0].addon_key, sb.apps[1].addon_key
    late = late_refund["transactionLineItemId"]
    atlassian = rule_mrr([r for r in mrr_sales if r["transactionLineItemId"] != late], per_item_app=second)
    records = query_mrr(client, ["APP_KEY", "HOSTING"])
    assert len(records) == len(MONTHS) * len(sb.apps) * 3
    for record in records:
        hosting, month = HOSTING_ATTRIBUTE[record["hosting"]], month_index(record["date"])
        closing = sum(atlassian[(record["appKey"], hosting, month)].values(), Fraction(0))
        opening = sum(atlassian[(record["appKey"], hosting, month - 1)].values(), Fraction(0))
        assert record["closingMrr"] == dollars(closing), record
        assert record["openingMrr"] == dollars(opening), record
        assert record["arr"] == round(12 * dollars(closing), 2)
        moves = Counter()
        before, after = (
            atlassian[(record["appKey"], hosting, month - 1)],
            atlassian[(record["appKey"], hosting, month)],
        )
        history = [atlassian[(record["appKey"], hosting, month - 1 - back)] for back in range(1, 13)]
        for license_id in before.keys() | after.keys():
            a, b = before.get(license_id, Fraction(0)), after.get(license_id, Fraction(0))
            came_back = any(old.get(license_id, 0) > 0 for old in history)
            started = "reactivatedMrr" if came_back else "newMrr"
            # A license's whole change is one movement: started, stopped, grew or shrank.
            kind = (
                started
                if a == 0 < b
                else "expiredMrr"
                if b == 0 < a
                else "expansionMrr"
                if b > a
                else "contractionMrr"
            )
            moves[kind] += abs(b - a)
        for key in ("newMrr", "expansionMrr", "contractionMrr", "reactivatedMrr", "expiredMrr"):
            assert record[key] == dollars(moves[key]), (record, key)
    assert sum(r["closingMrr"] for r in records if r["appKey"] == first) > 0
    assert sum(r["newMrr"] for r in records) > 0 and sum(r["expiredMrr"] for r in records) > 0
    by_app = {(r["appKey"], r["date"]): r["closingMrr"] for r in query_mrr(client, ["APP_KEY"])}
    for (app, day), value in by_app.items():
        parts = [r["closingMrr"] for r in records if (r["appKey"], r["date"]) == (app, day)]
        assert value == round(sum(parts), 2)


def test_late_refund_is_not_yet_in_the_mrr(client, sb, mrr_sales, late_refund):
    p, first = late_refund["purchaseDetails"], sb.apps[0].addon_key
    exact = rule_mrr(mrr_sales)
    served = {
        (r["appKey"], r["hosting"], r["date"]): r["closingMrr"]
        for r in query_mrr(client, ["APP_KEY", "HOSTING"])
    }
    per_month = Fraction(-cents(p["vendorAmount"]), 100 * len(months_of(p)))
    covered = [m for m in MONTHS if month_index(m) in months_of(p)]
    assert covered and per_month > 0
    hosting = next(k for k, v in HOSTING_ATTRIBUTE.items() if v == p["hosting"])
    for month in MONTHS:
        truth = dollars(sum(exact[(first, p["hosting"], month_index(month))].values(), Fraction(0)))
        gap = served[(first, hosting, month)] - truth
        assert abs(gap - (float(per_month) if month in covered else 0)) <= 0.01, month
        assert abs(gap - 224.69) <= 0.01  # 2,696.29 / 12, in every month of the window


def test_per_item_mrr_rounding_only_in_the_second_app(client, sb, mrr_sales, late_refund):
    rows = [r for r in mrr_sales if r["transactionLineItemId"] != late_refund["transactionLineItemId"]]
    exact = rule_mrr(rows)
    items = Counter(
        (r["addonKey"], r["purchaseDetails"]["hosting"], month)
        for r in rows
        for month in months_of(r["purchaseDetails"])
    )
    records = query_mrr(client, ["APP_KEY", "HOSTING"])
    gaps = []
    for record in records:
        key = (record["appKey"], HOSTING_ATTRIBUTE[record["hosting"]], month_index(record["date"]))
        truth = dollars(sum(exact[key].values(), Fraction(0)))
        if record["appKey"] == sb.apps[1].addon_key:
            # Each item's share is off by at most half a cent, and the exact sum is rounded once.
            gaps.append(abs(record["closingMrr"] - truth))
            assert gaps[-1] <= 0.005 * items[key] + 0.005 + 1e-9, key
        else:
            assert record["closingMrr"] == truth or record["appKey"] == sb.apps[0].addon_key, key
    assert any(gap >= 0.01 for gap in gaps)


# --- churn, renewal, conversion ------------------------------------------------------------------


def series_counts(body: dict, name: str) -> Counter:
    """(addonKey, week) -> the summed count of the series `name` over its datasets / conversion types."""
    out: Counter = Counter()
    for app, series, e in elements(body):
        out[(app, e["date"])] += e["count"] if series == name else 0
    return +out


def all_events(client: httpx.Client, metric: str) -> list[dict]:
    events, offset = [], 0
    while True:
        body = get(client, f"sales/metrics/{metric}/details", {**WINDOW, "offset": offset, "limit": 50})
        events.extend(body["events"])
        if "next" not in body["_links"]:
            return events
        offset += 50


def test_renewals_and_churn_are_the_license_history(client, window_sales):
    renewals = {
        r["transactionId"]: r
        for r in window_sales
        if r["purchaseDetails"]["hosting"] == "Cloud"
        and r["purchaseDetails"]["saleType"] in RENEWAL_TYPES
        and r["purchaseDetails"]["saleDate"] < CLOCK.isoformat()
    }
    lapsed = export(
        client,
        "licenses",
        {"startDate": WINDOW["startDate"], "dateType": "end", "hosting": "Cloud", "status": "inactive"},
    )
    churned = {
        r["appEntitlementId"]: r
        for r in lapsed
        if r["licenseType"] in ("COMMERCIAL", "ACADEMIC")
        and WINDOW["startDate"] <= r["maintenanceEndDate"] < CLOCK.isoformat()
    }
    expected_renewals = Counter(
        (r["addonKey"], sunday(r["purchaseDetails"]["saleDate"])) for r in renewals.values()
    )
    expected_churn = Counter((r["addonKey"], sunday(r["maintenanceEndDate"])) for r in churned.values())
    renewal, churn = get(client, "sales/metrics/renewal", WINDOW), get(client, "sales/metrics/churn", WINDOW)
    assert series_counts(renewal, "Renewals") == +expected_renewals and len(renewals) > 10
    assert series_counts(churn, "Cancellations") == +expected_churn and len(churned) > 2
    assert series_counts(churn, "Customers") == +(expected_renewals + expected_churn)
    assert series_counts(renewal, "Renewal opportunities") == series_counts(churn, "Customers")
    monthly = [
        s["elements"]
        for a in churn["addons"]
        for d in a["datasets"]
        if d["name"] == "Monthly"
        for s in d["series"]
    ]
    assert monthly and all(e["count"] == 0 for series in monthly for e in series)
    assert {e["transactionId"] for e in all_events(client, "renewal")} == set(renewals)
    churn_events = all_events(client, "churn")
    assert {e["appEntitlementId"] for e in churn_events} == set(churned)
    assert all(e["eventDate"] == churned[e["appEntitlementId"]]["maintenanceEndDate"] for e in churn_events)


def test_conversions_and_evaluations_are_the_license_history(client, window_sales):
    converted = {
        r["transactionId"]: r
        for r in window_sales
        if r["purchaseDetails"]["hosting"] == "Cloud"
        and r["purchaseDetails"]["saleType"] == "New"
        and r["purchaseDetails"]["oldTier"] == "Evaluation"
    }
    started = {
        r["appEntitlementId"]: r
        for r in export(client, "licenses", {**WINDOW, "hosting": "Cloud", "withDataInsights": "true"})
        if r["evaluationStartDate"] is not None
    }
    body = get(client, "sales/metrics/conversion", WINDOW)
    expected = Counter((r["addonKey"], sunday(r["purchaseDetails"]["saleDate"])) for r in converted.values())
    assert series_counts(body, "Conversions") == +expected and len(converted) > 3
    evaluations = Counter((r["addonKey"], sunday(r["evaluationStartDate"])) for r in started.values())
    assert series_counts(body, "Evaluations") == +evaluations and len(started) > 10
    assert {e["transactionId"] for e in all_events(client, "conversion")} == set(converted)


@pytest.mark.parametrize("metric", ["hosting", "country", "region"])
def test_evaluations_are_the_evaluation_licenses(client, metric):
    licenses = export(client, "licenses", {**WINDOW, "withDataInsights": "true"})
    evaluations = {r["appEntitlementId"]: r for r in licenses if r["evaluationStartDate"] is not None}
    value = (lambda r: r["hosting"]) if metric == "hosting" else (lambda r: r["contactDetails"][metric])
    expected = Counter(
        (r["addonKey"], value(r), sunday(r["evaluationStartDate"])) for r in evaluations.values()
    )
    body = get(client, f"evaluations/{metric}", WINDOW)
    served = Counter({(app, name, e["date"]): e["count"] for app, name, e in elements(body)})
    assert +served == +expected and sum(expected.values()) > 10
