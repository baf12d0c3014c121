"""The response-family parsers against the reference pages' own sample responses."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from marketplace_assets.api.errors import ReportShapeError
from marketplace_assets.reports.catalog import REPORTS_BY_KEY
from marketplace_assets.reports.normalize import flatten, snake_case
from marketplace_assets.reports.parsers import parse_records, parse_time_series

SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def records_of(records: list[dict], key: str):
    """Records parsed as the catalog row `key` parses them."""
    import dagster as dg

    row = REPORTS_BY_KEY[dg.AssetKey(key.split("/"))]
    return parse_records(records, base_schema=row.base_schema, date_columns=row.date_columns)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("addonKey", "addon_key"),
        ("appEntitlementId", "app_entitlement_id"),
        ("purchaseDetails_purchasePrice", "purchase_details_purchase_price"),
        ("D1_D6_AI", "d1_d6_ai"),
        ("active-users", "active_users"),
        ("googleAnalytics4Id", "google_analytics4_id"),
        ("HTTPStatus", "http_status"),
    ],
)
def test_snake_case(raw: str, expected: str) -> None:
    assert snake_case(raw) == expected


def test_flatten_joins_leaf_paths_and_keeps_lists() -> None:
    record = {"purchaseDetails": {"purchasePrice": 10.5, "discounts": [{"amount": 1}]}, "tags": ["a"]}
    assert flatten(record) == {
        "purchase_details_purchase_price": 10.5,
        "purchase_details_discounts": [{"amount": 1}],
        "tags": ["a"],
    }


def test_evaluations_by_hosting_sample() -> None:
    frame = parse_time_series(sample("evaluations_hosting"), "evaluations/by_hosting")
    # 3 series x 5 weeks for the total, and for each of the 2 apps.
    assert frame.height == 45
    assert frame.schema["date"] == pl.Date
    assert frame.columns[:7] == ["scope", "addon_key", "product_id", "app_name", "dataset", "series", "date"]
    total = frame.filter(pl.col("scope") == "total")
    assert total.height == 15
    assert total["addon_key"].null_count() == 15 and total["app_name"].null_count() == 15
    assert total["count"].sum() == 38
    cloud = total.filter(pl.col("series") == "Cloud").sort("date")
    assert cloud["count"].to_list() == [4, 4, 4, 4, 8]
    assert cloud["date"].to_list()[0] == date(2025, 2, 16)
    assert set(frame["evaluation_type"].unique()) == {"Net new evaluation"}
    apps = (
        frame.filter(pl.col("scope") == "app")
        .group_by("app_name")
        .agg(pl.col("count").sum())
        .sort("app_name")
    )
    assert apps.rows() == [("App 1", 21), ("App 2", 17)]
    # In the sample, as in the API, the total is the sum over apps for every series and week.
    by_app = frame.filter(pl.col("scope") == "app").group_by("series", "date").agg(pl.col("count").sum())
    joined = total.join(by_app, on=["series", "date"], suffix="_apps")
    assert joined.height == 15 and (joined["count"] == joined["count_apps"]).all()
    assert frame["dataset"].null_count() == 45
    # Every element date is a Sunday, as weekly elements are.
    assert set(frame["date"].dt.weekday().unique()) == {7}


@pytest.mark.parametrize(
    ("metric", "series"), [("country", "Albania"), ("partner", "Partner 1"), ("region", "APAC")]
)
def test_evaluations_small_samples(metric: str, series: str) -> None:
    frame = parse_time_series(sample(f"evaluations_{metric}"), f"evaluations/by_{metric}")
    assert frame.select("scope", "addon_key", "product_id", "series", "date", "count").rows() == [
        ("total", None, None, series, date(2025, 2, 16), 4),
        ("app", "app-key-1", "acd011b1-1111-45bc-902a-247046a11111", series, date(2025, 2, 16), 2),
    ]


def test_time_series_with_datasets_and_unknown_fields() -> None:
    body = {
        "total": {
            "name": "All apps",
            "datasets": [
                {
                    "name": "Monthly",
                    "series": [
                        {
                            "name": "Renewed",
                            "uniqueTotal": 3,
                            "elements": [
                                {"date": "2025-03-01", "count": 2, "netCount": 1, "brandNew": {"value": 5}}
                            ],
                        }
                    ],
                },
                {
                    "name": "Annual",
                    "series": [{"name": "Renewed", "elements": [{"date": "2025-03-01", "count": 7}]}],
                },
            ],
        },
        "addons": [],
    }
    frame = parse_time_series(body, "sales/renewal")
    assert frame.select(
        "scope", "dataset", "series", "unique_total", "count", "net_count", "brand_new_value"
    ).rows() == [
        ("total", "Monthly", "Renewed", 3, 2, 1, 5),
        ("total", "Annual", "Renewed", None, 7, None, None),
    ]


def test_time_series_rejects_a_body_of_another_shape() -> None:
    with pytest.raises(ReportShapeError, match=r"evaluations/by_region.*'total' and/or 'addons'.*feedback"):
        parse_time_series({"feedback": []}, "evaluations/by_region")
    with pytest.raises(ReportShapeError, match="'series' of 'All apps' is not a list"):
        parse_time_series({"total": {"name": "All apps", "series": {"a": 1}}}, "evaluations/by_region")
    # A block without any series (the conversion sample has a truncated one) has no rows, no error.
    assert parse_time_series({"total": {"name": "All apps"}}, "evaluations/by_region").height == 0


def test_empty_time_series_keeps_the_core_columns() -> None:
    frame = parse_time_series(
        {"total": {"name": "All apps", "series": []}, "addons": []}, "evaluations/by_country"
    )
    assert frame.height == 0
    assert {"scope", "addon_key", "series", "date"} <= set(frame.columns)
    assert frame.schema["date"] == pl.Date


def test_feedback_details_sample() -> None:
    frame = records_of(sample("feedback_details")["feedback"], "feedback/details")
    assert frame.height == 1
    row = frame.row(0, named=True)
    assert row["date"] == date(2025, 1, 1)
    assert row["addon_key"] == "test-app"
    assert row["feedback_type"] == "unsubscribe"
    assert row["reason_key"] == "expectations"
    assert row["app_entitlement_number"] == "E-111-AAA-AAA-11A"
    assert row["cloud_id"] == "111bb111-111b-1bb1-1b1b-1111b1b1b111"
    assert row["message"] is None  # the sample sends "": no message (reports/normalize.py, blanks_to_nulls)
    assert all(c == snake_case(c) for c in frame.columns)


def test_feedback_missing_optional_fields_become_nulls() -> None:
    frame = records_of([{"date": "2025-01-02", "addonKey": "x", "brandNewField": 1}], "feedback/details")
    row = frame.row(0, named=True)
    assert row["reason"] is None and row["app_edition"] is None
    assert row["brand_new_field"] == 1


def test_listings_sample() -> None:
    frame = records_of(sample("listings_developer_space")["items"], "listings/apps")
    assert frame.height == 2
    first, second = frame.rows(named=True)
    assert first["product_id"] == "12345678-1234-1234-1234-123456789abc"
    assert first["images_icon_file_id"] == "abc12345-6789-def0-1234-56789abcdef0"
    assert first["developer_links_issue_tracker"] == "https://issues.example.com/browse/PROJ"
    assert first["approval_details_approved_by"] == "admin@example.com"
    assert first["hosting_visibility_server"] is None
    assert first["revision"] == 15
    assert [c["id"] for c in first["tags_category"]] == ["productivity", "workflow"]
    assert [p["status"] for p in first["enrolled_programs"]] == ["APPROVED", "APPROVED", "NON_PARTICIPANT"]
    # The first item has no marketingLabels, the second has: a missing field is a null, not an error.
    assert first["marketing_labels"] is None
    assert second["marketing_labels"] == ["jira-servicedesk"]
    assert second["developer_links_app_status_page"] is None
