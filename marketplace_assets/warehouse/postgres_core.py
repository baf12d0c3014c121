"""What every PostgreSQL write shares: the connection, the transaction, the locks, the table's shape.

`PostgresCore` is the base of `PostgresWarehouse` (``postgres.py``: replace writes and reads) by way of
`PostgresMerge` (``postgres_merge.py``: merge writes); use `PostgresWarehouse`, not these bases. Every
operation opens a connection, runs one transaction and closes it: nothing is kept open between
operations (Dagster runs steps in separate processes).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl
import psycopg
from psycopg import errors, sql

from marketplace_assets.warehouse import postgres_locks
from marketplace_assets.warehouse.base import (
    MergeKeyError,
    TableRef,
    WarehouseBusyError,
    WriteResult,
    logger,
)
from marketplace_assets.warehouse.batches import Rows
from marketplace_assets.warehouse.postgres_connection import PostgresTarget
from marketplace_assets.warehouse.postgres_locks import (
    AdvisoryLock,
    acquire,
    create_schema_lock,
    partition_locks,
    schema_change_lock,
)
from marketplace_assets.warehouse.postgres_schema import (
    add_columns,
    create_table,
    create_unique_index,
    has_unique_index,
    plan_columns,
    schema_exists,
    table_columns,
    widen_columns,
)
from marketplace_assets.warehouse.scope import PartitionScope

Schemas = list[dict[str, pl.DataType]]
# One attempt of a schema change at the table lock it needs; retried until the lock timeout.
DDL_ATTEMPT_MS = 200


@dataclass(frozen=True)
class Prepared:
    created: bool
    added: list[str]
    widened: list[str]
    columns: dict[str, str]

    def name(self, column: str) -> str:
        """The table's name for a frame column (names match case-insensitively)."""
        return {c.lower(): c for c in self.columns}.get(column.lower(), column)


class PostgresCore:
    """Connection handling, locking and the schema steps shared by replace and merge writes."""

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = 60.0,
        on_wait: Callable[[float], None] | None = None,
        password: str | None = None,
    ) -> None:
        self._target = PostgresTarget.from_url(url, password)
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait

    @property
    def url(self) -> str:
        """The URL without any password."""
        return self._target.display_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- public interface ---------------------------------------------------------------------------
    def table_columns(self, table: TableRef) -> dict[str, str]:
        with contextlib.closing(self._target.connect()) as con:
            return table_columns(con, table)

    @contextlib.contextmanager
    def _transaction(self, purpose: str) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on a new connection, with UTC, ISO dates and a bounded wait for table locks."""
        with contextlib.closing(self._target.connect()) as con:
            try:
                with con.transaction():
                    con.execute("SET LOCAL TIME ZONE 'UTC'")
                    con.execute("SET LOCAL DateStyle = 'ISO, YMD'")
                    _set_lock_timeout(con, self._timeout_ms())
                    yield con
            except (errors.LockNotAvailable, errors.DeadlockDetected) as exc:
                raise WarehouseBusyError(
                    f"Gave up on {purpose} in {self.url}: {self._target.redact(str(exc).strip())}. Another "
                    "process held a lock on the table (a write changing its columns, or a long query) for "
                    f"longer than the lock timeout ({self.lock_timeout:.0f}s); retry when it has finished."
                ) from exc

    def _write(
        self,
        table: TableRef,
        scope: PartitionScope | None,
        purpose: str,
        work: Callable[[psycopg.Connection[Any], float], WriteResult],
    ) -> WriteResult:
        """Take the partitions' locks, run ``work``; commit unless it skipped or raised."""
        started = time.monotonic()
        with self._transaction(purpose) as con:
            self._acquire(con, partition_locks(table, scope), purpose, started)
            result = work(con, started)
            if result.skipped_reason:
                raise psycopg.Rollback()
        if result.added_columns:
            logger.info("Added column(s) %s to %s", ", ".join(result.added_columns), table)
        return result

    def _acquire(
        self, con: psycopg.Connection[Any], locks: list[AdvisoryLock], purpose: str, started: float
    ) -> None:
        remaining = self.lock_timeout - (time.monotonic() - started)
        acquire(con, locks, timeout=remaining, on_wait=self.on_wait, purpose=f"{purpose} in {self.url}")

    # -- the table's shape --------------------------------------------------------------------------
    def _prepare(
        self,
        con: psycopg.Connection[Any],
        table: TableRef,
        schemas: Schemas,
        keys: list[str] | None,
        started: float,
    ) -> Prepared | None:
        """Create the table or evolve it for every batch, before the first row. None: no table and no
        columns. Changes happen under the table's schema lock, taken only when there is a change."""
        existing = table_columns(con, table)
        plan = plan_columns(existing, schemas)
        if not existing and not plan.new:
            return None
        if plan.needs_ddl or (keys is not None and not has_unique_index(con, table, _names(existing, keys))):
            self._acquire(con, [schema_change_lock(table)], f"changing the columns of {table}", started)
            existing = table_columns(con, table)  # as another write may have changed it meanwhile
            plan = plan_columns(existing, schemas)
            if not existing:
                if not schema_exists(con, table.schema):
                    self._acquire(
                        con, [create_schema_lock(table.schema)], f"creating {table.schema}", started
                    )
                    con.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema))
                    )
                create_table(con, table, plan.new)
            else:
                change = plan

                def alter() -> None:
                    add_columns(con, table, change.new)
                    widen_columns(con, table, change.widen)

                self._in_short_lock_waits(con, alter, f"changing the columns of {table}", started)
            if keys is not None:
                names = _names(table_columns(con, table), keys)
                self._in_short_lock_waits(
                    con,
                    lambda: self._ensure_unique_index(con, table, names),
                    f"indexing the merge keys of {table}",
                    started,
                )
        return Prepared(
            created=not existing,
            added=list(plan.new) if existing else [],
            widened=plan.widen,
            columns=table_columns(con, table),
        )

    def _in_short_lock_waits(
        self, con: psycopg.Connection[Any], change: Callable[[], None], purpose: str, started: float
    ) -> None:
        """Run a schema change of an existing table, asking for its table lock in short attempts.

        ALTER TABLE waits for every open transaction on the table (another run's long write), and while
        it waits PostgreSQL queues every newcomer, readers included, behind it. Short attempts (each
        in a savepoint) keep that queue short; between them the wait is reported like a lock wait.
        """
        reported = 0.0
        pause = 0.05
        while True:
            try:
                with con.transaction():
                    _set_lock_timeout(con, DDL_ATTEMPT_MS)
                    change()
                break
            except errors.LockNotAvailable as exc:
                waited = time.monotonic() - started
                if waited >= self.lock_timeout:
                    raise WarehouseBusyError(
                        f"Gave up on {purpose} in {self.url} after {waited:.0f}s: other transactions kept "
                        "the table in use (a write of other partitions, or a long query). A schema change "
                        "needs a moment without them; retry when they have finished."
                    ) from exc
                if waited - reported >= postgres_locks.LOCK_WAIT_REPORT_SECONDS:
                    reported = waited
                    logger.info("Waiting to %s (%.0fs so far)", purpose, waited)
                    if self.on_wait is not None:
                        self.on_wait(waited)
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
        # Back to the transaction's own bound for the waits that follow.
        _set_lock_timeout(con, self._timeout_ms())

    def _timeout_ms(self) -> int:
        return max(1, round(self.lock_timeout * 1000))

    @staticmethod
    def _ensure_unique_index(con: psycopg.Connection[Any], table: TableRef, keys: list[str]) -> None:
        if has_unique_index(con, table, keys):
            return
        try:
            with con.transaction():  # a savepoint, so the error below is ours to word
                create_unique_index(con, table, keys)
        except errors.UniqueViolation as exc:
            group = ", ".join(f'"{k}"' for k in keys)
            raise MergeKeyError(
                f"Cannot merge into {table}: it already holds rows that repeat a key ({', '.join(keys)}), so "
                "the unique index an upsert needs cannot be created. Find them with SELECT "
                f"{group}, count(*) FROM {table} GROUP BY {group} HAVING count(*) > 1, keep one row of "
                "each and merge again. Nothing was written."
            ) from exc


def _set_lock_timeout(con: psycopg.Connection[Any], milliseconds: int) -> None:
    """How long a statement may wait for a table or row lock, for the rest of the transaction."""
    con.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{milliseconds}ms")))


def _names(columns: Mapping[str, str], keys: list[str]) -> list[str]:
    by_lower = {c.lower(): c for c in columns}
    return [by_lower.get(k.lower(), k) for k in keys]


def schemas_of(rows: Rows) -> Schemas:
    """The schema of every batch, without reading any rows (parquet footers for `Batches`)."""
    if isinstance(rows, pl.DataFrame):
        return [dict(rows.schema)]
    return [dict(pl.read_parquet_schema(file)) for file in rows.files]
