"""The warehouse's IO manager under `dg.materialize`, on DuckDB files: daily, weekly (a single-run
backfill) and multi-partitioned assets with a dynamic dimension, the metadata each materialization
carries, and the clear errors of an asset the IO manager cannot place."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG, beta_parameters
from marketplace_assets.warehouse import DuckDBWarehouse, TableRef, WarehouseIOManager

D = dt.date


def materialization(result: dg.ExecuteInProcessResult, key: list[str]) -> dict:
    events = [e.materialization for e in result.get_asset_materialization_events() if e.asset_key.path == key]
    assert events, f"no materialization of {key}"
    return events[-1].metadata


def io(tmp_path: Path) -> dict[str, WarehouseIOManager]:
    return {"io_manager": WarehouseIOManager(warehouse=str(tmp_path / "dg.duckdb"))}


DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
loaded: dict[str, pl.DataFrame] = {}


@dg.asset(key_prefix="sales", partitions_def=DAILY, metadata={"partition_expr": "date"})
def daily(context: dg.AssetExecutionContext) -> pl.DataFrame:
    day = context.partition_time_window.start.date()
    return pl.DataFrame({"date": [day, day], "hosting": ["cloud", "server"], "count": [1, 2]})


@dg.asset(key_prefix="sales", partitions_def=DAILY, metadata={"partition_expr": "date"})
def daily_down(daily: pl.DataFrame) -> pl.DataFrame:
    loaded["daily"] = daily
    return daily.with_columns(double=pl.col("count") * 2)


def test_daily_asset_and_metadata(tmp_path: Path) -> None:
    for _ in range(2):
        result = dg.materialize([daily], resources=io(tmp_path), partition_key="2024-01-02")
    meta = materialization(result, ["sales", "daily"])
    assert meta["dagster/row_count"].value == 2
    assert meta["dagster/table_name"].value == "sales.daily"
    schema = meta["dagster/column_schema"].value
    assert [(c.name, c.type) for c in schema.columns] == [
        ("date", "DATE"),
        ("hosting", "VARCHAR"),
        ("count", "BIGINT"),
    ]
    stored = DuckDBWarehouse(tmp_path / "dg.duckdb").read(TableRef("sales", "daily"))
    assert stored.height == 2 and stored["date"].unique().to_list() == [D(2024, 1, 2)]


def test_downstream_loads_only_its_upstream_partition(tmp_path: Path) -> None:
    dg.materialize([daily], resources=io(tmp_path), partition_key="2024-01-01")
    dg.materialize([daily, daily_down], resources=io(tmp_path), partition_key="2024-01-02")
    got = loaded["daily"]
    assert isinstance(got, pl.DataFrame)
    assert got["date"].unique().to_list() == [D(2024, 1, 2)] and got.height == 2
    stored = DuckDBWarehouse(tmp_path / "dg.duckdb").read(TableRef("sales", "daily_down"))
    assert sorted(stored["double"].to_list()) == [2, 4]


WEEKLY = dg.WeeklyPartitionsDefinition(start_date="2024-01-07")  # a Sunday, the default week start
weekly_value = {"v": 1}


with beta_parameters():  # the project's one beta parameter, as the assets pass it

    @dg.asset(
        key_prefix="evaluations",
        partitions_def=WEEKLY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": "date"},
    )
    def weekly(context: dg.AssetExecutionContext) -> pl.DataFrame:
        window = context.partition_time_window
        dates = pl.date_range(window.start.date(), window.end.date(), closed="left", eager=True)
        return pl.DataFrame({"date": dates, "count": [weekly_value["v"]] * len(dates)})


def test_weekly_single_run_backfill_range_then_one_week(tmp_path: Path) -> None:
    weekly_value["v"] = 1
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [weekly],
        resources=io(tmp_path),
        instance=instance,
        tags={
            RANGE_START_TAG: "2024-01-07",
            RANGE_END_TAG: "2024-01-21",
        },
    )
    # The write's total is the run's, not a week's: it is logged, and left off each week's materialization.
    written = materialization(result, ["evaluations", "weekly"])
    assert "dagster/row_count" not in written and "rows_replaced" not in written
    assert written["dagster/table_name"].value == "evaluations.weekly"
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    logged = [m for m in messages if "wrote 21 row(s)" in m]
    assert logged and "to evaluations.weekly, replacing 0 stored row(s)" in logged[0]
    weekly_value["v"] = 2
    dg.materialize([weekly], resources=io(tmp_path), partition_key="2024-01-14")
    stored = DuckDBWarehouse(tmp_path / "dg.duckdb").read(TableRef("evaluations", "weekly")).sort("date")
    assert stored.height == 21 and stored["date"].n_unique() == 21
    assert stored.group_by("count").len().sort("count").rows() == [(1, 14), (2, 7)]
    assert stored.filter(pl.col("count") == 2)["date"].min() == D(2024, 1, 14)


MONTH_X_APP = dg.MultiPartitionsDefinition(
    {
        "month": dg.MonthlyPartitionsDefinition(start_date="2024-01-01"),
        "app": dg.DynamicPartitionsDefinition(name="apps"),
    }
)
keyword_value = {"v": 1}


@dg.asset(
    key_prefix="search",
    partitions_def=MONTH_X_APP,
    metadata={"partition_expr": {"month": "date", "app": "product_id"}},
)
def keywords_by_app(context: dg.AssetExecutionContext) -> pl.DataFrame:
    key = context.partition_key
    assert isinstance(key, dg.MultiPartitionKey)
    month = dt.date.fromisoformat(key.keys_by_dimension["month"])
    app = key.keys_by_dimension["app"]
    return pl.DataFrame(
        {"date": [month, month.replace(day=15)], "product_id": [app] * 2, "count": [keyword_value["v"]] * 2}
    )


def test_multi_partition_with_dynamic_dimension(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("apps", ["app1", "app2"])
    keyword_value["v"] = 1

    def run(month: str, app: str) -> dg.ExecuteInProcessResult:
        key = dg.MultiPartitionKey({"month": month, "app": app})
        return dg.materialize([keywords_by_app], resources=io(tmp_path), partition_key=key, instance=instance)

    for month in ("2024-01-01", "2024-02-01"):
        for app in ("app1", "app2"):
            run(month, app)
    keyword_value["v"] = 2
    result = run("2024-01-01", "app1")
    assert materialization(result, ["search", "keywords_by_app"])["dagster/row_count"].value == 2
    stored = DuckDBWarehouse(tmp_path / "dg.duckdb").read(TableRef("search", "keywords_by_app"))
    assert stored.height == 8
    changed = stored.filter(pl.col("count") == 2)
    assert changed["product_id"].unique().to_list() == ["app1"]
    assert changed["date"].sort().to_list() == [D(2024, 1, 1), D(2024, 1, 15)]


def test_partitioned_asset_without_partition_expr_is_a_clear_error(tmp_path: Path) -> None:
    @dg.asset(key_prefix="sales", partitions_def=DAILY)
    def no_expr() -> pl.DataFrame:
        return pl.DataFrame({"date": [D(2024, 1, 1)]})

    result = dg.materialize(
        [no_expr], resources=io(tmp_path), partition_key="2024-01-01", raise_on_error=False
    )
    assert not result.success
    message = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "sales/no_expr" in message and "partition_expr" in message


def test_asset_key_must_have_two_parts(tmp_path: Path) -> None:
    @dg.asset
    def flat() -> pl.DataFrame:
        return pl.DataFrame({"a": [1]})

    result = dg.materialize([flat], resources=io(tmp_path), raise_on_error=False)
    assert not result.success
    message = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "exactly two parts [area, report]" in message
