"""One contract for every warehouse backend: DuckDB and PostgreSQL, fed a frame or staged `Batches`.

Each test runs against both backends (the PostgreSQL server comes from ``postgres_server.py``, a fresh
database per test) and, where the input shape matters, against a plain frame and `Batches`:
replacing exactly a scope's partitions in one transaction, merges that keep history with the last
row winning, additive evolution batch by batch, refusals that write nothing, a writer killed with
SIGKILL mid-write, concurrent writers in separate processes, and what a reader sees during a write.

Where the backends differ by design the test asserts each one's behaviour: DuckDB lets one process
open the file for writing and keeps readers of other processes out meanwhile, so writes run one after
the other and a reader waits (or gives up with `WarehouseBusyError`); PostgreSQL runs writes of
different partitions at the same time and readers see the last committed rows.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import psycopg
import pytest
from psycopg import sql

from marketplace_assets.warehouse import (
    Batches,
    BatchWriter,
    DuckDBWarehouse,
    MergeKeyError,
    PartitionScope,
    PostgresWarehouse,
    Rows,
    RowsOutsideScopeError,
    TableRef,
    TimeRange,
    Warehouse,
    WarehouseBusyError,
    WarehouseError,
    _duckdb_core,
    open_warehouse,
    postgres_locks,
)
from marketplace_assets.warehouse.postgres_connection import PASSWORD_ENV, display_url, redact
from marketplace_assets.warehouse.postgres_locks import partition_locks
from marketplace_assets_tests.postgres_server import PostgresServer

T = TableRef("evaluations", "by_hosting")
LICENSES = TableRef("licensing", "licenses")
KEYS = ["license_id", "last_updated"]
D = dt.date
D1, D2, D3 = D(2024, 1, 1), D(2024, 1, 2), D(2024, 1, 3)
BATCH = 300  # rows per staged batch in the process tests
REPO = Path(__file__).resolve().parent.parent
# The SQL type names each backend reports for the same polars columns.
TYPES = {
    "duckdb": {"int": "BIGINT", "fraction": "DOUBLE", "text": "VARCHAR", "date": "DATE"},
    "postgres": {"int": "bigint", "fraction": "numeric", "text": "text", "date": "date"},
}


@dataclass
class Backend:
    name: str
    location: str
    env: dict[str, str] = field(default_factory=dict)
    server: PostgresServer | None = None
    database: str | None = None

    def open(self, **kwargs: Any) -> Warehouse:
        return open_warehouse(self.location, **kwargs)

    @property
    def types(self) -> dict[str, str]:
        return TYPES[self.name]

    def query(self, statement: str) -> list[tuple]:
        """A query run directly against the store, outside the warehouse code."""
        if self.name == "duckdb":
            with duckdb.connect(self.location, read_only=True) as con:
                return con.sql(statement).fetchall()
        assert self.server is not None
        with psycopg.connect(
            host=self.server.host,
            port=self.server.port,
            dbname=self.database,
            user=self.server.role,
            password=self.server.password,
        ) as con:
            return con.execute(statement).fetchall()  # type: ignore[arg-type]


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "duckdb":
        return Backend("duckdb", str(tmp_path / "wh.duckdb"))
    return postgres_backend(request.getfixturevalue("postgres_server"), monkeypatch)


@pytest.fixture
def postgres(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Backend:
    return postgres_backend(postgres_server, monkeypatch)


def postgres_backend(server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """A fresh database on the test server, for the tests' role (not a superuser)."""
    database = f"contract_{uuid.uuid4().hex[:12]}"
    with server.admin_connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        admin.execute(
            sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(server.role)
            )
        )
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    url = f"postgresql://{server.role}@{server.host}:{server.port}/{database}"
    return Backend("postgres", url, {PASSWORD_ENV: server.password}, server, database)


@pytest.fixture(params=["frame", "batches"])
def shape(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_rows() -> Iterator[Callable[..., Rows]]:
    """``make_rows(shape, *frames)``: the frames concatenated, or staged as one batch each."""
    staged: list[Batches] = []

    def make(kind: str, *frames: pl.DataFrame) -> Rows:
        if kind == "frame":
            return pl.concat(frames, how="diagonal_relaxed")
        writer = BatchWriter()
        for frame in frames:
            writer.add(frame)
        staged.append(writer.finish())
        return staged[-1]

    yield make
    for batches in staged:
        batches.cleanup()


def day_scope(first: dt.date, days: int = 1) -> PartitionScope:
    return PartitionScope.time_window("date", first, first + dt.timedelta(days=days))


def days(first: dt.date, n: int, value: int = 1, hosting: str = "cloud") -> pl.DataFrame:
    dates = [first + dt.timedelta(days=i) for i in range(n)]
    return pl.DataFrame({"date": dates, "count": [value] * n, "hosting": [hosting] * n})


def rows_of(wh: Warehouse, table: TableRef, *columns: str, scope: PartitionScope | None = None) -> list:
    frame = wh.read(table, scope)
    return sorted(
        frame.select(columns or frame.columns).rows(), key=lambda row: [(v is None, v) for v in row]
    )


def versions(*rows: tuple[str, dt.date, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "license_id": [r[0] for r in rows],
            "last_updated": [r[1] for r in rows],
            "edition": [r[2] for r in rows],
        },
        schema={"license_id": pl.String, "last_updated": pl.Date, "edition": pl.String},
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


# -- processes: a killed writer, concurrent writers, readers during a write --------------------------------
CHILD = r"""
import datetime as dt, sys, time
import polars as pl
from marketplace_assets.warehouse import Batches, BatchWriter, PartitionScope, TableRef, open_warehouse

location, day = sys.argv[1], dt.date.fromisoformat(sys.argv[2])
value, n_batches, hold_at, rows = map(int, sys.argv[3:7])


class Held(Batches):
    # Stops before batch `hold_at` (the earlier ones are written) until the parent says go.
    def __iter__(self):
        for i, frame in enumerate(super().__iter__()):
            if i == hold_at:
                print("holding", flush=True)
                sys.stdin.readline()
            yield frame


writer = BatchWriter()
for b in range(n_batches):
    columns = {"date": [day] * rows, "batch": [b] * rows, "row": list(range(rows)), "value": [value] * rows}
    writer.add(pl.DataFrame(columns))
staged = writer.finish()
wh = open_warehouse(location, lock_timeout=60)
print("started", time.time(), flush=True)
result = wh.write(TableRef("evaluations", "by_hosting"), Held(staged.directory, staged.files, staged.height),
                  PartitionScope.time_window("date", day, day + dt.timedelta(days=1)))
print("done", time.time(), result.rows_written, flush=True)
staged.cleanup()
"""


class Child:
    """A writer process: writes ``n_batches`` x `BATCH` rows of one day, holding before ``hold_at``."""

    def __init__(
        self, backend: Backend, day: dt.date, value: int, n_batches: int = 6, hold_at: int = -1
    ) -> None:
        args = [str(a) for a in (backend.location, day.isoformat(), value, n_batches, hold_at, BATCH)]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, **backend.env},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def expect(self, word: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the writer process did not say {word!r} within {timeout}s") from None
            if line is None:
                self.proc.wait()
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(
                    f"the writer process ended (exit {self.proc.returncode}) before {word!r}:\n{stderr}"
                )
            if line.startswith(word):
                return line

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> float:
        """Wait for a successful end; the time its write returned."""
        done = self.expect("done", timeout=60)
        assert self.proc.wait(timeout=30) == 0
        return float(done.split()[1])

    def running(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:  # only the processes this test started, by pid
        if child.running():
            child.proc.kill()
        child.proc.wait(timeout=30)


def partition(wh: Warehouse, day: dt.date) -> list[tuple]:
    return sorted(wh.read(T, day_scope(day)).select("batch", "row", "value").rows())


def expected(value: int, n_batches: int) -> list[tuple]:
    return sorted((b, r, value) for b in range(n_batches) for r in range(BATCH))


def test_a_killed_writer_leaves_the_old_rows(
    backend: Backend, children: list[Child], make_rows: Callable[..., Rows]
) -> None:
    wh = backend.open(lock_timeout=20)
    old = [
        pl.DataFrame(
            {"date": [D1] * BATCH, "batch": [b] * BATCH, "row": list(range(BATCH)), "value": [0] * BATCH}
        )
        for b in range(4)
    ]
    wh.write(T, make_rows("batches", *old), day_scope(D1))
    assert partition(wh, D1) == expected(0, 4)
    child = Child(backend, D1, value=1, n_batches=8, hold_at=3)
    children.append(child)
    child.expect("holding")  # three batches of new rows written, the old ones deleted, nothing committed
    os.kill(child.proc.pid, signal.SIGKILL)
    assert child.proc.wait(timeout=30) == -signal.SIGKILL
    assert partition(wh, D1) == expected(0, 4)  # exactly the old rows, never a mix
    # A write that completes gives exactly the new rows (and is not blocked by the dead writer).
    done = Child(backend, D1, value=2, n_batches=5)
    children.append(done)
    done.finish()
    assert partition(wh, D1) == expected(2, 5)


def test_writers_of_different_partitions_both_succeed(backend: Backend, children: list[Child]) -> None:
    wh = backend.open()
    wh.write(T, pl.DataFrame({"date": [D3], "batch": [0], "row": [0], "value": [0]}), day_scope(D3))
    first = Child(backend, D1, value=1, hold_at=2)
    children.append(first)
    first.expect("holding")  # mid-write on Jan 1
    second = Child(backend, D2, value=2)
    children.append(second)
    if backend.name == "postgres":
        # Different partitions: the second write commits while the first is still open.
        second_done = second.finish()
        assert first.running()
        first.release()
        assert first.finish() > second_done
    else:
        # DuckDB: one writing process per file; the second waits for the first to close it.
        second.expect("started")
        time.sleep(1.0)
        assert second.running() and first.running()
        first.release()
        first_done = first.finish()
        assert second.finish() > first_done
    assert partition(wh, D1) == expected(1, 6)
    assert partition(wh, D2) == expected(2, 6)
    assert partition(wh, D3) == [(0, 0, 0)]


def test_a_writer_of_the_same_partitions_waits_or_gives_up(
    backend: Backend, children: list[Child], make_rows: Callable[..., Rows], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_locks, "LOCK_WAIT_REPORT_SECONDS", 0.2)
    monkeypatch.setattr(_duckdb_core, "LOCK_WAIT_REPORT_SECONDS", 0.2)
    holder = Child(backend, D1, value=1, hold_at=2)
    children.append(holder)
    holder.expect("holding")
    mine = [
        pl.DataFrame(
            {"date": [D1] * BATCH, "batch": [b] * BATCH, "row": list(range(BATCH)), "value": [3] * BATCH}
        )
        for b in range(2)
    ]
    # A short lock timeout: a clear failure, nothing written.
    with pytest.raises(WarehouseBusyError) as busy:
        backend.open(lock_timeout=0.5).write(T, make_rows("batches", *mine), day_scope(D1))
    if backend.name == "postgres":
        message = str(busy.value)
        assert "evaluations.by_hosting" in message and "2024-01-01" in message
        assert f"pid {holder.proc.pid}" in message  # who holds the partition
    else:
        assert "lock" in str(busy.value)
    # A long one: it waits, says so through on_wait, and writes once the holder has committed.
    waits: list[float] = []
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            outcome["result"] = backend.open(lock_timeout=30, on_wait=waits.append).write(
                T, make_rows("batches", *mine), day_scope(D1)
            )
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    waiter = threading.Thread(target=write)
    waiter.start()
    deadline = time.monotonic() + 20
    while not waits and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waits, "the second writer neither waited nor said so"
    assert "result" not in outcome  # still waiting: it did not write beside the holder
    holder.release()
    holder.finish()
    waiter.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].rows_deleted == 6 * BATCH  # it replaced the holder's rows: no duplicates
    assert partition(backend.open(), D1) == expected(3, 2)


def test_a_reader_during_a_write(backend: Backend, children: list[Child]) -> None:
    wh = backend.open()
    old = pl.DataFrame({"date": [D1] * 5, "batch": [9] * 5, "row": list(range(5)), "value": [0] * 5})
    wh.write(T, old, day_scope(D1))
    writer = Child(backend, D1, value=1, hold_at=3)
    children.append(writer)
    writer.expect("holding")  # the old rows deleted and three batches copied, not committed
    if backend.name == "postgres":
        # MVCC: readers see the last committed rows, without waiting.
        started = time.monotonic()
        assert partition(backend.open(lock_timeout=2), D1) == sorted((9, r, 0) for r in range(5))
        assert backend.open().read(T).height == 5
        assert time.monotonic() - started < 2
    else:
        # DuckDB: the writer holds the file; a reader in another process waits, then gives up.
        with pytest.raises(WarehouseBusyError, match="lock"):
            backend.open(lock_timeout=0.5).read(T)
    writer.release()
    writer.finish()
    assert partition(wh, D1) == expected(1, 6)


# -- PostgreSQL specifics: schema changes beside writes, the password, the locks ----------------------------
def test_a_schema_change_waits_for_writers_without_holding_readers_back(
    postgres: Backend, children: list[Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_locks, "LOCK_WAIT_REPORT_SECONDS", 0.2)
    wh = postgres.open()
    wh.write(T, pl.DataFrame({"date": [D3], "batch": [0], "row": [0], "value": [0]}), day_scope(D3))
    writer = Child(postgres, D1, value=1, hold_at=2)
    children.append(writer)
    writer.expect("holding")  # a write of Jan 1 in progress: the table is in use
    waits: list[float] = []
    outcome: dict[str, Any] = {}
    with_new_column = pl.DataFrame({"date": [D2], "batch": [0], "row": [0], "value": [2], "extra": ["x"]})

    def write() -> None:
        try:
            outcome["result"] = postgres.open(lock_timeout=30, on_wait=waits.append).write(
                T, with_new_column, day_scope(D2)
            )
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    changer = threading.Thread(target=write)
    changer.start()
    deadline = time.monotonic() + 20
    while not waits and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waits, "the write adding a column neither waited for the other write nor said so"
    # Meanwhile readers are served at once, with the committed rows and no new column yet.
    for _ in range(5):
        started = time.monotonic()
        stored = postgres.open(lock_timeout=5).read(T)
        assert time.monotonic() - started < 1.0
        assert stored.columns == ["date", "batch", "row", "value"] and stored.height == 1
        time.sleep(0.1)
    writer.release()
    writer.finish()
    changer.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].added_columns == ["extra"]
    assert partition(wh, D1) == expected(1, 6)
    assert wh.read(T, day_scope(D2)).select("value", "extra").rows() == [(2, "x")]


@pytest.mark.postgres
def test_password_sources_and_redaction(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = postgres_server
    url = server.url
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    # No password anywhere: a clear error that names where to put one.
    with pytest.raises(WarehouseError, match=PASSWORD_ENV) as missing:
        open_warehouse(url).table_columns(T)
    assert url in str(missing.value)
    # The password the resource passes (bound to MARKETPLACE_WAREHOUSE_PASSWORD through dg.EnvVar) ...
    assert open_warehouse(url, password=server.password).table_columns(T) == {}
    assert server.password not in repr(open_warehouse(url, password=server.password))
    # ... else MARKETPLACE_WAREHOUSE_PASSWORD, then libpq's PGPASSWORD and password file.
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    assert open_warehouse(url).table_columns(T) == {}
    monkeypatch.delenv(PASSWORD_ENV)
    monkeypatch.setenv("PGPASSWORD", server.password)
    assert open_warehouse(url).table_columns(T) == {}
    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    escaped = server.password.replace("\\", "\\\\").replace(":", "\\:")
    pgpass.write_text(f"{server.host}:{server.port}:{server.database}:{server.role}:{escaped}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    assert open_warehouse(url).table_columns(T) == {}
    # A password in the URL works, and is shown nowhere.
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    secret = "hunter2-not-shown"
    with_password = f"postgresql://{server.role}:{secret}@{server.host}:{server.port}/{server.database}"
    wh = open_warehouse(with_password)
    assert isinstance(wh, PostgresWarehouse)
    assert secret not in repr(wh) and repr(wh) == f"PostgresWarehouse({url!r})"
    with pytest.raises(WarehouseError) as wrong:
        wh.table_columns(T)
    assert secret not in str(wrong.value) and url in str(wrong.value)
    assert "password authentication failed" in str(wrong.value)
    assert display_url(f"{with_password}?sslmode=disable&password={secret}") == f"{url}?sslmode=disable"
    assert secret not in redact(f"failed: {with_password} password={secret}", None)
    # libpq quotes what it cannot parse: a malformed password never reaches it.
    for malformed in (f"postgresql://me:{secret} x@h/db?bogus=1", f"postgresql://me:{secret}%zz@h:port/db"):
        with pytest.raises((ValueError, WarehouseError)) as bad:
            open_warehouse(malformed).table_columns(T)
        assert secret not in str(bad.value) and "me@h" in str(bad.value)
    unescaped = f"postgresql://{server.role}:{server.password}@{server.host}:{server.port}/{server.database}"
    assert open_warehouse(unescaped).table_columns(T) == {}  # "@", "/", "%" and " " in it, unescaped


def test_partition_locks_make_overlapping_scopes_meet() -> None:
    def units(scope: PartitionScope | None) -> dict[tuple[int, int], bool]:
        return {(lock.space, lock.unit): lock.exclusive for lock in partition_locks(T, scope)}

    def conflict(a: PartitionScope | None, b: PartitionScope | None) -> bool:
        ua, ub = units(a), units(b)
        return any(ua[k] or ub[k] for k in ua.keys() & ub.keys())

    march = PartitionScope.time_window("date", D(2024, 3, 1), D(2024, 4, 1))
    march_5, march_6 = day_scope(D(2024, 3, 5)), day_scope(D(2024, 3, 6))
    backfill = PartitionScope.time_window("date", D(2024, 1, 15), D(2024, 3, 6))  # ends with Mar 5
    assert conflict(march, march_5) and conflict(backfill, march_5) and conflict(march, backfill)
    assert not conflict(march_5, march_6) and not conflict(backfill, march_6)
    assert conflict(None, march_5)  # a whole-table write excludes every partition write
    assert len(partition_locks(T, backfill)) < 40  # whole months are one lock each
    jan = TimeRange(D(2024, 1, 1), D(2024, 2, 1))
    app1 = PartitionScope.combinations(("date", "product_id"), [(jan, "app1")])
    app2 = PartitionScope.combinations(("date", "product_id"), [(jan, "app2")])
    assert not conflict(app1, app2) and conflict(app1, app1)
    hourly = PartitionScope.time_window("date", dt.datetime(2024, 3, 5, 1), dt.datetime(2024, 3, 5, 2))
    assert conflict(hourly, march_5)
    assert conflict(day_scope(D(2024, 1, 1), 3), day_scope(D(2024, 1, 3)))


def test_open_warehouse_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_warehouse(str(tmp_path / "w.duckdb")), DuckDBWarehouse)
    for url in ("postgresql://u@h/db", "postgres://u@h:5433/db", "postgresql+psycopg://u@h/db"):
        assert isinstance(open_warehouse(url), PostgresWarehouse)
