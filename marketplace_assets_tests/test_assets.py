"""Every report asset materializes against the sandbox into a real DuckDB file: one partition, a range in
one run, and again with the same result."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from marketplace_assets.assets.reports import build_report_assets
from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets.reports.catalog import REPORTS, REPORTS_BY_KEY
from marketplace_assets.sandbox import Sandbox
from marketplace_assets.sandbox.resource import SandboxMarketplaceResource
from marketplace_assets.settings import SANDBOX_DEVELOPER_ID
from marketplace_assets_tests.resources import asset_resources

START = "2025-01-01"
FEB_WEEKS = ["2025-02-02", "2025-02-09", "2025-02-16", "2025-02-23"]
ASSETS = {a.key: a for a in build_report_assets(REPORTS, start_date=date.fromisoformat(START), sandbox=True)}


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"


def materialize(
    key: str, warehouse: Path, *, partition: str | None = None, range_: tuple[str, str] | None = None
):
    tags = {}
    if range_:
        tags = {
            RANGE_START_TAG: range_[0],
            RANGE_END_TAG: range_[1],
        }
    result = dg.materialize(
        [ASSETS[dg.AssetKey(key.split("/"))]],
        resources=asset_resources(SandboxMarketplaceResource(developer_id=SANDBOX_DEVELOPER_ID), warehouse),
        partition_key=partition,
        tags=tags,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return result


def table(warehouse: Path, name: str) -> pl.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(f"SELECT * FROM {name}").pl()


def output_metadata(result) -> dict:
    """The metadata of the run's last materialization: for a range, the one carrying the run's facts."""
    events = result.get_asset_materialization_events()
    assert events
    return events[-1].materialization.metadata


def run_fact(metadata: dict, name: str) -> str:
    """One row of the `run_summary` table a range's last partition carries."""
    rows = [line for line in metadata["run_summary"].value.splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 1, f"{name} not in the run summary"
    return rows[0].split("|")[2].strip()


def test_weekly_range_is_one_run_and_equals_the_week_by_week_runs(tmp_path: Path) -> None:
    ranged, weekly = tmp_path / "ranged.duckdb", tmp_path / "weekly.duckdb"
    result = materialize("evaluations/by_hosting", ranged, range_=(FEB_WEEKS[0], FEB_WEEKS[-1]))
    materialized = [e.partition for e in result.get_asset_materialization_events()]
    assert sorted(materialized) == FEB_WEEKS
    metadata = output_metadata(result)
    assert metadata["source"].value == "sandbox"
    assert run_fact(metadata, "api_requests") == "1", "a range is one ranged request, not one per week"
    assert metadata["dagster/table_name"].value == "evaluations.by_hosting"
    for week in FEB_WEEKS:
        materialize("evaluations/by_hosting", weekly, partition=week)
    by_range = table(ranged, "evaluations.by_hosting").sort(pl.all())
    by_week = table(weekly, "evaluations.by_hosting").sort(pl.all())
    assert by_range.equals(by_week)
    # Each partition carries its own row count and figures, not the run's total copied onto all four.
    for event in result.get_asset_materialization_events():
        week = by_range.filter(pl.col("date").cast(pl.String) == event.partition)
        figures = event.materialization.metadata
        assert figures["dagster/row_count"].value == week.height == 3 * (1 + len(Sandbox().apps))
        assert figures["total_count"].value == week.filter(pl.col("scope") == "total")["count"].sum()
    apps = len(Sandbox().apps)
    # 3 hosting series, for the total and each app, in each of the 4 weeks.
    assert by_range.height == 3 * (1 + apps) * 4
    assert sorted(d.isoformat() for d in by_range["date"].unique()) == FEB_WEEKS
    total = by_range.filter(pl.col("scope") == "total").select("series", "date", "count")
    summed = by_range.filter(pl.col("scope") == "app").group_by("series", "date").agg(pl.col("count").sum())
    assert (
        total.join(summed, on=["series", "date"]).filter(pl.col("count") != pl.col("count_right")).is_empty()
    )


@pytest.mark.parametrize("metric", ["country", "partner", "region"])
def test_other_evaluation_reports(metric: str, warehouse: Path) -> None:
    materialize(f"evaluations/by_{metric}", warehouse, partition=FEB_WEEKS[1])
    frame = table(warehouse, f"evaluations.by_{metric}")
    assert frame.height > 0
    assert set(frame["scope"]) == {"total", "app"}
    assert frame["date"].unique().to_list() == [date.fromisoformat(FEB_WEEKS[1])]
    assert frame["count"].min() >= 0


def test_rematerializing_a_partition_leaves_the_same_rows(warehouse: Path) -> None:
    materialize("feedback/details", warehouse, range_=("2025-02-01", "2025-02-28"))
    first = table(warehouse, "feedback.details").sort(pl.all())
    materialize("feedback/details", warehouse, partition="2025-02-10")
    materialize("feedback/details", warehouse, range_=("2025-02-01", "2025-02-28"))
    again = table(warehouse, "feedback.details").sort(pl.all())
    assert first.height > 50, "a month of feedback spans several pages"
    assert again.equals(first)
    assert first["date"].min().isoformat() >= "2025-02-01" and first["date"].max().isoformat() <= "2025-02-28"
    assert {"addon_key", "feedback_type", "reason_key", "app_entitlement_id"} <= set(first.columns)


def test_listings_are_the_apps_of_the_reports(warehouse: Path) -> None:
    result = materialize("listings/apps", warehouse)
    listings = table(warehouse, "listings.apps")
    assert sorted(listings["product_id"]) == sorted(a.product_id for a in Sandbox().apps)
    assert output_metadata(result)["dagster/row_count"].value == listings.height
    materialize("evaluations/by_region", warehouse, partition=FEB_WEEKS[0])
    app_rows = table(warehouse, "evaluations.by_region").filter(pl.col("scope") == "app")
    assert set(app_rows["product_id"]) <= set(listings["product_id"])
    assert {"images_icon_file_id", "tags_category", "revision"} <= set(listings.columns)


def test_every_catalog_report_is_an_asset() -> None:
    assert set(ASSETS) == set(REPORTS_BY_KEY)
