"""Merge writes against real DuckDB files: every observed license version is kept, upserts by key,
atomicity, refusals, a large merge, and the IO manager's ``write_mode: "merge"`` under `dg.materialize`."""

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from marketplace_assets.warehouse import (
    DuckDBWarehouse,
    MergeKeyError,
    PartitionScope,
    RowsOutsideScopeError,
    TableRef,
    WarehouseIOManager,
)
from marketplace_assets_tests.warehouse_backends import versions

T = TableRef(schema="licensing", name="licenses")
KEYS = ["license_id", "last_updated"]
D = dt.date
D1, D2 = D(2024, 1, 1), D(2024, 1, 2)


def stored(wh: DuckDBWarehouse) -> list[tuple]:
    return sorted(wh.read(T).select("license_id", "last_updated", "edition").rows())


def day(first: dt.date) -> PartitionScope:
    return PartitionScope.time_window("last_updated", first, first + dt.timedelta(days=1))


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "wh.duckdb")


# -- history is kept ----------------------------------------------------------------------------------
def test_versions_are_kept_and_a_corrected_version_is_updated_in_place(wh: DuckDBWarehouse) -> None:
    v1 = versions(("L", D1, "Standard"))
    first = wh.merge(T, v1, KEYS, day(D1))
    assert first.created_table
    assert (first.rows_inserted, first.rows_updated, first.rows_written) == (1, 0, 1)
    assert wh.table_columns(T) == {"license_id": "VARCHAR", "last_updated": "DATE", "edition": "VARCHAR"}

    second = wh.merge(T, versions(("L", D2, "Premium")), KEYS, day(D2))
    assert (second.rows_inserted, second.rows_updated, second.rows_deleted) == (1, 0, 0)
    assert stored(wh) == [("L", D1, "Standard"), ("L", D2, "Premium")]

    again = wh.merge(T, v1, KEYS, day(D1))  # version 1's partition re-materialized, same frame
    assert (again.rows_inserted, again.rows_updated, again.rows_deleted, again.rows_written) == (0, 1, 1, 1)
    assert stored(wh) == [("L", D1, "Standard"), ("L", D2, "Premium")]

    corrected = wh.merge(T, versions(("L", D1, "Academic")), KEYS, day(D1))
    assert (corrected.rows_inserted, corrected.rows_updated) == (0, 1)
    assert stored(wh) == [("L", D1, "Academic"), ("L", D2, "Premium")]


def test_a_row_the_frame_lacks_stays(wh: DuckDBWarehouse) -> None:
    wh.merge(T, versions(("A", D1, "Standard"), ("B", D1, "Standard")), KEYS, day(D1))
    result = wh.merge(T, versions(("A", D1, "Premium")), KEYS, day(D1))  # B is not reported any more
    assert (result.rows_deleted, result.rows_updated, result.rows_inserted) == (1, 1, 0)
    assert stored(wh) == [("A", D1, "Premium"), ("B", D1, "Standard")]


def test_duplicate_keys_in_the_frame_keep_the_last_row(wh: DuckDBWarehouse) -> None:
    wh.merge(T, versions(("A", D1, "old")), KEYS)
    frame = versions(("A", D1, "first"), ("B", D1, "b"), ("A", D1, "second"), ("A", D1, "last"))
    result = wh.merge(T, frame, KEYS)
    assert result.duplicates_dropped == 2
    assert (result.rows_written, result.rows_updated, result.rows_inserted) == (2, 1, 1)
    assert stored(wh) == [("A", D1, "last"), ("B", D1, "b")]
    # Same license, different versions: not duplicates.
    assert wh.merge(T, versions(("A", D2, "x"), ("A", D(2024, 1, 3), "y")), KEYS).duplicates_dropped == 0
    assert wh.read(T).height == 4


def test_new_column_is_added_and_a_reordered_frame_lands_by_name(wh: DuckDBWarehouse) -> None:
    wh.merge(T, versions(("A", D1, "Standard"), ("B", D1, "Standard")), KEYS)
    # Columns reordered and one added; license B's row is updated, C is new, A keeps a null tier.
    later = pl.DataFrame(
        {"tier": [10, 25], "edition": ["Premium", "Free"], "last_updated": [D1, D2], "license_id": ["B", "C"]}
    )
    result = wh.merge(T, later, KEYS)
    assert result.added_columns == ["tier"]
    assert list(result.columns) == ["license_id", "last_updated", "edition", "tier"]
    rows = wh.read(T).sort("license_id").rows()
    assert rows == [("A", D1, "Standard", None), ("B", D1, "Premium", 10), ("C", D2, "Free", 25)]


def test_date_keys_compare_as_stored(wh: DuckDBWarehouse) -> None:
    wh.merge(T, versions(("A", D1, "Standard")), KEYS)
    # The same version arrives as a timestamp: stored as DATE (2024-01-01) it is the same key.
    as_datetime = pl.DataFrame(
        {"license_id": ["A"], "last_updated": [dt.datetime(2024, 1, 1, 8)], "edition": ["Premium"]}
    )
    result = wh.merge(T, as_datetime, KEYS)
    assert (result.rows_updated, result.rows_inserted) == (1, 0)
    assert wh.table_columns(T)["last_updated"] == "DATE"
    assert stored(wh) == [("A", D1, "Premium")]
    # Two timestamps of one day are distinct in the frame but one DATE key once stored: refused.
    same_day = pl.DataFrame(
        {
            "license_id": ["A", "A"],
            "last_updated": [dt.datetime(2024, 1, 1, 8), dt.datetime(2024, 1, 1, 9)],
            "edition": ["x", "y"],
        }
    )
    with pytest.raises(MergeKeyError, match=r"licensing\.licenses.*last_updated.*1 of 2"):
        wh.merge(T, same_day, KEYS)
    assert stored(wh) == [("A", D1, "Premium")]


# -- atomicity and refusals ---------------------------------------------------------------------------
def test_failure_between_delete_and_insert_leaves_the_table_as_it_was(
    wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = versions(("A", D1, "Standard"), ("B", D1, "Standard"), ("C", D2, "Free"))
    wh.merge(T, before, KEYS)
    deleted: list[int] = []
    real_delete = DuckDBWarehouse._delete_matching_keys

    def spy_delete(self: DuckDBWarehouse, *args: object) -> int:
        deleted.append(real_delete(self, *args))  # type: ignore[arg-type]
        return deleted[-1]

    def crash(self: DuckDBWarehouse, *args: object) -> int:
        raise RuntimeError("injected failure after delete")

    monkeypatch.setattr(DuckDBWarehouse, "_delete_matching_keys", spy_delete)
    monkeypatch.setattr(DuckDBWarehouse, "_insert_rows", crash)
    update = versions(("A", D1, "Premium"), ("B", D1, "Premium"), ("D", D2, "new")).with_columns(
        extra=pl.lit("x")
    )
    with pytest.raises(RuntimeError, match="injected"):
        wh.merge(T, update, KEYS)
    assert deleted == [2]  # the delete really ran inside the failed transaction
    monkeypatch.undo()
    assert_frame_equal(wh.read(T).sort("license_id"), before)
    assert "extra" not in wh.table_columns(T)  # the ALTER rolled back too


def test_null_key_is_refused_and_nothing_is_written(wh: DuckDBWarehouse) -> None:
    with_null = versions(("A", D1, "Standard"), ("B", D1, "Standard")).with_columns(
        license_id=pl.Series(["A", None])
    )
    with pytest.raises(MergeKeyError) as err:
        wh.merge(T, with_null, KEYS)
    message = str(err.value)
    for part in ("licensing.licenses", "'license_id'", "1 of 2", "null"):
        assert part in message
    assert wh.table_columns(T) == {}  # not even the table was created
    wh.merge(T, versions(("A", D1, "Standard")), KEYS)
    with pytest.raises(MergeKeyError, match="'last_updated'"):
        wh.merge(T, versions(("A", D1, "Premium")).with_columns(last_updated=None), KEYS)
    with pytest.raises(MergeKeyError, match=r"no key column.*'license_id'"):
        wh.merge(T, versions(("A", D1, "Premium")).drop("license_id"), KEYS)
    assert stored(wh) == [("A", D1, "Standard")]


def test_rows_outside_the_scope_are_refused_and_nothing_is_written(wh: DuckDBWarehouse) -> None:
    wh.merge(T, versions(("A", D1, "Standard")), KEYS, day(D1))
    frame = versions(("A", D1, "Premium"), ("B", D2, "Free"))  # B belongs to D2, the scope is D1
    with pytest.raises(RowsOutsideScopeError) as err:
        wh.merge(T, frame, KEYS, day(D1))
    for part in ("licensing.licenses", "last_updated", "[2024-01-01, 2024-01-02)", "2024-01-02", "1 of 2"):
        assert part in str(err.value)
    assert stored(wh) == [("A", D1, "Standard")]
    # The scope is only checked: a merge inside it deletes nothing of the scope's other rows.
    wh.merge(T, versions(("B", D2, "Free")), KEYS, day(D2))
    wh.merge(T, versions(("C", D2, "Free")), KEYS, day(D2))
    assert [r[0] for r in stored(wh)] == ["A", "B", "C"]


def test_large_merge(wh: DuckDBWarehouse) -> None:
    n = 300_000

    def frame(first: int, edition: str) -> pl.DataFrame:
        ids = pl.int_range(first, first + n, eager=True)
        return pl.DataFrame(
            {
                "license_id": ("L" + ids.cast(pl.String).str.zfill(7)),
                "last_updated": pl.Series([D1] * n),
                "edition": pl.Series([edition] * n),
                "seats": ids,
            }
        )

    wh.merge(T, frame(0, "old"), KEYS)
    started = time.perf_counter()
    result = wh.merge(T, frame(n // 2, "new"), KEYS)  # half the keys overlap the stored ones
    elapsed = time.perf_counter() - started
    print(f"\nmerge of {n} rows into a {n}-row table (half overlapping): {elapsed:.2f}s")
    assert (result.rows_updated, result.rows_inserted, result.rows_deleted) == (n // 2, n // 2, n // 2)
    table = wh.read(T)
    assert table.height == n + n // 2
    assert table.select(pl.struct(KEYS).n_unique()).item() == table.height
    by_id = dict(table.select("license_id", "edition").iter_rows())
    assert by_id["L0000000"] == "old"  # only in the table
    assert by_id[f"L{n // 2 - 1:07d}"] == "old"
    assert by_id[f"L{n // 2:07d}"] == "new"  # in both: updated
    assert by_id[f"L{n - 1:07d}"] == "new"
    assert by_id[f"L{n + n // 2 - 1:07d}"] == "new"  # only in the frame: inserted
    assert table.group_by("edition").len().sort("edition").rows() == [("new", n), ("old", n // 2)]


# -- through Dagster ----------------------------------------------------------------------------------
DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
MERGE_META = {"partition_expr": "last_updated", "write_mode": "merge", "merge_keys": KEYS}
# What the licensing API reports per day partition, set by the test before each run.
reported: dict[str, pl.DataFrame] = {}


@dg.asset(key_prefix="licensing", partitions_def=DAILY, metadata=MERGE_META)
def licenses(context: dg.AssetExecutionContext) -> pl.DataFrame:
    return reported[context.partition_key]


def materialization(result: dg.ExecuteInProcessResult) -> dict:
    events = result.get_asset_materialization_events()
    assert events
    return events[-1].materialization.metadata


def test_merge_asset_keeps_every_version(tmp_path: Path) -> None:
    path = tmp_path / "dg.duckdb"
    resources = {"io_manager": WarehouseIOManager(warehouse=str(path))}

    def run(partition: str) -> dict:
        return materialization(dg.materialize([licenses], resources=resources, partition_key=partition))

    reported["2024-01-01"] = versions(("L", D1, "Standard"), ("M", D1, "Standard"))
    first = run("2024-01-01")
    reported["2024-01-02"] = versions(("L", D2, "Premium"))
    run("2024-01-02")
    # Re-run of D1: the API now reports only L's version 1 (M's has been superseded elsewhere).
    reported["2024-01-01"] = versions(("L", D1, "Standard"))
    again = run("2024-01-01")
    assert stored(DuckDBWarehouse(path)) == [
        ("L", D1, "Standard"),
        ("L", D2, "Premium"),
        ("M", D1, "Standard"),
    ]
    assert (first["rows_inserted"].value, first["rows_updated"].value) == (2, 0)
    assert (again["rows_inserted"].value, again["rows_updated"].value) == (0, 1)
    assert again["dagster/row_count"].value == 1
    assert again["duplicates_dropped"].value == 0
    assert again["dagster/table_name"].value == "licensing.licenses"
    schema = again["dagster/column_schema"].value
    assert [c.name for c in schema.columns] == ["license_id", "last_updated", "edition"]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"write_mode": "merge"}, ["licensing/no_keys", "no 'merge_keys'", '"merge_keys": [']),
        ({"write_mode": "upsert", "merge_keys": KEYS}, ["licensing/no_keys", "'upsert'", "replace", "merge"]),
        ({"merge_keys": KEYS}, ["licensing/no_keys", "merge_keys", '"write_mode": "merge"']),
    ],
)
def test_unclear_write_mode_is_a_clear_error(tmp_path: Path, metadata: dict, expected: list[str]) -> None:
    @dg.asset(
        key_prefix="licensing",
        name="no_keys",
        partitions_def=DAILY,
        metadata={"partition_expr": "last_updated", **metadata},
    )
    def asset() -> pl.DataFrame:
        return versions(("L", D1, "Standard"))

    result = dg.materialize(
        [asset],
        resources={"io_manager": WarehouseIOManager(warehouse=str(tmp_path / "dg.duckdb"))},
        partition_key="2024-01-01",
        raise_on_error=False,
    )
    assert not result.success
    message = str(result.get_step_failure_events()[0].step_failure_data.error)
    for part in expected:
        assert part in message
    assert not (tmp_path / "dg.duckdb").exists()  # nothing was written
