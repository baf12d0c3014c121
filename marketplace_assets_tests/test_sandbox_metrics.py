"""The sandbox's metrics endpoints (feedback and sales time series, churn, renewal and conversion, their
event details): shaped like the reference samples, and the invariants that tie them together.

The benchmark, insight, search and app-request endpoints are in `test_sandbox_insights.py`; invalid
parameters, empty windows, determinism and volume in `test_sandbox_metrics_edge_cases.py`.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from marketplace_assets_tests.sandbox_metrics_support import (  # noqa: F401 (fixtures)
    DEV,
    FOUR_WEEKS,
    Q1,
    SALES_METRICS,
    TIME_SERIES,
    WEEKS,
    cells,
    client_fixture,
    get,
    sandbox_fixture,
    week,
)
from marketplace_assets_tests.shape import assert_same_shape

SAMPLES = Path(__file__).parent / "fixtures" / "samples"
# Keys the sample of sales/metrics/{saleMetric}/details writes at the top level (as lists): the sandbox
# answers `_links: {self, query, next?}` instead, as feedback/details does (a deliberate deviation).
DETAILS_LINK_KEYS = frozenset({"_links", "query", "export", "next"})


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def assert_filled(sample_node: Any, actual: Any, path: str = "$") -> None:
    """Every list the sample fills is filled in the answer too (an empty list would match any shape)."""
    if isinstance(sample_node, dict) and isinstance(actual, dict):
        for key in sample_node.keys() & actual.keys() - DETAILS_LINK_KEYS:
            assert_filled(sample_node[key], actual[key], f"{path}.{key}")
    elif isinstance(sample_node, list) and sample_node:
        assert actual, f"{path} is empty"
        assert_filled(sample_node[0], actual[0], f"{path}[0]")


# --- conformance with the reference samples ------------------------------------------------------

CONFORMANCE = [
    ("feedback_metrics_reason", "feedback/metrics/reason", FOUR_WEEKS),
    ("feedback_metrics_reason", "feedback/metrics/type", FOUR_WEEKS),  # same shape, other series
    *(("sales_transactions_by_metric", f"sales/transactions/{m}", FOUR_WEEKS) for m in SALES_METRICS),
    ("sales_metrics_churn", "sales/metrics/churn", FOUR_WEEKS),
    ("sales_metrics_renewal", "sales/metrics/renewal", FOUR_WEEKS),
    ("sales_metrics_conversion", "sales/metrics/conversion", FOUR_WEEKS),
    *(("sales_metrics_details", f"sales/metrics/{m}/details", FOUR_WEEKS) for m in ("churn", "renewal")),
    ("sales_metrics_details", "sales/metrics/conversion/details", FOUR_WEEKS),
    ("benchmark_churn", "sales/metrics/churn/benchmark", Q1),
    ("benchmark_evaluations", "benchmark/evaluations", Q1),
    ("benchmark_sales", "benchmark/sales", Q1),
    ("customer_insights_regions", "customer-insights/regions", Q1),
    ("customer_insights_editions", "customer-insights/editions", Q1),
    ("customer_insights_active_users", "customer-insights/active-users", Q1),
    ("customer_insights_tiers", "customer-insights/tiers", Q1),
    ("search_keywords_source", "search-keywords/source/marketplace", Q1),
    ("search_keywords_source", "search-keywords/source/embedded-marketplace", Q1),
    ("zero_search_results_keywords", "zero-search-results-keywords/source/marketplace", Q1),
    ("search_keywords_by_app", "search-keywords", FOUR_WEEKS),
    ("app_requests_and_approvals", "app-requests-and-approvals", Q1),
]


@pytest.mark.parametrize(("name", "path", "params"), CONFORMANCE, ids=[c[1] for c in CONFORMANCE])
def test_answers_are_shaped_like_the_reference_samples(client, name, path, params):
    body = get(client, path, params)
    reference = sample(name)
    # The churn/renewal/conversion samples nest or spell their 2nd addon wrongly; every answer item is
    # compared with the sample's first (correct) item, which is the consistent shape the rest shows.
    ignore = DETAILS_LINK_KEYS if name == "sales_metrics_details" else frozenset()
    assert_same_shape(reference, body, ignore=ignore)
    assert_filled(reference, body)
    if name == "sales_metrics_details":
        assert set(body) == {"_links", "events"} and "totalCount" not in body


def test_product_search_keywords_shape(client, sb):
    body = get(client, f"products/{sb.apps[0].product_id}/search-keywords", {**Q1, "aggregation": "month"})
    assert_same_shape(sample("product_search_keywords"), body)
    assert_filled(sample("product_search_keywords"), body)
    assert body["summary"]["productId"] == sb.apps[0].product_id


def test_reporting_links_are_the_sample_links(client):
    expected = json.loads(
        (SAMPLES / "reporting_links.json").read_text().replace("{developerId}", "sandbox-developer")
    )
    assert get(client, "") == expected
    assert client.get(f"{DEV}").json() == expected
    assert client.get("/rest/3/reporting/developer-space/someone-else/").status_code == 403


# --- time series invariants ----------------------------------------------------------------------


def as_int(key: tuple, value: float) -> int:
    """Money in cents (to compare sums exactly), counts as they are."""
    return round(value * 100) if key[-1] == "revenue" else value


@pytest.mark.parametrize("aggregation", ["week", "month"])
@pytest.mark.parametrize("path", TIME_SERIES)
def test_time_series_totals_are_the_sum_over_apps(client, sb, path, aggregation):
    body = get(client, path, {"startDate": "2024-12-20", "endDate": "2025-03-10", "aggregation": aggregation})
    assert [a["addonKey"] for a in body["addons"]] == [a.addon_key for a in sb.apps]
    values = cells(body)
    sums: Counter = Counter()
    for key, value in values.items():
        if key[0] != "total":
            sums[key[1:]] += as_int(key, value)
    totals = {key[1:]: as_int(key, value) for key, value in values.items() if key[0] == "total"}
    assert totals and totals == {key: sums[key] for key in totals}
    assert sum(v for k, v in totals.items() if k[-1] in ("count", "revenue")) > 0
    dates = {date.fromisoformat(key[3]) for key in values}
    if aggregation == "week":
        assert all(d.weekday() == 6 for d in dates) and min(dates) == date(2024, 12, 15)
    else:
        assert sorted(dates) == [date(2024, 12, 1), date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)]
    for key, value in values.items():
        if key[-1] == "revenue":
            assert isinstance(value, float) and round(value, 2) == value
        else:
            assert isinstance(value, int) and value >= 0


@pytest.mark.parametrize("path", TIME_SERIES)
def test_four_weeks_equal_four_one_week_answers(client, path):
    whole = cells(get(client, path, FOUR_WEEKS))
    pieces: dict = {}
    for start in WEEKS:
        pieces.update(
            cells(get(client, path, {"startDate": start.isoformat(), "endDate": str(start + timedelta(6))}))
        )
    assert whole == pieces and len({key[3] for key in whole}) == 4


def test_sales_dimensions_split_the_same_sales(client, sb):
    # The second app's revenue is served in whole dollars per element (the injected difference
    # `whole_dollar_revenue`), so its grand revenue differs between dimensions; the others' does not.
    rounded = sb.apps[1].addon_key

    def grand(metric: str) -> tuple[int, int, int, int]:
        values = cells(get(client, f"sales/transactions/{metric}", {**Q1, "aggregation": "month"}))
        total = Counter()
        for key, value in values.items():
            if key[0] == "total" or key[0] == rounded:
                total[(key[0] == rounded, key[-1])] += as_int(key, value)
        exact_revenue = total[(False, "revenue")] - total[(True, "revenue")]
        return total[(False, "count")], total[(False, "netCount")], exact_revenue, total[(True, "revenue")]

    base = grand("hosting")
    assert base[0] >= base[1] > 0 and base[2] > 0
    assert base[3] % 100 == 0  # whole dollars, in cents
    for metric in ("country", "region", "tier", "type"):
        assert grand(metric)[:3] == base[:3], metric
        assert abs(grand(metric)[3] - base[3]) <= 50 * 3 * (12 + 3), metric  # $0.50 per element
    partner = grand("partner")
    assert 0 < partner[0] < base[0]
    body = get(client, "sales/transactions/tier", week())
    assert all(s["evaluationType"] == "Net new evaluation" for s in body["total"]["series"])
    assert body["total"]["series"][0]["name"] == "10 Users"


def test_churn_renewal_and_conversion_agree(client):
    churn = cells(get(client, "sales/metrics/churn", FOUR_WEEKS))
    renewal = cells(get(client, "sales/metrics/renewal", FOUR_WEEKS))
    assert {k[1] for k in churn} == {"Monthly", "Annual"}
    for (scope, dataset, label, day, field), customers in churn.items():
        if label[0] == "Customers":
            cancelled = churn[(scope, dataset, ("Cancellations", None), day, field)]
            assert renewal[(scope, dataset, ("Renewal opportunities", None), day, field)] == customers
            assert renewal[(scope, dataset, ("Renewals", None), day, field)] == customers - cancelled
    body = get(client, "sales/metrics/churn", FOUR_WEEKS)
    for block in [body["total"], *body["addons"]]:
        for dataset in block["datasets"]:
            for series in dataset["series"]:
                assert series["uniqueTotal"] == sum(e["count"] for e in series["elements"])
    conversion = cells(get(client, "sales/metrics/conversion", FOUR_WEEKS))
    assert {k[2][1] for k in conversion} == {"Net new", "Upgrade"}
    # A conversion is dated 30 days after its evaluation started: the four weeks' conversions are at
    # most the evaluations of the four weeks 30 days earlier, per app and conversion type.
    earlier = cells(
        get(client, "sales/metrics/conversion", {"startDate": "2025-01-17", "endDate": "2025-02-13"})
    )
    converted, evaluated = Counter(), Counter()
    for (scope, _, (name, kind), _, _), value in conversion.items():
        converted[(scope, kind)] += value if name == "Conversions" else 0
    for (scope, _, (name, kind), _, _), value in earlier.items():
        evaluated[(scope, kind)] += value if name == "Evaluations" else 0
    assert all(converted[key] <= evaluated[key] for key in converted) and sum(converted.values()) > 0


def page_all(client: httpx.Client, path: str, params: dict, key: str) -> tuple[list[dict], list[dict]]:
    bodies, items = [], []
    response = client.get(f"{DEV}/{path}", params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        bodies.append(body)
        items.extend(body[key])
        if "next" not in body["_links"]:
            return bodies, items
        response = client.get(body["_links"]["next"]["href"])


def sunday(day: str) -> str:
    d = date.fromisoformat(day)
    return (d - timedelta(days=(d.weekday() + 1) % 7)).isoformat()


@pytest.mark.parametrize(("metric", "field"), [("reason", "reasonKey"), ("type", "feedbackType")])
def test_feedback_metrics_count_the_feedback_details(client, metric, field):
    window = {"startDate": "2025-02-16", "endDate": "2025-03-01", "limit": 50}
    for extra in ({}, {"hosting": "Cloud"}):
        _, items = page_all(client, "feedback/details", {**window, **extra}, "feedback")
        expected = Counter((i["addonKey"], i[field], sunday(i["date"])) for i in items)
        values = cells(get(client, f"feedback/metrics/{metric}", {**window, **extra}))
        got = {(k[0], k[2][0], k[3]): v for k, v in values.items() if k[0] != "total" and v}
        assert got == dict(expected) and len(items) > 10


@pytest.mark.parametrize(
    ("metric", "series"), [("churn", "Cancellations"), ("renewal", "Renewals"), ("conversion", "Conversions")]
)
def test_event_details_agree_with_the_aggregates(client, metric, series):
    window = {"startDate": "2025-02-16", "endDate": "2025-03-01"}
    _, events = page_all(client, f"sales/metrics/{metric}/details", {**window, "limit": 50}, "events")
    expected = Counter((e["addonKey"], sunday(e["eventDate"])) for e in events)
    got: Counter = Counter()
    for key, value in cells(get(client, f"sales/metrics/{metric}", window)).items():
        if key[0] != "total" and key[2][0] == series:
            got[(key[0], key[3])] += value
    assert +got == expected and len(events) > 3
    assert all((e["licenseDetails"] is None) == (metric == "churn") for e in events)


def test_event_details_page_to_the_end_with_limit_clamped(client, sb):
    params = {"startDate": "2025-01-01", "endDate": "2025-01-31", "limit": 500}
    bodies, events = page_all(client, "sales/metrics/renewal/details", params, "events")
    assert len(bodies) >= 2 and [len(b["events"]) for b in bodies[:-1]] == [50] * (len(bodies) - 1)
    assert 0 < len(bodies[-1]["events"]) <= 50 and all("totalCount" not in b for b in bodies)
    assert len({e["appEntitlementId"] for e in events}) == len(events)
    assert events == sorted(events, key=lambda e: (e["eventDate"], e["addonKey"], e["appEntitlementId"]))
    assert all("2025-01-01" <= e["eventDate"] <= "2025-01-31" for e in events)
    assert all(e["lastUpdated"] >= e["eventDate"] and e["monthsValid"] in (1, 12) for e in events)
    query = dict(parse_qsl(urlsplit(bodies[0]["_links"]["next"]["href"]).query))
    assert query == {"startDate": "2025-01-01", "endDate": "2025-01-31", "offset": "50", "limit": "50"}
    default = get(client, "sales/metrics/renewal/details", {k: v for k, v in params.items() if k != "limit"})
    assert default["events"] == events[:10]
    app = sb.apps[1].product_id
    _, mine = page_all(client, "sales/metrics/renewal/details", {**params, "productId": app}, "events")
    assert mine == [e for e in events if e["productId"] == app] and mine
    assert get(client, "sales/metrics/renewal/details", {**params, "hosting": "Data Center"})["events"] == []
    late = get(client, "sales/metrics/renewal/details", {**params, "lastUpdated": "2025-01-30"})["events"]
    assert late and all(e["lastUpdated"] >= "2025-01-30" for e in late)
    last = get(client, "sales/metrics/renewal/details", {**params, "offset": len(events) - 50})
    assert last["events"] == events[-50:] and "next" not in last["_links"]  # ends exactly: no next
    beyond = get(client, "sales/metrics/renewal/details", {**params, "offset": len(events)})
    assert beyond["events"] == [] and "next" not in beyond["_links"]
