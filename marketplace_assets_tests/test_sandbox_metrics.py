"""The sandbox's metrics, benchmark, insight and search endpoints: reference shapes and invariants."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from marketplace_assets.sandbox import Sandbox
from marketplace_assets.sandbox.data import today
from marketplace_assets.sandbox.insights_data import (
    last_churn_benchmark_month,
    last_full_month,
    last_sales_benchmark_month,
)
from marketplace_assets_tests.shape import assert_same_shape

AUTH = ("sandbox@example.com", "sandbox-token")
DEV = "/rest/3/reporting/developer-space/sandbox-developer"
SAMPLES = Path(__file__).parent / "fixtures" / "samples"
# Four full weeks, Sunday 2025-02-16 .. Saturday 2025-03-15 (the reference samples' dates).
WEEKS = [date(2025, 2, 16) + timedelta(weeks=i) for i in range(4)]
FOUR_WEEKS = {"startDate": "2025-02-16", "endDate": "2025-03-15"}
Q1 = {"startDate": "2025-01-01", "endDate": "2025-03-31"}
SALES_METRICS = ["country", "hosting", "partner", "region", "tier", "type"]
TIME_SERIES = [
    "feedback/metrics/reason",
    "feedback/metrics/type",
    *(f"sales/transactions/{m}" for m in SALES_METRICS),
    "sales/metrics/churn",
    "sales/metrics/renewal",
    "sales/metrics/conversion",
]
# Keys the sample of sales/metrics/{saleMetric}/details writes at the top level (as lists): the sandbox
# answers `_links: {self, query, next?}` instead, as feedback/details does (a deliberate deviation).
DETAILS_LINK_KEYS = frozenset({"_links", "query", "export", "next"})


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def make_client(sandbox: Sandbox) -> httpx.Client:
    return httpx.Client(
        transport=sandbox.transport(), base_url="https://sandbox.invalid/marketplace", auth=AUTH
    )


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    return Sandbox()


@pytest.fixture(scope="module")
def client(sb):
    with make_client(sb) as c:
        yield c


def get(client: httpx.Client, path: str, params=None) -> dict:
    response = client.get(f"{DEV}/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def week(**extra) -> dict:
    return {"startDate": WEEKS[0].isoformat(), "endDate": (WEEKS[0] + timedelta(days=6)).isoformat(), **extra}


def assert_filled(sample_node, actual, path: str = "$") -> None:
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


def cells(body: dict) -> dict[tuple, float]:
    """(scope, dataset, (series, conversionType), date, field) -> value, over total and addons."""
    out = {}
    blocks = [("total", body["total"]), *((a["addonKey"], a) for a in body["addons"])]
    for scope, block in blocks:
        groups = [(d["name"], d["series"]) for d in block["datasets"]] if "datasets" in block else []
        for dataset, series_list in groups or [(None, block["series"])]:
            for series in series_list:
                label = (series["name"], series.get("conversionType"))
                for element in series["elements"]:
                    for key, value in element.items():
                        if key != "date":
                            out[(scope, dataset, label, element["date"], key)] = value
    return out


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


# --- benchmarks ----------------------------------------------------------------------------------


def test_churn_benchmark_counts_the_churn_report(client, sb):
    body = get(client, "sales/metrics/churn/benchmark", Q1)
    churn = cells(get(client, "sales/metrics/churn", {**Q1, "aggregation": "month"}))
    assert [a["productId"] for a in body["churnBenchmarkPerApp"]] == [a.product_id for a in sb.apps]
    for app in body["churnBenchmarkPerApp"]:
        months = app["churnBenchmarkPerMonth"]
        assert [(m["year"], m["month"]) for m in months] == [("2025", "03"), ("2025", "02"), ("2025", "01")]
        for m in months:
            first = f"{m['year']}-{m['month']}-01"
            cancelled = sum(
                churn[(app["appKey"], d, ("Cancellations", None), first, "count")]
                for d in ("Monthly", "Annual")
            )
            assert m["churnedLicenses"] == cancelled and m["totalLicenses"] > cancelled
            assert m["churnRate"] == round(cancelled / m["totalLicenses"] * 100, 3)
            assert 0 <= m["isolatedChurnRate"] <= m["churnRate"]
    recent = get(client, "sales/metrics/churn/benchmark", {"startDate": str(today() - timedelta(days=200))})
    latest = max(
        f"{m['year']}-{m['month']}-01"
        for a in recent["churnBenchmarkPerApp"]
        for m in a["churnBenchmarkPerMonth"]
    )
    assert latest == last_churn_benchmark_month().isoformat()
    assert date.fromisoformat(latest) < (today().replace(day=1) - timedelta(days=59)).replace(day=1)


def test_evaluation_benchmark_counts_cloud_evaluations(client, sb):
    body = get(client, "benchmark/evaluations", {"startDate": "2024-12-01", "endDate": "2025-02-28"})
    evals = cells(
        get(
            client,
            "evaluations/hosting",
            {"startDate": "2023-12-01", "endDate": "2025-02-28", "aggregation": "month"},
        )
    )
    totals = body["totals"]["CloudEvaluationBenchmarkPerVendorPerMonth"]
    assert [m["date"] for m in totals] == ["2025-02-01", "2025-01-01", "2024-12-01"]
    per_app = body["CloudEvaluationBenchmarkPerApp"]
    for app in per_app:
        for m in app["CloudEvaluationBenchmarkPerAppPerMonth"]:
            cloud = evals[(app["addonKey"], None, ("Cloud", None), m["date"], "count")]
            assert m["evaluationCount"] == cloud
            assert "evaluationMoMGrowthBenchmarkAllAppsOnBaseProduct" in m
    for i, total in enumerate(totals):
        months = [a["CloudEvaluationBenchmarkPerAppPerMonth"][i] for a in per_app]
        for key in (
            "evaluationCount",
            "previousMonthEvaluationCount",
            "evaluationCountYTD",
            "evaluationCountYTDLastYear",
        ):
            assert total[key] == sum(m[key] for m in months) > 0, key
        assert total["evaluationMoMGrowth"] == round(
            (total["evaluationCount"] / total["previousMonthEvaluationCount"] - 1) * 100, 2
        )
    assert totals[1]["evaluationCountYTD"] == totals[1]["evaluationCount"]  # January
    assert totals[0]["evaluationCountYTD"] == totals[0]["evaluationCount"] + totals[1]["evaluationCount"]
    assert totals[1]["previousMonthEvaluationCount"] == totals[2]["evaluationCount"]
    one = get(
        client,
        "benchmark/evaluations",
        {"startDate": "2025-01-01", "endDate": "2025-01-31", "productId": sb.apps[2].product_id},
    )
    assert [a["productId"] for a in one["CloudEvaluationBenchmarkPerApp"]] == [sb.apps[2].product_id]
    assert (
        one["totals"]["CloudEvaluationBenchmarkPerVendorPerMonth"][0]["evaluationCount"]
        == (
            one["CloudEvaluationBenchmarkPerApp"][0]["CloudEvaluationBenchmarkPerAppPerMonth"][0][
                "evaluationCount"
            ]
        )
    )
    latest = get(client, "benchmark/evaluations", {"startDate": str(today() - timedelta(days=70))})
    assert (
        latest["totals"]["CloudEvaluationBenchmarkPerVendorPerMonth"][0]["date"]
        == last_full_month().isoformat()
    )


def test_sales_benchmark_is_the_cloud_vendor_revenue(client, sb):
    body = get(client, "benchmark/sales", Q1)
    sales = cells(get(client, "sales/transactions/hosting", {**Q1, "aggregation": "month"}))
    total = body["total"]["salesBenchmarkPerMonth"]
    assert [m["date"] for m in total] == ["2025-03-01", "2025-02-01", "2025-01-01"]
    for i, month in enumerate(total):
        apps = [a["salesBenchmarkPerMonth"][i] for a in body["addons"]]
        for key in ("sale", "previousMonthSale", "salesYTD", "salesYTDLastYear"):
            assert round(month[key] * 100) == sum(round(a[key] * 100) for a in apps), key
        for addon, app_month in zip(body["addons"], apps, strict=True):
            cloud = sales[(addon["addonKey"], None, ("Cloud", None), month["date"], "revenue")]
            # Exact vendor revenue; the second app's served revenue is in whole dollars.
            if addon["addonKey"] == sb.apps[1].addon_key:
                assert abs(app_month["sale"] - cloud) <= 0.5 and cloud == round(cloud)
            else:
                assert app_month["sale"] == cloud
    assert total[2]["salesYTD"] == total[2]["sale"] and total[1]["previousMonthSale"] == total[2]["sale"]
    recent = get(client, "benchmark/sales", {"startDate": str(today() - timedelta(days=200))})
    dates = [m["date"] for m in recent["total"]["salesBenchmarkPerMonth"]]
    assert dates[0] == last_sales_benchmark_month().isoformat()
    assert (date.fromisoformat(dates[0]).month % 12 + 1) in (2, 5, 8, 11)


# --- customer insights ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "key", "group"),
    [
        ("regions", "regionWiseUserInsightsPerMonth", "region"),
        ("editions", "usersEditionDistribution", "edition"),
        ("active-users", "activePaidUsersInsights", "activeUsers"),
        ("tiers", "usersDistributionPerProduct", "tier"),
    ],
)
def test_customer_insights_percentages_sum_to_100(client, path, key, group):
    months = get(client, f"customer-insights/{path}", Q1)[key]
    assert [m["date"] for m in months] == ["2025-01-01", "2025-02-01", "2025-03-01"]
    for month in months:
        shares: Counter = Counter()
        for insight in month["insightsType"]:
            value = insight["value"]
            filled = {k for k, v in value["group"].items() if v is not None}
            assert filled == ({"product", "tier"} if group == "tier" else {group})
            shares[value["group"]["product"]] += value["usersDistribution"]["usersPercent"]
            assert value["usersDistribution"]["usersCount"] > 0
        # Tiers: the reference sample's percentages add up to 100 per product within a month.
        assert len(shares) == (2 if group == "tier" else 1)
        assert all(share == pytest.approx(100.0) for share in shares.values())
    recent = get(client, f"customer-insights/{path}", {"startDate": str(today() - timedelta(days=70))})[key]
    assert recent[-1]["date"] == last_full_month().isoformat()


def test_customer_insights_tiers_product_filter(client):
    jira = get(client, "customer-insights/tiers", {**Q1, "product": "jira"})["usersDistributionPerProduct"]
    assert {i["value"]["group"]["product"] for m in jira for i in m["insightsType"]} == {"Jira"}
    response = client.get(f"{DEV}/customer-insights/tiers", params={"product": "bamboo"})
    assert response.status_code == 400 and "confluence" in response.json()["message"]


# --- search --------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["marketplace", "embedded-marketplace"])
def test_top_keywords_percentages(client, source):
    details = get(client, f"search-keywords/source/{source}", Q1)["details"]
    percentages = [d["percentage"] for d in details]
    assert 0 < sum(percentages) <= 100 and percentages == sorted(percentages, reverse=True)
    assert all(round(p, 2) == p > 0 for p in percentages)
    assert len({d["searchKeyword"] for d in details}) == len(details)


def test_zero_search_results_add_up_over_weeks(client):
    def counts(params: dict) -> Counter:
        details = get(client, "zero-search-results-keywords/source/marketplace", params)["details"]
        assert [d["count"] for d in details] == sorted((d["count"] for d in details), reverse=True)
        return Counter({tuple(v for k, v in d.items() if k != "count"): d["count"] for d in details})

    whole = counts(FOUR_WEEKS)
    pieces = sum((counts(week(startDate=str(s), endDate=str(s + timedelta(6)))) for s in WEEKS), Counter())
    assert whole == pieces and sum(whole.values()) > 0


def test_search_appearances_by_app_and_by_product_agree(client, sb):
    for aggregation in ("week", "month"):
        params = {**FOUR_WEEKS, "aggregation": aggregation}
        body = get(client, "search-keywords", params)
        assert [a["productId"] for a in body["addons"]] == [a.product_id for a in sb.apps]
        assert body["total"]["searchAppearances"] == sum(a["searchAppearances"] for a in body["addons"]) > 0
        for addon in body["addons"]:
            dates = [date.fromisoformat(e["date"]) for e in addon["elements"]]
            assert all(d.weekday() == 6 if aggregation == "week" else d.day == 1 for d in dates)
            assert addon["searchAppearances"] == sum(e["count"] for e in addon["elements"])
            product = get(client, f"products/{addon['productId']}/search-keywords", params)
            assert product["summary"]["allSearchAppearances"] == addon["searchAppearances"]
            assert product["summary"]["leadingSearchKeyword"] == addon["leadingSearchKeyword"]
            assert product["summary"]["leadingSearchKeyword"] == product["details"][0]["searchKeyword"]
            for keyword in product["details"]:
                assert keyword["keywordCount"] == sum(e["count"] for e in keyword["elements"])
                assert [e["date"] for e in keyword["elements"]] == [e["date"] for e in addon["elements"]]
    weekly = get(client, "search-keywords", FOUR_WEEKS)
    pieces = [
        get(client, "search-keywords", week(startDate=str(s), endDate=str(s + timedelta(6)))) for s in WEEKS
    ]
    for i, addon in enumerate(weekly["addons"]):
        assert addon["elements"] == [p["addons"][i]["elements"][0] for p in pieces]
    assert (
        client.get(f"{DEV}/products/00000000-0000-0000-0000-000000000000/search-keywords").status_code == 404
    )


# --- app requests --------------------------------------------------------------------------------


def test_app_requests_totals_rates_and_months(client, sb):
    body = get(client, "app-requests-and-approvals", Q1)
    total = body["total"]["appRequestsAndApprovalsPerMonth"]
    assert [m["date"] for m in total] == ["2025-03-01", "2025-02-01", "2025-01-01"]
    for i, month in enumerate(total):
        apps = [a["appRequestsAndApprovalsPerAppPerMonth"][i] for a in body["addons"]]
        for key in ("appRequests", "appRequestsApproved"):
            assert month[key] == sum(a[key] for a in apps)
        for record in (month, *apps):
            assert record["appRequestsApproved"] <= record["appRequests"]
            assert record["appRequestsApprovalRate"] == pytest.approx(
                record["appRequestsApproved"] / record["appRequests"] * 100
            )
    halves = [
        get(client, "app-requests-and-approvals", {"startDate": "2025-02-01", "endDate": "2025-02-14"}),
        get(client, "app-requests-and-approvals", {"startDate": "2025-02-15", "endDate": "2025-02-28"}),
    ]
    february = total[1]
    assert february["appRequests"] == sum(
        h["total"]["appRequestsAndApprovalsPerMonth"][0]["appRequests"] for h in halves
    )
    one = get(client, "app-requests-and-approvals", {**Q1, "productId": sb.apps[0].product_id})
    assert [a["productId"] for a in one["addons"]] == [sb.apps[0].product_id]
    only_app = one["addons"][0]["appRequestsAndApprovalsPerAppPerMonth"]
    assert (
        one["total"]["appRequestsAndApprovalsPerMonth"]
        == only_app
        == body["addons"][0]["appRequestsAndApprovalsPerAppPerMonth"]
    )


# --- errors, empty windows, determinism, volume --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "allowed"),
    [
        ("feedback/metrics/country", {}, "reason"),
        ("sales/transactions/edition", {}, "tier"),
        ("sales/metrics/upgrade/details", {}, "renewal"),
        ("search-keywords/source/google", {}, "embedded-marketplace"),
        ("zero-search-results-keywords/source/embedded-marketplace", {}, "marketplace"),
        ("sales/metrics/churn", {"aggregation": "day"}, "month"),
        ("search-keywords", {"aggregation": "year"}, "week"),
        ("sales/transactions/hosting", {"startDate": "2025-13-01"}, None),
        ("sales/metrics/conversion", {"endDate": "20250101"}, None),
        ("benchmark/sales", {"startDate": "yesterday"}, None),
        ("customer-insights/regions", {"endDate": "2025-02-30"}, None),
        ("app-requests-and-approvals", {"startDate": "2025/01/01"}, None),
        ("sales/metrics/churn/details", {"limit": "ten"}, None),
        ("sales/metrics/churn/details", {"lastUpdated": "soon"}, None),
    ],
)
def test_invalid_parameters_are_400(client, path, params, allowed):
    response = client.get(f"{DEV}/{path}", params=params)
    assert response.status_code == 400
    message = response.json()["message"]
    assert message and (allowed is None or allowed in message)


def test_transactions_list_paths_are_not_taken_for_a_metric(client):
    response = client.get(
        f"{DEV}/sales/transactions/export", params={"startDate": "2025-01-01", "endDate": "2025-01-01"}
    )
    assert "Invalid metric" not in response.text


EMPTY = [
    ("feedback/metrics/reason", lambda b: b["total"]["series"] == [] and b["addons"] == []),
    ("sales/transactions/region", lambda b: b["total"]["series"] == [] and b["addons"] == []),
    ("sales/metrics/churn", lambda b: b["total"]["datasets"] == [] and b["addons"] == []),
    ("sales/metrics/conversion", lambda b: b["total"]["series"] == [] and b["addons"] == []),
    ("sales/metrics/renewal/details", lambda b: b["events"] == [] and "next" not in b["_links"]),
    ("sales/metrics/churn/benchmark", lambda b: b["churnBenchmarkPerApp"] == []),
    (
        "benchmark/evaluations",
        lambda b: (
            b["CloudEvaluationBenchmarkPerApp"] == []
            and not b["totals"]["CloudEvaluationBenchmarkPerVendorPerMonth"]
        ),
    ),
    ("benchmark/sales", lambda b: b["addons"] == [] and b["total"]["salesBenchmarkPerMonth"] == []),
    ("customer-insights/tiers", lambda b: b["usersDistributionPerProduct"] == []),
    ("search-keywords/source/marketplace", lambda b: b["details"] == []),
    ("zero-search-results-keywords/source/marketplace", lambda b: b["details"] == []),
    ("search-keywords", lambda b: b["addons"] == [] and b["total"]["searchAppearances"] == 0),
    (
        "app-requests-and-approvals",
        lambda b: b["addons"] == [] and b["total"]["appRequestsAndApprovalsPerMonth"] == [],
    ),
]


@pytest.mark.parametrize(("path", "is_empty"), EMPTY, ids=[e[0] for e in EMPTY])
def test_reversed_and_out_of_range_windows_answer_empty(client, path, is_empty):
    future = today() + timedelta(days=40)
    for start, end in [
        ("2025-03-01", "2025-02-01"),
        ("2017-01-01", "2017-12-31"),
        (str(future), str(future + timedelta(60))),
    ]:
        assert is_empty(get(client, path, {"startDate": start, "endDate": end})), (start, end)


DETERMINISM_PATHS = [
    *TIME_SERIES,
    "sales/metrics/churn/details",
    "sales/metrics/churn/benchmark",
    "benchmark/evaluations",
    "benchmark/sales",
    "customer-insights/editions",
    "search-keywords/source/marketplace",
    "zero-search-results-keywords/source/marketplace",
    "search-keywords",
    "app-requests-and-approvals",
]


def _bodies(sandbox: Sandbox) -> list[bytes]:
    with make_client(sandbox) as c:
        return [
            c.get(f"{DEV}/{p}", params=Q1 if "benchmark" in p else FOUR_WEEKS).content
            for p in DETERMINISM_PATHS
        ]


def test_same_seed_same_bytes_other_seed_other_data():
    first, again, other = _bodies(Sandbox(seed=7)), _bodies(Sandbox(seed=7)), _bodies(Sandbox(seed=8))
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_volume_scales_counts():
    def grand(sandbox: Sandbox) -> list[int]:
        with make_client(sandbox) as c:
            out = []
            for path in ("sales/transactions/hosting", "sales/metrics/churn", "feedback/metrics/type"):
                body = c.get(f"{DEV}/{path}", params=FOUR_WEEKS).json()
                out.append(sum(v for k, v in cells(body).items() if k[0] == "total" and k[-1] == "count"))
            out.append(
                c.get(f"{DEV}/search-keywords", params=FOUR_WEEKS).json()["total"]["searchAppearances"]
            )
            return out

    small, large = grand(Sandbox(volume=1.0)), grand(Sandbox(volume=4.0))
    assert all(big > 6 * little > 0 for big, little in zip(large, small, strict=True)), (small, large)
