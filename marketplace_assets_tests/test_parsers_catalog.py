"""Every other family's parser against the reference pages' sample responses."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl

from marketplace_assets.reports import parsers
from marketplace_assets.reports.catalog import REPORTS_BY_KEY
from marketplace_assets_tests.test_parsers import sample


def row_of(key: str):
    return REPORTS_BY_KEY[dg.AssetKey(key.split("/"))]


def test_transactions_by_metric_keeps_every_number() -> None:
    frame = parsers.parse_time_series(sample("sales_transactions_by_metric"), "sales/transactions_by_hosting")
    total = frame.filter(pl.col("scope") == "total")
    assert total.height == 4 and frame.filter(pl.col("scope") == "app").height == 4
    assert {"count", "net_count", "revenue", "evaluation_type"} <= set(frame.columns)
    assert frame.schema["revenue"] == pl.Float64
    assert round(total["revenue"].sum(), 2) == 631937.60
    cloud = total.filter((pl.col("series") == "Cloud") & (pl.col("date") == date(2025, 3, 9))).row(
        0, named=True
    )
    assert (cloud["count"], cloud["net_count"], cloud["revenue"]) == (1364, 1350, 300489.79)


def test_churn_has_monthly_and_annual_datasets() -> None:
    frame = parsers.parse_time_series(sample("sales_metrics_churn"), "sales/churn")
    total = frame.filter(pl.col("scope") == "total")
    assert set(total["dataset"]) == {"Monthly", "Annual"}
    customers = total.filter((pl.col("dataset") == "Annual") & (pl.col("series") == "Customers"))
    assert customers["unique_total"].unique().to_list() == [87]
    assert customers.sort("date")["count"].to_list()[:2] == [22, 36]


def test_conversion_tolerates_the_samples_truncated_app() -> None:
    frame = parsers.parse_time_series(sample("sales_metrics_conversion"), "sales/conversion")
    assert set(frame["conversion_type"].drop_nulls()) == {"Upgrade"}
    assert set(frame["series"]) == {"Evaluations", "Conversions"}
    # The sample's second addon is only a broken `productId"` key: no rows, no error.
    assert frame.filter(pl.col("scope") == "app")["addon_key"].unique().to_list() == ["app-key-1"]


def test_renewal_keeps_every_element_despite_the_samples_nesting() -> None:
    frame = parsers.parse_time_series(sample("sales_metrics_renewal"), "sales/renewal")
    total = frame.filter(pl.col("scope") == "total")
    app = frame.filter(pl.col("scope") == "app")
    # 2 datasets x 2 series x 3 weeks each, for the total and for the app.
    assert total.height == 12 and app.height == 12
    assert set(app["dataset"]) == {"Monthly", "Annual"}
    annual = app.filter((pl.col("dataset") == "Annual") & (pl.col("series") == "Renewals")).sort("date")
    assert annual["count"].to_list() == [15, 15, 27]
    assert total["count"].sum() == app["count"].sum()


def test_license_event_details() -> None:
    events = sample("sales_metrics_details")["events"]
    row = row_of("sales/churn_events")
    frame = parsers.parse_records(events, base_schema=row.base_schema, date_columns=row.date_columns)
    assert frame.height == 2
    assert frame.schema["event_date"] == pl.Date and frame.schema["maintenance_end_date"] == pl.Date
    first = frame.sort("event_date").row(0, named=True)
    assert first["event_date"] == date(2025, 1, 24) and first["transaction_id"] == "IN-EU-222-222-222"
    assert first["license_details"] is None and first["months_valid"] == 1


def test_churn_benchmark_dates_year_month_records() -> None:
    frame = parsers.parse_scoped_records(sample("benchmark_churn"), "benchmarks/churn")
    row = frame.row(0, named=True)
    assert frame.height == 1 and row["scope"] == "app"
    assert row["date"] == date(2025, 1, 1)
    assert row["addon_key"] == "com.riadalabs.jira.plugins.notificationassistant"
    assert (row["churned_licenses"], row["total_licenses"], row["churn_rate"]) == (250, 5000, 5.125)
    assert row["churn_rate_benchmark"] == 1.3 and row["isolated_churn_rate_benchmark"] == 0.97


def test_evaluation_benchmark_total_and_apps() -> None:
    frame = parsers.parse_scoped_records(sample("benchmark_evaluations"), "benchmarks/evaluations")
    assert frame.filter(pl.col("scope") == "total").height == 2
    assert frame.filter(pl.col("scope") == "app").height == 4
    feb_total = frame.filter((pl.col("scope") == "total") & (pl.col("date") == date(2025, 2, 1))).row(
        0, named=True
    )
    assert feb_total["evaluation_count"] == 1418 and feb_total["evaluation_mo_m_growth"] == -0.28
    # Per-app records have their own benchmark field names; both sets are kept.
    assert "evaluation_mo_m_growth_benchmark_all_apps_on_base_product" in frame.columns
    assert "evaluation_mo_m_growth_benchmark_all_partners" in frame.columns


def test_sales_benchmark_and_app_requests() -> None:
    sales = parsers.parse_scoped_records(sample("benchmark_sales"), "benchmarks/sales")
    assert sales.select("scope", "date", "sale").rows() == [
        ("total", date(2025, 1, 1), 1500.83),
        ("app", date(2025, 1, 1), 1500.83),
    ]
    approvals = parsers.parse_scoped_records(sample("app_requests_and_approvals"), "app_requests/approvals")
    feb = approvals.filter((pl.col("scope") == "total") & (pl.col("date") == date(2025, 2, 1))).row(
        0, named=True
    )
    assert (feb["app_requests"], feb["app_requests_approved"]) == (21, 7)
    assert approvals.height == 4


def test_customer_insights_one_row_per_month_and_group() -> None:
    tiers = parsers.parse_insights(sample("customer_insights_tiers"), "customer_insights/tiers")
    assert tiers.height == 10 and tiers["date"].unique().to_list() == [date(2025, 1, 1)]
    first = tiers.row(0, named=True)
    assert (first["group_product"], first["group_tier"]) == ("Confluence", "Evaluation")
    assert first["users_distribution_users_count"] == 150
    regions = parsers.parse_insights(sample("customer_insights_regions"), "customer_insights/regions")
    assert {
        "group_region",
        "users_distribution_users_percent",
        "users_distribution_users_marketplace_benchmark",
    } <= set(regions.columns)
    for name in ("editions", "active_users"):
        frame = parsers.parse_insights(sample(f"customer_insights_{name}"), f"customer_insights/{name}")
        assert frame.height >= 2 and frame["users_distribution_users_count"].min() > 0


def test_keywords_are_stamped_with_their_period() -> None:
    top = parsers.parse_period_details(sample("search_keywords_source"), "search/top", date(2025, 3, 1))
    assert top.height == 5 and round(top["percentage"].sum(), 2) == 12.72
    assert top["date"].unique().to_list() == [date(2025, 3, 1)]
    zero = parsers.parse_period_details(
        sample("zero_search_results_keywords"), "search/zero", date(2025, 3, 1)
    )
    assert {"search_keyword", "product_filter", "hosting_filter", "category_filter", "count"} <= set(
        zero.columns
    )


def test_search_appearances() -> None:
    frame = parsers.parse_appearances(
        sample("search_keywords_by_app"), "search/appearances_by_app", date(2025, 3, 2)
    )
    total = frame.filter(pl.col("scope") == "total").row(0, named=True)
    assert (total["search_appearances"], total["top_search_keyword"], total["date"]) == (
        402,
        "projectmanagement",
        date(2025, 3, 2),
    )
    apps = frame.filter(pl.col("scope") == "app")
    assert apps.group_by("addon_key").agg(pl.col("count").sum()).sort("addon_key").rows() == [
        ("test-page-editor-app-1", 202),
        ("test-project-projectmanagement-app-1", 602),
    ]
    assert apps["leading_search_keyword"].null_count() == 0


def test_product_keywords() -> None:
    frame = parsers.parse_product_keywords(
        sample("product_search_keywords"), "search/keywords_by_app", date(2025, 1, 1)
    )
    assert frame.select("search_keyword", "keyword_count", "date", "count").rows() == [
        ("test", 50, date(2025, 1, 1), 50),
        ("app", 4, date(2025, 1, 1), 4),
    ]
    assert frame["product_id"].unique().to_list() == ["acd011b1-1111-45bc-902a-247046a11111"]
    assert frame["month"].unique().to_list() == [date(2025, 1, 1)]
    assert frame["all_search_appearances"].unique().to_list() == [54]


def test_shape_errors_name_the_report() -> None:
    import pytest

    from marketplace_assets.api.errors import ReportShapeError

    with pytest.raises(ReportShapeError, match="benchmarks/sales"):
        parsers.parse_scoped_records({"nothing": 1}, "benchmarks/sales")
    with pytest.raises(ReportShapeError, match="customer_insights/tiers"):
        parsers.parse_insights({"x": 1}, "customer_insights/tiers")
    with pytest.raises(ReportShapeError, match="'details' list"):
        parsers.parse_period_details({"details": "no"}, "search/top", date(2025, 1, 1))
