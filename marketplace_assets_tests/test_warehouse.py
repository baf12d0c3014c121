"""The warehouse layer against real DuckDB files: partition replacement, schema evolution, atomicity and
locking. The IO manager under `dg.materialize` is in `test_warehouse_io_manager.py`."""

import datetime as dt
import logging
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from marketplace_assets.warehouse import (
    DuckDBWarehouse,
    PartitionScope,
    RowsOutsideScopeError,
    TableNotFoundError,
    TableRef,
    TimeRange,
    WarehouseError,
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
