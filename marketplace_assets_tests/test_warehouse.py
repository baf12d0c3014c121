"""The warehouse layer against real DuckDB files: partition replacement, schema evolution, atomicity,
locking, and the IO manager under `dg.materialize`."""

import datetime as dt
import logging
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG, beta_parameters
from marketplace_assets.warehouse import (
    DuckDBWarehouse,
    PartitionScope,
    RowsOutsideScopeError,
    TableNotFoundError,
    TableRef,
    TimeRange,
    WarehouseError,
    WarehouseIOManager,
    open_warehouse,
)

T = TableRef(schema="evaluations", name="by_hosting")
D = dt.date


def day_scope(first: dt.date, days: int = 1) -> PartitionScope:
    return PartitionScope.time_window("date", first, first + dt.timedelta(days=days))


def days_frame(first: dt.date, days: int, value: int = 1) -> pl.DataFrame:
    dates = [first + dt.timedelta(days=i) for i in range(days)]
    return pl.DataFrame({"date": dates, "count": [value] * days, "hosting": ["cloud"] * days})


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "nested" / "dir" / "wh.duckdb")


def sorted_rows(df: pl.DataFrame) -> list[dict]:
    return df.sort(df.columns).to_dicts()


# -- writes and partition replacement -----------------------------------------------------------------
def test_creates_parent_directory_and_table_name(wh: DuckDBWarehouse) -> None:
    assert str(T) == "evaluations.by_hosting"
    assert wh.table_columns(T) == {}
    result = wh.write(T, days_frame(D(2024, 1, 1), 1), day_scope(D(2024, 1, 1)))
    assert wh.path.exists()
    assert result.created_table and result.rows_written == 1
    assert wh.table_columns(T) == {"date": "DATE", "count": "BIGINT", "hosting": "VARCHAR"}


def test_same_partition_twice_has_no_duplicates(wh: DuckDBWarehouse) -> None:
    frame = days_frame(D(2024, 1, 1), 1)
    wh.write(T, frame, day_scope(D(2024, 1, 1)))
    second = wh.write(T, frame, day_scope(D(2024, 1, 1)))
    assert (second.rows_deleted, second.rows_written) == (1, 1)
    assert_frame_equal(wh.read(T), frame)


def test_range_write_then_one_day_rewritten(wh: DuckDBWarehouse) -> None:
    wh.write(T, days_frame(D(2024, 1, 1), 3, value=1), day_scope(D(2024, 1, 1), days=3))
    result = wh.write(T, days_frame(D(2024, 1, 2), 1, value=9), day_scope(D(2024, 1, 2)))
    assert result.rows_deleted == 1
    stored = wh.read(T).sort("date")
    assert stored["date"].to_list() == [D(2024, 1, 1), D(2024, 1, 2), D(2024, 1, 3)]
    assert stored["count"].to_list() == [1, 9, 1]
    assert wh.read(T, day_scope(D(2024, 1, 2)))["count"].to_list() == [9]


def test_new_column_is_added_reported_and_logged(
    wh: DuckDBWarehouse, caplog: pytest.LogCaptureFixture
) -> None:
    wh.write(T, days_frame(D(2024, 1, 1), 1), day_scope(D(2024, 1, 1)))
    newer = days_frame(D(2024, 1, 2), 1).with_columns(net_count=pl.lit(5))
    with caplog.at_level(logging.INFO, logger="marketplace_assets.warehouse"):
        result = wh.write(T, newer, day_scope(D(2024, 1, 2)))
    assert result.added_columns == ["net_count"]
    assert result.columns["net_count"] == "INTEGER"
    assert "net_count" in caplog.text and "evaluations.by_hosting" in caplog.text
    stored = wh.read(T).sort("date")
    assert stored["net_count"].to_list() == [None, 5]


def test_missing_column_reads_null_and_is_never_dropped(wh: DuckDBWarehouse) -> None:
    wh.write(T, days_frame(D(2024, 1, 1), 1), day_scope(D(2024, 1, 1)))
    result = wh.write(T, days_frame(D(2024, 1, 2), 1).drop("hosting"), day_scope(D(2024, 1, 2)))
    assert result.added_columns == []
    assert "hosting" in wh.table_columns(T)
    assert wh.read(T).sort("date")["hosting"].to_list() == ["cloud", None]


def test_reordered_frame_lands_by_name(wh: DuckDBWarehouse) -> None:
    # Same type on purpose: a positional insert would store these swapped without any error.
    first = pl.DataFrame({"date": [D(2024, 1, 1)], "count": [1], "net_count": [100]})
    wh.write(T, first, day_scope(D(2024, 1, 1)))
    swapped = pl.DataFrame({"net_count": [200], "count": [2], "date": [D(2024, 1, 2)]})
    wh.write(T, swapped, day_scope(D(2024, 1, 2)))
    row = wh.read(T, day_scope(D(2024, 1, 2))).to_dicts()
    assert row == [{"date": D(2024, 1, 2), "count": 2, "net_count": 200}]


def test_failure_between_delete_and_insert_keeps_old_rows(
    wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = days_frame(D(2024, 1, 1), 3)
    wh.write(T, old, day_scope(D(2024, 1, 1), days=3))
    deleted: list[int] = []
    real_delete = DuckDBWarehouse._delete_rows

    def spy_delete(self: DuckDBWarehouse, *args: object) -> int:
        deleted.append(real_delete(self, *args))  # type: ignore[arg-type]
        return deleted[-1]

    def crash(self: DuckDBWarehouse, *args: object) -> int:
        raise RuntimeError("injected failure after delete")

    monkeypatch.setattr(DuckDBWarehouse, "_delete_rows", spy_delete)
    monkeypatch.setattr(DuckDBWarehouse, "_insert_rows", crash)
    replacement = days_frame(D(2024, 1, 1), 3, value=7).with_columns(extra=pl.lit("x"))
    with pytest.raises(RuntimeError, match="injected"):
        wh.write(T, replacement, day_scope(D(2024, 1, 1), days=3))
    assert deleted == [3]  # the delete really ran inside the failed transaction
    monkeypatch.undo()
    assert_frame_equal(wh.read(T).sort("date"), old)
    assert "extra" not in wh.table_columns(T)  # the ALTER rolled back too


def test_rows_outside_scope_fail_and_write_nothing(wh: DuckDBWarehouse) -> None:
    frame = days_frame(D(2024, 1, 1), 3)  # 3 days, but the scope is only Jan 1
    with pytest.raises(RowsOutsideScopeError) as err:
        wh.write(T, frame, day_scope(D(2024, 1, 1)))
    message = str(err.value)
    for part in ("evaluations.by_hosting", "date", "[2024-01-01, 2024-01-02)", "2024-01-02", "2 of 3"):
        assert part in message
    assert wh.table_columns(T) == {}
    with pytest.raises(RowsOutsideScopeError, match="no partition column 'date'"):
        wh.write(T, frame.drop("date"), day_scope(D(2024, 1, 1)))


def test_multi_partition_replaces_only_its_combinations(wh: DuckDBWarehouse) -> None:
    jan, feb, mar = (TimeRange(D(2024, m, 1), D(2024, m + 1, 1)) for m in (1, 2, 3))

    def rows(month: int, app: str, value: int) -> pl.DataFrame:
        return pl.DataFrame(
            {"date": [D(2024, month, 5), D(2024, month, 20)], "product_id": [app] * 2, "count": [value] * 2}
        )

    everything = pl.concat([rows(m, a, 1) for m in (1, 2, 3) for a in ("app1", "app2")])
    cols = ("date", "product_id")
    all_cells = [(r, a) for r in (jan, feb, mar) for a in ("app1", "app2")]
    wh.write(T, everything, PartitionScope.combinations(cols, all_cells))
    # Jan x app1 and Mar x app2 in one write; Feb x app1 between them must survive.
    scope = PartitionScope.combinations(cols, [(jan, "app1"), (mar, "app2")])
    result = wh.write(T, pl.concat([rows(1, "app1", 2), rows(3, "app2", 2)]), scope)
    assert (result.rows_deleted, result.rows_written) == (4, 4)
    stored = wh.read(T)
    assert stored.height == 12
    changed = stored.filter(pl.col("count") == 2).select("product_id", pl.col("date").dt.month()).unique()
    assert sorted(changed.rows()) == [("app1", 1), ("app2", 3)]
    assert wh.read(T, scope).height == 4


def test_many_cells_scope_delete_and_read(wh: DuckDBWarehouse) -> None:
    days = [D(2024, 1, 1) + dt.timedelta(days=i) for i in range(0, 200, 2)]  # disjoint, unmergeable
    everything = pl.DataFrame({"date": pl.date_range(D(2024, 1, 1), D(2024, 7, 31), eager=True)})
    wh.write(T, everything.with_columns(v=pl.lit(0)), None)
    scope = PartitionScope.time_windows("date", [TimeRange(d, d + dt.timedelta(days=1)) for d in days])
    assert len(scope.cells) == 100
    result = wh.write(T, pl.DataFrame({"date": days, "v": [1] * len(days)}), scope)
    assert result.rows_deleted == 100
    assert wh.read(T).height == everything.height
    assert wh.read(T, scope)["v"].unique().to_list() == [1]


def test_static_values_scope_compares_as_text(wh: DuckDBWarehouse) -> None:
    frame = pl.DataFrame({"tier": [10, 20, 30], "n": [1, 2, 3]})  # an integer column, string keys
    wh.write(T, frame, PartitionScope.values("tier", ["10", "20", "30"]))
    wh.write(T, pl.DataFrame({"tier": [20], "n": [9]}), PartitionScope.values("tier", ["20"]))
    assert wh.read(T).sort("tier")["n"].to_list() == [1, 9, 3]
    with pytest.raises(RowsOutsideScopeError, match="tier=30"):
        wh.write(T, pl.DataFrame({"tier": [30]}), PartitionScope.values("tier", ["20"]))


def test_datetime_windows_on_timestamp_columns(wh: DuckDBWarehouse) -> None:
    # Sub-day windows are naive UTC; a tz-aware column is compared by instant, not by local clock.
    def at(*hours: int) -> pl.DataFrame:
        times = [dt.datetime(2024, 1, 1, h, tzinfo=dt.UTC) for h in hours]
        return pl.DataFrame({"ts": times, "n": list(hours)}).with_columns(
            pl.col("ts").dt.convert_time_zone("Europe/Berlin")
        )

    morning = PartitionScope.time_window("ts", dt.datetime(2024, 1, 1, 0), dt.datetime(2024, 1, 1, 6))
    with pytest.raises(RowsOutsideScopeError, match="ts="):
        wh.write(T, at(1, 7), morning)
    wh.write(T, at(1, 7), PartitionScope.time_window("ts", D(2024, 1, 1), D(2024, 1, 2)))  # dates too
    assert wh.table_columns(T)["ts"] == "TIMESTAMP WITH TIME ZONE"
    result = wh.write(T, at(5), morning)  # 05:00 UTC is 06:00 in Berlin: still inside
    assert (result.rows_deleted, result.rows_written) == (1, 1)
    assert sorted(wh.read(T)["n"].to_list()) == [5, 7]
    assert wh.read(T, morning)["n"].to_list() == [5]


def test_unpartitioned_write_replaces_whole_table(wh: DuckDBWarehouse) -> None:
    listing = TableRef("listings", "apps")
    wh.write(listing, pl.DataFrame({"key": ["a", "b", "c"], "rank": [1, 2, 3]}), None)
    result = wh.write(listing, pl.DataFrame({"key": ["d"], "name": ["Dee"]}), None)
    assert (result.rows_deleted, result.rows_written) == (3, 1)
    assert wh.read(listing).to_dicts() == [{"key": "d", "rank": None, "name": "Dee"}]


def test_list_of_struct_and_null_columns_round_trip(wh: DuckDBWarehouse) -> None:
    frame = pl.DataFrame(
        {
            "date": [D(2024, 1, 1), D(2024, 1, 1)],
            "partners": [[{"id": 1, "name": "Acme"}, {"id": 2, "name": "Bee"}], []],
            "note": [None, None],  # polars Null dtype
        }
    )
    result = wh.write(T, frame, day_scope(D(2024, 1, 1)))
    assert result.columns["note"] == "VARCHAR"
    assert result.columns["partners"].endswith("[]")
    stored = wh.read(T)
    assert stored.schema["partners"] == pl.List(pl.Struct({"id": pl.Int64, "name": pl.String}))
    # Both rows share one date and a read has no row order: compare the rows' lists as a multiset.
    assert sorted(stored["partners"].to_list(), key=repr) == sorted(frame["partners"].to_list(), key=repr)
    # Later the column holds numbers in a table that already typed it: the null column is cast.
    typed = TableRef("sales", "typed")
    wh.write(typed, pl.DataFrame({"k": ["a"], "amount": [1.5]}), None)
    wh.write(typed, pl.DataFrame({"k": ["b"], "amount": [None]}), None)
    assert wh.table_columns(typed)["amount"] == "DOUBLE"


def test_empty_frames(wh: DuckDBWarehouse) -> None:
    skipped = wh.write(T, pl.DataFrame(), day_scope(D(2024, 1, 1)))
    assert skipped.skipped_reason and "no columns" in skipped.skipped_reason
    assert wh.table_columns(T) == {}
    wh.write(T, days_frame(D(2024, 1, 1), 2), day_scope(D(2024, 1, 1), days=2))
    # The partition now has no data: its rows go, the other day stays.
    result = wh.write(T, days_frame(D(2024, 1, 1), 0), day_scope(D(2024, 1, 1)))
    assert (result.rows_deleted, result.rows_written) == (1, 0)
    assert wh.read(T)["date"].to_list() == [D(2024, 1, 2)]


def test_read_of_missing_table_is_clear(wh: DuckDBWarehouse) -> None:
    with pytest.raises(TableNotFoundError, match=r"evaluations\.by_hosting"):
        wh.read(T)


def test_scope_merges_contiguous_windows() -> None:
    days = [TimeRange(D(2024, 1, d), D(2024, 1, d + 1)) for d in (1, 2, 3, 7)]
    scope = PartitionScope.time_windows("date", days)
    assert scope.cells == (
        (TimeRange(D(2024, 1, 1), D(2024, 1, 4)),),
        (TimeRange(D(2024, 1, 7), D(2024, 1, 8)),),
    )
    assert str(scope) == "date in [2024-01-01, 2024-01-04) OR date in [2024-01-07, 2024-01-08)"


def test_open_warehouse(tmp_path: Path) -> None:
    assert isinstance(open_warehouse(str(tmp_path / "x.duckdb")), DuckDBWarehouse)
    # PostgreSQL is a backend now (test_warehouse_contract.py runs it); opening does not connect yet.
    assert type(open_warehouse("postgresql://user@localhost/db")).__name__ == "PostgresWarehouse"


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS hold (x INTEGER)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_write_waits_for_another_process_lock(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), "2.0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        held_since = time.monotonic()
        with pytest.raises(WarehouseError, match="lock"):  # a short budget gives up, clearly
            DuckDBWarehouse(path, lock_timeout=0.3).write(T, days_frame(D(2024, 1, 1), 1), None)
        result = DuckDBWarehouse(path).write(T, days_frame(D(2024, 1, 1), 1), None)
        waited = time.monotonic() - held_since
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0
    assert result.rows_written == 1
    assert waited > 1.0  # it really waited for the other process instead of failing
    with duckdb.connect(str(path), read_only=True) as con:  # the holder's table survived beside ours
        assert con.sql("SELECT count(*) FROM hold").fetchall() == [(0,)]


# -- through Dagster ----------------------------------------------------------------------------------
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
