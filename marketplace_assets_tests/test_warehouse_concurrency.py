"""The warehouse contract when processes write and read at once, on DuckDB and PostgreSQL.

Writers run in child processes (`Child`) that stage their rows and can be held mid-write: a writer killed
with SIGKILL mid-write leaves the old rows, writers of different partitions both succeed, a writer of the
same partitions waits or gives up, and a reader during a write sees the last committed rows or waits.
Where the backends differ by design the test asserts each one's behaviour: DuckDB lets one process
open the file for writing and keeps readers of other processes out meanwhile, so writes run one after
the other and a reader waits (or gives up with `WarehouseBusyError`); PostgreSQL runs writes of
different partitions at the same time and readers see the last committed rows. On PostgreSQL alone: a
schema change waits for writers without holding readers back, and the partition locks that make
overlapping writes meet.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from marketplace_assets.warehouse import (
    PartitionScope,
    Rows,
    TimeRange,
    Warehouse,
    WarehouseBusyError,
    _duckdb_core,
    postgres_locks,
)
from marketplace_assets.warehouse.postgres_locks import partition_locks
from marketplace_assets_tests.postgres_server import PostgresServer
from marketplace_assets_tests.warehouse_backends import (  # noqa: F401 (fixtures)
    D1,
    D2,
    D3,
    Backend,
    D,
    T,
    backend_fixture,
    day_scope,
    make_rows_fixture,
    postgres_backend,
)

BATCH = 300  # rows per staged batch in the process tests
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def postgres(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Backend:
    return postgres_backend(postgres_server, monkeypatch)


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


# -- PostgreSQL specifics: schema changes beside writes, the locks ----------------------------------------
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
