"""The sandbox's benchmark, customer-insight, search-keyword and app-request endpoints: each one's
totals, percentages and months, and how they agree with the metrics they are computed from.

The endpoints' shapes against the reference samples are checked in `test_sandbox_metrics.py`.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest

from marketplace_assets.sandbox.data import today
from marketplace_assets.sandbox.insights_data import (
    last_churn_benchmark_month,
    last_full_month,
    last_sales_benchmark_month,
)
from marketplace_assets_tests.sandbox_metrics_support import (  # noqa: F401 (fixtures)
    DEV,
    FOUR_WEEKS,
    Q1,
    WEEKS,
    cells,
    client_fixture,
    get,
    sandbox_fixture,
    week,
)

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
