"""One contract for every warehouse backend: DuckDB and PostgreSQL, fed a frame or staged `Batches`.

Each test runs against both backends (`warehouse_backends.py`; the PostgreSQL server comes from
``postgres_server.py``, a fresh database per test) and, where the input shape matters, against a plain
frame and `Batches`: replacing exactly a scope's partitions in one transaction, merges that keep history
with the last row winning, additive evolution batch by batch, and refusals that write nothing.

The same contract when processes write and read at once (a writer killed with SIGKILL mid-write,
concurrent writers, a reader during a write) is in `test_warehouse_concurrency.py`; opening a warehouse
and the PostgreSQL password in `test_warehouse_connections.py`.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterator

import polars as pl
import pytest

from marketplace_assets.warehouse import (
    Batches,
    MergeKeyError,
    PartitionScope,
    Rows,
    RowsOutsideScopeError,
    TableRef,
    TimeRange,
)

# The fixtures are asked for by name (`backend`, `shape`, `make_rows`); postgres_backend is re-exported
# for test_metrics_query.py, which imports it from here.
from marketplace_assets_tests.warehouse_backends import (  # noqa: F401 (fixtures, re-export)
    D1,
    D2,
    D3,
    KEYS,
    LICENSES,
    Backend,
    D,
    T,
    backend_fixture,
    day_scope,
    days,
    make_rows_fixture,
    postgres_backend,
    rows_of,
    shape_fixture,
    versions,
)


# -- replacing partitions -----------------------------------------------------------------------------
def test_replace_exactly_the_time_range(backend: Backend, shape: str, make_rows: Callable[..., Rows]) -> None:
    wh = backend.open()
    first = wh.write(T, make_rows(shape, days(D1, 2), days(D3, 1)), day_scope(D1, 3))
    assert (first.created_table, first.rows_written, first.rows_deleted) == (True, 3, 0)
    again = wh.write(T, make_rows(shape, days(D2, 1, value=9)), day_scope(D2))
    assert (again.rows_deleted, again.rows_written) == (1, 1)
    assert rows_of(wh, T, "date", "count") == [(D1, 1), (D2, 9), (D3, 1)]
    assert rows_of(wh, T, "date", "count", scope=day_scope(D2)) == [(D2, 9)]
    # A week across a month boundary, written as one range, then one day inside it rewritten.
    week = wh.write(
        T, make_rows(shape, days(D(2024, 1, 28), 4), days(D(2024, 2, 1), 3)), day_scope(D(2024, 1, 28), 7)
    )
    assert (week.rows_deleted, week.rows_written) == (0, 7)
    wh.write(T, make_rows(shape, days(D(2024, 2, 1), 1, value=5)), day_scope(D(2024, 2, 1)))
    counts = dict(rows_of(wh, T, "date", "count"))
    assert len(counts) == 10 and counts[D(2024, 2, 1)] == 5 and counts[D(2024, 1, 31)] == 1
    assert wh.table_columns(T) == {
        "date": backend.types["date"],
        "count": backend.types["int"],
        "hosting": backend.types["text"],
    }


def test_replace_exactly_the_key_cells(backend: Backend, shape: str, make_rows: Callable[..., Rows]) -> None:
    wh = backend.open()
    jan, feb, mar = (TimeRange(D(2024, m, 1), D(2024, m + 1, 1)) for m in (1, 2, 3))

    def month(m: int, app: str, value: int) -> pl.DataFrame:
        return pl.DataFrame(
            {"date": [D(2024, m, 5), D(2024, m, 20)], "product_id": [app] * 2, "count": [value] * 2}
        )

    cols = ("date", "product_id")
    every = [(r, a) for r in (jan, feb, mar) for a in ("app1", "app2")]
    wh.write(
        T,
        make_rows(shape, *[month(m, a, 1) for m in (1, 2, 3) for a in ("app1", "app2")]),
        PartitionScope.combinations(cols, every),
    )
    scope = PartitionScope.combinations(cols, [(jan, "app1"), (mar, "app2")])
    result = wh.write(T, make_rows(shape, month(1, "app1", 2), month(3, "app2", 2)), scope)
    assert (result.rows_deleted, result.rows_written) == (4, 4)
    stored = wh.read(T)
    assert stored.height == 12
    changed = stored.filter(pl.col("count") == 2).select("product_id", pl.col("date").dt.month()).unique()
    assert sorted(changed.rows()) == [("app1", 1), ("app2", 3)]
    assert wh.read(T, scope).height == 4
    # Static keys on an integer column compare as text.
    tiers = TableRef("sales", "by_tier")
    wh.write(
        tiers,
        make_rows(shape, pl.DataFrame({"tier": [10, 20, 30], "n": [1, 2, 3]})),
        PartitionScope.values("tier", ["10", "20", "30"]),
    )
    wh.write(
        tiers, make_rows(shape, pl.DataFrame({"tier": [20], "n": [9]})), PartitionScope.values("tier", ["20"])
    )
    assert rows_of(wh, tiers) == [(10, 1), (20, 9), (30, 3)]


def test_datetime_windows_compare_instants(backend: Backend) -> None:
    wh = backend.open()

    def at(*hours: int) -> pl.DataFrame:
        times = [dt.datetime(2024, 1, 1, h, tzinfo=dt.UTC) for h in hours]
        frame = pl.DataFrame({"ts": times, "n": list(hours)})
        return frame.with_columns(pl.col("ts").dt.convert_time_zone("Europe/Berlin"))

    morning = PartitionScope.time_window("ts", dt.datetime(2024, 1, 1, 0), dt.datetime(2024, 1, 1, 6))
    wh.write(T, at(1, 7), PartitionScope.time_window("ts", D1, D2))
    result = wh.write(T, at(5), morning)  # 05:00 UTC is 06:00 in Berlin: still inside
    assert (result.rows_deleted, result.rows_written) == (1, 1)
    assert sorted(wh.read(T)["n"].to_list()) == [5, 7]
    assert wh.read(T, morning)["n"].to_list() == [5]


def test_a_failed_write_changes_nothing(backend: Backend, make_rows: Callable[..., Rows]) -> None:
    wh = backend.open()
    wh.write(T, days(D1, 3), day_scope(D1, 3))
    staged = make_rows(
        "batches", days(D1, 1, 7), days(D2, 1, 7).with_columns(extra=pl.lit("x")), days(D3, 1, 7)
    )
    assert isinstance(staged, Batches)

    class Failing(Batches):
        def __iter__(self) -> Iterator[pl.DataFrame]:
            for i, frame in enumerate(super().__iter__()):
                if i == 2:
                    raise RuntimeError("injected failure after two batches")
                yield frame

    with pytest.raises(RuntimeError, match="injected"):
        wh.write(T, Failing(staged.directory, staged.files, staged.height), day_scope(D1, 3))
    assert rows_of(wh, T, "date", "count") == [(D1, 1), (D2, 1), (D3, 1)]
    assert "extra" not in wh.table_columns(T)  # the schema change rolled back too


def test_rows_outside_the_scope_are_refused_and_nothing_is_written(
    backend: Backend, shape: str, make_rows: Callable[..., Rows]
) -> None:
    wh = backend.open()
    bad = make_rows(shape, days(D1, 1, 5), days(D2, 2, 5))  # Jan 2 and 3, but the scope is Jan 1
    with pytest.raises(RowsOutsideScopeError, match=r"evaluations\.by_hosting.*outside the partition scope"):
        wh.write(T, bad, day_scope(D1))
    assert wh.table_columns(T) == {}  # not even the table
    wh.write(T, days(D1, 3), day_scope(D1, 3))
    with pytest.raises(RowsOutsideScopeError, match="2024-01-02"):
        wh.write(T, bad, day_scope(D1))
    assert rows_of(wh, T, "date", "count") == [(D1, 1), (D2, 1), (D3, 1)]
    with pytest.raises(RowsOutsideScopeError, match="1 of 2"):
        wh.merge(
            LICENSES,
            make_rows(shape, versions(("A", D1, "x"), ("B", D2, "y"))),
            KEYS,
            PartitionScope.time_window("last_updated", D1, D2),
        )
    assert wh.table_columns(LICENSES) == {}


def test_empty_writes(backend: Backend, make_rows: Callable[..., Rows]) -> None:
    wh = backend.open()
    skipped = wh.write(T, pl.DataFrame(), day_scope(D1))
    assert skipped.skipped_reason and "no columns" in skipped.skipped_reason
    assert wh.table_columns(T) == {}
    wh.write(T, days(D1, 2), day_scope(D1, 2))
    result = wh.write(T, make_rows("batches", days(D1, 0)), day_scope(D1))  # the partition has no data now
    assert (result.rows_deleted, result.rows_written) == (1, 0)
    assert rows_of(wh, T, "date") == [(D2,)]


# -- merging --------------------------------------------------------------------------------------------
def test_merge_keeps_history_and_the_last_row_wins(
    backend: Backend, shape: str, make_rows: Callable[..., Rows]
) -> None:
    wh = backend.open()
    first = wh.merge(LICENSES, versions(("L", D1, "Standard"), ("M", D1, "Standard")), KEYS)
    assert (first.created_table, first.rows_inserted, first.rows_updated) == (True, 2, 0)
    # L's version 1 comes twice, in two batches (or twice in the frame): the later row wins.
    later = make_rows(
        shape, versions(("L", D1, "Premium"), ("N", D2, "x")), versions(("L", D1, "Academic"), ("L", D2, "y"))
    )
    result = wh.merge(LICENSES, later, KEYS)
    assert (result.rows_written, result.rows_updated, result.rows_inserted) == (3, 1, 2)
    assert (result.duplicates_dropped, result.rows_deleted) == (1, 1)
    assert rows_of(wh, LICENSES, *KEYS, "edition") == [
        ("L", D1, "Academic"),
        ("L", D2, "y"),
        ("M", D1, "Standard"),  # not in the input any more: kept
        ("N", D2, "x"),
    ]
    # Merged again, unchanged: every key is an update, nothing is inserted, nothing duplicated.
    again = wh.merge(LICENSES, make_rows(shape, versions(("L", D2, "y")), versions(("N", D2, "x"))), KEYS)
    assert (again.rows_updated, again.rows_inserted) == (2, 0)
    assert wh.read(LICENSES).height == 4


def test_merge_replaces_the_whole_row_and_adds_columns(
    backend: Backend, make_rows: Callable[..., Rows]
) -> None:
    wh = backend.open()
    wh.merge(LICENSES, versions(("A", D1, "Standard")).with_columns(seats=pl.lit(10)), KEYS)
    later = pl.DataFrame({"tier": ["T1"], "last_updated": [D1], "license_id": ["A"]})  # no edition, no seats
    result = wh.merge(LICENSES, make_rows("batches", later), KEYS)
    assert result.added_columns == ["tier"]
    assert wh.read(LICENSES).to_dicts() == [
        {"license_id": "A", "last_updated": D1, "edition": None, "seats": None, "tier": "T1"}
    ]


def test_merge_refuses_keys_that_collide_as_stored(backend: Backend) -> None:
    wh = backend.open()
    wh.merge(LICENSES, versions(("A", D1, "Standard")), KEYS)
    same_day = pl.DataFrame(
        {
            "license_id": ["A", "A"],
            "last_updated": [dt.datetime(2024, 1, 1, 8), dt.datetime(2024, 1, 1, 9)],
            "edition": ["x", "y"],
        }
    )
    with pytest.raises(MergeKeyError, match=r"licensing\.licenses.*last_updated.*1 of 2"):
        wh.merge(LICENSES, same_day, KEYS)
    assert rows_of(wh, LICENSES, *KEYS, "edition") == [("A", D1, "Standard")]


# -- schema evolution -----------------------------------------------------------------------------------
def test_evolution_batch_by_batch(backend: Backend, make_rows: Callable[..., Rows]) -> None:
    wh = backend.open()
    # A new table: a fraction in the second batch, a column first seen in the last one.
    staged = make_rows(
        "batches",
        pl.DataFrame({"date": [D1], "count": [1]}),
        pl.DataFrame({"date": [D1], "count": [2.5]}),
        pl.DataFrame({"date": [D1], "count": [3], "late": ["x"]}),
    )
    wh.write(T, staged, day_scope(D1))
    assert rows_of(wh, T, "count", "late") == [(1.0, None), (2.5, None), (3.0, "x")]
    assert wh.table_columns(T)["count"] == backend.types["fraction"]
    # An existing table with an integer column: widened by a late batch, a column added by another.
    other = TableRef("evaluations", "by_region")
    wh.write(other, pl.DataFrame({"date": [D1], "count": [1]}), day_scope(D1))
    later = make_rows(
        "batches",
        pl.DataFrame({"date": [D2], "count": [2]}),
        pl.DataFrame({"date": [D2], "count": [12.5], "region": ["EMEA"]}),
    )
    result = wh.write(other, later, day_scope(D2))
    assert (result.added_columns, result.widened_columns) == (["region"], ["count"])
    assert wh.table_columns(other) == {
        "date": backend.types["date"],
        "count": backend.types["fraction"],
        "region": backend.types["text"],
    }
    assert rows_of(wh, other) == [(D1, 1.0, None), (D2, 2.0, None), (D2, 12.5, "EMEA")]


def test_nested_columns_are_queryable(backend: Backend) -> None:
    wh = backend.open()
    sales = TableRef("sales", "transactions")
    discounts = [[{"type": "LOYALTY", "amount": 1.5}, {"type": "PARTNER", "amount": 2.0}], [], None]
    frame = pl.DataFrame(
        {
            "date": [D1] * 3,
            "line": [1, 2, 3],
            "purchase_details_discounts": discounts,
            "revenue": [0.1, 0.1, 0.1],
        }
    )
    wh.write(sales, frame, day_scope(D1))
    stored = wh.read(sales).sort("line")
    assert stored["purchase_details_discounts"].to_list() == discounts
    table = f"{sales.schema}.{sales.name}"
    if backend.name == "postgres":
        assert wh.table_columns(sales)["purchase_details_discounts"] == "jsonb"
        counted = backend.query(f"SELECT sum(jsonb_array_length(purchase_details_discounts)) FROM {table}")
        # Money is exact numeric: three times 0.1 is 0.3, to the cent and beyond.
        assert backend.query(f"SELECT sum(revenue) FROM {table}") == [(decimal.Decimal("0.3"),)]
        elements = f"{table}, jsonb_array_elements(purchase_details_discounts) AS d"
        names = backend.query(f"SELECT d->>'type' FROM {elements} ORDER BY 1")
        assert names == [("LOYALTY",), ("PARTNER",)]
    else:
        counted = backend.query(f"SELECT sum(len(purchase_details_discounts)) FROM {table}")
    assert counted[0][0] == 2
