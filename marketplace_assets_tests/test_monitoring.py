"""What the UI shows: per-partition figures after a single-run backfill (read back from the instance's
event log), previews, freshness and checks on every asset, and failures that say what failed where."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster._core.instance import InstanceRef

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import API_POOL
from marketplace_assets.assets.exports import build_export_asset
from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets.definitions import build_assets
from marketplace_assets.monitoring import cadence_of, figures_by_partition, preview_markdown
from marketplace_assets.reports.catalog import EXPORT_REPORTS
from marketplace_assets.reports.invariants import DistinctCount
from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets.sandbox.faults import FaultRule
from marketplace_assets.sandbox.resource import SandboxMarketplaceResource
from marketplace_assets.settings import SANDBOX_DEVELOPER_ID, MarketplaceSettings
from marketplace_assets.warehouse.batches import BatchWriter
from marketplace_assets_tests.dagster_dev import PROJECT_ROOT
from marketplace_assets_tests.resources import asset_resources

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
DAYS = ["2025-02-03", "2025-02-04", "2025-02-05"]
RANGE_TAGS = {RANGE_START_TAG: DAYS[0], RANGE_END_TAG: DAYS[-1]}
SANDBOX = SandboxMarketplaceResource(developer_id=SANDBOX_DEVELOPER_ID, export_poll_interval=0.2)


def test_single_run_backfill_records_each_partitions_own_figures(tmp_path: Path) -> None:
    transactions = build_export_asset(
        next(r for r in EXPORT_REPORTS if r.name == "transactions"), start_date=date(2024, 1, 1), sandbox=True
    )
    warehouse = tmp_path / "w.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [transactions], resources=asset_resources(SANDBOX, warehouse), tags=RANGE_TAGS, instance=instance
    )
    assert result.success
    assert len(instance.get_runs()) == 1, "the 3 days are one run"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        stored = con.sql(
            "SELECT purchase_details_sale_date::VARCHAR AS day, count(*) AS n, "
            "round(sum(purchase_details_vendor_amount), 2) AS vendor_amount "
            "FROM sales.transactions GROUP BY 1"
        ).pl()
    expected = {row["day"]: row for row in stored.iter_rows(named=True)}
    assert len({expected[d]["n"] for d in DAYS}) > 1, "the days must differ for the test to mean anything"
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=transactions.key, asset_partitions=DAYS), limit=10
    ).records
    by_day = {r.partition_key: r.asset_materialization.metadata for r in records}  # type: ignore[union-attr]
    assert sorted(by_day) == DAYS
    for day in DAYS:
        assert by_day[day]["dagster/row_count"].value == expected[day]["n"]
        assert by_day[day]["vendor_amount"].value == pytest.approx(expected[day]["vendor_amount"], abs=0.01)
        schema = by_day[day]["dagster/column_schema"].value
        described = {c.name: c.description for c in schema.columns}
        assert (
            described["transaction_line_item_id"]
            and described["purchase_details_vendor_amount"]
            == "What you receive for the line item after Atlassian's share, in USD (negative for a refund)"
        )
        # The distinct transactions of the day (DuckDB's count) equal the table's.
        with duckdb.connect(str(warehouse), read_only=True) as con:
            distinct = con.execute(
                "SELECT count(DISTINCT transaction_id) FROM sales.transactions "
                "WHERE purchase_details_sale_date = ?::DATE",
                [day],
            ).fetchone()
        assert distinct and by_day[day]["transactions"].value == distinct[0] > 0
        assert by_day[day]["source"].value == "sandbox"
        # The run's own facts are not drawn as a partition's: no flat line of the run's total.
        run_level = {"api_requests", "rows_in_export", "export_id", "partition_scope", "rows_replaced"}
        assert not run_level & set(by_day[day]), f"{day} carries the run's facts"
    # They are attached once, with every partition's figures, to the run's last (the latest) partition.
    latest = instance.fetch_materializations(transactions.key, limit=1).records[0]
    assert latest.partition_key == DAYS[-1]
    assert [d for d in DAYS if "run_summary" in by_day[d]] == [DAYS[-1]]
    summary = by_day[DAYS[-1]]["run_summary"].value
    assert "3 partitions" in summary and "| api_requests |" in summary and "| rows_in_export |" in summary
    assert f"{sum(expected[d]['n'] for d in DAYS):,} rows" in summary
    table = by_day[DAYS[-1]]["figures_by_partition"].value.splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    for day in DAYS:
        row = next(line for line in table if line.startswith(f"| {day} |"))
        cells = dict(zip(header, (c.strip() for c in row.strip("|").split("|")), strict=True))
        assert cells["rows"] == f"{expected[day]['n']:,}"
        assert cells["vendor_amount"] == f"{by_day[day]['vendor_amount'].value:,.2f}"
    preview = by_day[DAYS[-1]]["preview"].value
    assert preview.startswith("|") and "transaction_id" in preview


def test_figures_split_by_partition_include_empty_partitions() -> None:
    frame = pl.DataFrame(
        {"date": [date(2025, 2, 3), date(2025, 2, 3), date(2025, 2, 5)], "x": [1.5, 2.0, 4.0]}
    )
    figures = figures_by_partition(frame, DAILY, DAYS, "date", {"x_sum": pl.col("x").sum()})
    assert figures == {
        "2025-02-03": {"dagster/row_count": 2, "x_sum": 3.5},
        "2025-02-04": {"dagster/row_count": 0},
        "2025-02-05": {"dagster/row_count": 1, "x_sum": 4.0},
    }


def test_distinct_counts_per_partition_skip_nulls_and_work_on_staged_batches() -> None:
    first = pl.DataFrame({"date": [date(2025, 2, 3)] * 3, "id": ["a", "b", None]})
    second = pl.DataFrame({"date": [date(2025, 2, 3), date(2025, 2, 5)], "id": ["a", "c"]})
    writer = BatchWriter()
    for batch in (first, second):
        writer.add(batch)
    staged = writer.finish()
    try:
        figures = figures_by_partition(staged.lazy(), DAILY, DAYS, "date", {"ids": DistinctCount("id")})
    finally:
        staged.cleanup()
    assert figures == {
        "2025-02-03": {"dagster/row_count": 4, "ids": 2},
        "2025-02-04": {"dagster/row_count": 0},
        "2025-02-05": {"dagster/row_count": 1, "ids": 1},
    }
    no_such_column = figures_by_partition(first, DAILY, DAYS, "date", {"ids": DistinctCount("other")})
    assert no_such_column["2025-02-03"] == {"dagster/row_count": 3}


def test_preview_is_a_markdown_table_of_the_first_rows() -> None:
    frame = pl.DataFrame({"app": [f"app-{i}" for i in range(20)], "count": list(range(20))})
    preview = preview_markdown(frame)
    lines = preview.splitlines()
    assert lines[0].replace(" ", "") == "|app|count|"
    assert len(lines) == 2 + 5
    assert "app-4" in preview and "app-5" not in preview


SETTINGS = MarketplaceSettings(sandbox=True, start_date="2024-01-01", warehouse="unused")


def test_every_asset_has_freshness_and_checks_for_its_cadence() -> None:
    for asset in build_assets(SETTINGS):
        spec = next(iter(asset.specs))
        assert spec.freshness_policy is not None, asset.key
        checks = {c.name for c in asset.check_specs}
        assert "no_new_fields" in checks, asset.key
        if asset.partitions_def is not None:
            assert "dates_in_partition" in checks, asset.key
    assert cadence_of(dg.WeeklyPartitionsDefinition(start_date="2024-01-07")) == "weekly"
    assert cadence_of(dg.MonthlyPartitionsDefinition(start_date="2024-01-01")) == "monthly"
    assert cadence_of(dg.DailyPartitionsDefinition(start_date="2024-01-01", end_offset=1)) == "daily"


def test_a_failed_run_names_the_report_the_partitions_and_the_api_message(tmp_path: Path) -> None:
    sandbox = Sandbox(developer_id="dev", email="e@example.com", token="tok-1234567890")
    sandbox.faults.add(FaultRule(path="/evaluations/", status=400, body="startDate is not a valid date"))
    evaluations = next(
        a for a in build_assets(SETTINGS) if a.key.to_user_string() == "evaluations/by_hosting"
    )
    with serve(sandbox, port=0) as url:
        marketplace = MarketplaceResource(
            developer_id="dev", email="e@example.com", api_token="tok-1234567890", base_url=url
        )
        result = dg.materialize(
            [evaluations],
            resources=asset_resources(marketplace, tmp_path / "w.duckdb"),
            tags={
                RANGE_START_TAG: "2025-02-02",
                RANGE_END_TAG: "2025-02-16",
            },
            raise_on_error=False,
        )
    assert not result.success
    failure = result.failure_data_for_node("evaluations__by_hosting")
    message = failure.error.message if failure and failure.error else ""
    assert "evaluations/by_hosting, partitions 2025-02-02..2025-02-16" in message
    assert "HTTP 400" in message and "startDate is not a valid date" in message
    assert "tok-1234567890" not in message


def test_every_asset_shares_the_api_pool_whose_limit_is_in_dagster_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {a.op.pool for a in build_assets(SETTINGS)} == {API_POOL}
    # The instance dagster dev builds from the project's dagster.yaml (storage paths are relative to it).
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 2
