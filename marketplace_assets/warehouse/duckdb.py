"""The DuckDB warehouse: one file, one table per asset, one transaction per write.

DuckDB lets one process hold a file for writing at a time, and Dagster runs steps in separate
processes, so every operation opens the file, retries while another process holds the lock, does its
work and closes again. Nothing keeps a connection open between operations.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from marketplace_assets.warehouse.base import (
    TableNotFoundError,
    TableRef,
    WarehouseError,
    WriteResult,
    check_rows_in_scope,
    logger,
)
from marketplace_assets.warehouse.scope import END_SUFFIX, START_SUFFIX, PartitionScope

# Names of the views registered on a connection for one statement; connections are never shared.
_FRAME_VIEW = "__wh_frame"
_CELLS_VIEW = "__wh_scope_cells"
# DuckDB types an all-null column "NULL" (also nested, e.g. "NULL"[] or STRUCT(a "NULL")); a table
# column cannot have that type, and text is the type that later values can most likely be cast from.
_NULL_TYPE = re.compile(r'"NULL"(?=$|[\[,)])')
_LOCK_CONFLICT = "Could not set lock on file"


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _qt(table: TableRef) -> str:
    return f"{_q(table.schema)}.{_q(table.name)}"


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and _LOCK_CONFLICT in str(exc)


def _log_lock_wait(state: RetryCallState) -> None:
    logger.info(
        "DuckDB file is locked by another process; retrying (attempt %d, %.1fs so far)",
        state.attempt_number,
        state.seconds_since_start or 0.0,
    )


class DuckDBWarehouse:
    """`Warehouse` on a DuckDB file. ``lock_timeout`` bounds the wait for another process's lock."""

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"DuckDBWarehouse({str(self.path)!r})"

    # -- public interface ---------------------------------------------------------------------------
    def write(self, table: TableRef, df: pl.DataFrame, scope: PartitionScope | None) -> WriteResult:
        # Validate before opening the file: a bad frame must not even take the write lock.
        check_rows_in_scope(table, df, scope)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection(read_only=False) as con:
            con.begin()
            try:
                result = self._write_in_transaction(con, table, df, scope)
                if result.skipped_reason:
                    con.rollback()
                else:
                    con.commit()
            except BaseException:
                # The whole write is one transaction: DDL, delete and insert vanish together.
                with contextlib.suppress(duckdb.Error):
                    con.rollback()
                raise
        if result.added_columns:
            logger.info("Added column(s) %s to %s", ", ".join(result.added_columns), table)
        logger.debug(
            "Wrote %d row(s) to %s, replacing %d (scope: %s)",
            result.rows_written,
            table,
            result.rows_deleted,
            scope if scope is not None else "whole table",
        )
        return result

    def read(self, table: TableRef, scope: PartitionScope | None = None) -> pl.DataFrame:
        if not self.path.exists():
            raise TableNotFoundError(f"Table {table} does not exist: no warehouse file at {self.path} yet")
        with self._connection(read_only=True) as con:
            columns = self._columns(con, table)
            if not columns:
                raise TableNotFoundError(
                    f"Table {table} does not exist in {self.path}; materialize its asset first"
                )
            if scope is None:
                return con.sql(f"SELECT * FROM {_qt(table)}").pl()
            predicate = self._scope_predicate(con, scope, columns)
            return con.sql(f"SELECT * FROM {_qt(table)} AS t WHERE {predicate}").pl()

    def table_columns(self, table: TableRef) -> dict[str, str]:
        if not self.path.exists():
            return {}
        with self._connection(read_only=True) as con:
            return self._columns(con, table)

    # -- the write, step by step (separate methods so tests can break any one of them) --------------
    def _write_in_transaction(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableRef,
        df: pl.DataFrame,
        scope: PartitionScope | None,
    ) -> WriteResult:
        existing = self._columns(con, table)
        if not existing and df.width == 0:
            return WriteResult(
                table=table,
                rows_written=0,
                rows_deleted=0,
                skipped_reason=f"{table} does not exist and the frame has no columns: nothing to store",
            )
        frame_types: dict[str, str] = {}
        if df.width:
            con.register(_FRAME_VIEW, df)
            frame_types = self._frame_types(con)
        created = not existing
        if created:
            self._create_table(con, table, frame_types)
            added: list[str] = []
        else:
            added = self._add_columns(con, table, existing, frame_types)
        columns = self._columns(con, table)
        deleted = self._delete_rows(con, table, scope, columns)
        written = self._insert_rows(con, table) if df.height else 0
        return WriteResult(
            table=table,
            rows_written=written,
            rows_deleted=deleted,
            added_columns=added,
            columns=columns,
            created_table=created,
        )

    def _create_table(
        self, con: duckdb.DuckDBPyConnection, table: TableRef, frame_types: dict[str, str]
    ) -> None:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(table.schema)}")
        definition = ", ".join(f"{_q(name)} {sql_type}" for name, sql_type in frame_types.items())
        con.execute(f"CREATE TABLE {_qt(table)} ({definition})")

    def _add_columns(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableRef,
        existing: dict[str, str],
        frame_types: dict[str, str],
    ) -> list[str]:
        # DuckDB identifiers are case-insensitive, so "Date" in a frame is the table's "date".
        known = {name.lower() for name in existing}
        added = [name for name in frame_types if name.lower() not in known]
        for name in added:
            # Nullable and without default: the rows already stored read as null in the new column.
            con.execute(f"ALTER TABLE {_qt(table)} ADD COLUMN {_q(name)} {frame_types[name]}")
        return added

    def _delete_rows(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableRef,
        scope: PartitionScope | None,
        columns: dict[str, str],
    ) -> int:
        if scope is None:
            # Unpartitioned: replace every row but keep the table, so no column is ever dropped.
            return self._count(con.execute(f"DELETE FROM {_qt(table)}"))
        predicate = self._scope_predicate(con, scope, columns)
        return self._count(con.execute(f"DELETE FROM {_qt(table)} AS t WHERE {predicate}"))

    def _insert_rows(self, con: duckdb.DuckDBPyConnection, table: TableRef) -> int:
        # BY NAME: frame columns land in the table columns of the same name whatever their order;
        # table columns the frame lacks get nulls.
        return self._count(con.execute(f"INSERT INTO {_qt(table)} BY NAME SELECT * FROM {_FRAME_VIEW}"))

    # -- helpers ------------------------------------------------------------------------------------
    def _scope_predicate(
        self, con: duckdb.DuckDBPyConnection, scope: PartitionScope, columns: dict[str, str]
    ) -> str:
        """A WHERE condition on table alias ``t`` selecting the scope's rows.

        The scope's cells go into a registered view and are matched with one EXISTS (a semi join),
        so a run covering hundreds of month x app combinations is still one statement.
        """
        types = {name.lower(): sql_type for name, sql_type in columns.items()}
        if not scope.cells or any(c.lower() not in types for c in scope.columns):
            # A column the table lacks is null on every row, and null is in no partition.
            return "FALSE"
        con.register(_CELLS_VIEW, scope.merged().cells_frame())
        conditions: list[str] = []
        for column in scope.columns:
            col = f"t.{_q(column)}"
            if column in scope.time_columns:
                if types[column.lower()].upper().startswith("TIMESTAMP WITH TIME ZONE"):
                    # Scope datetimes are naive UTC; compare the instant in UTC, not local time.
                    col = f"timezone('UTC', {col})"
                start, end = _q(column + START_SUFFIX), _q(column + END_SUFFIX)
                conditions.append(f"{col} >= s.{start} AND {col} < s.{end}")
            else:
                # Partition keys are text; casting the column keeps DuckDB and the polars check alike.
                conditions.append(f"CAST({col} AS VARCHAR) = s.{_q(column)}")
        return f"EXISTS (SELECT 1 FROM {_CELLS_VIEW} AS s WHERE {' AND '.join(conditions)})"

    @staticmethod
    def _frame_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        described = con.sql(f"DESCRIBE SELECT * FROM {_FRAME_VIEW}").fetchall()
        return {str(row[0]): _NULL_TYPE.sub("VARCHAR", str(row[1])) for row in described}

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection, table: TableRef) -> dict[str, str]:
        rows = con.execute(
            """
            SELECT column_name, data_type FROM information_schema.columns
            WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ?
            ORDER BY ordinal_position
            """,
            [table.schema, table.name],
        ).fetchall()
        return {str(name): str(sql_type) for name, sql_type in rows}

    @staticmethod
    def _count(con: duckdb.DuckDBPyConnection) -> int:
        row = con.fetchone()
        return int(row[0]) if row else 0

    @contextlib.contextmanager
    def _connection(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._connect(read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    def _connect(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        retrying = Retrying(
            retry=retry_if_exception(_is_lock_conflict),
            # Short first waits (steps usually hold the file for well under a second), capped at 2 s.
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.1),
            stop=stop_after_delay(self.lock_timeout),
            before_sleep=_log_lock_wait,
            reraise=True,
        )
        try:
            return retrying(self._open, read_only)
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise
            raise WarehouseError(
                f"Could not open {self.path} within {self.lock_timeout:.0f}s: another process holds "
                f"DuckDB's write lock ({exc}). DuckDB allows one writing process per file; wait for it "
                "to finish or limit concurrent runs."
            ) from exc

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        try:
            # Read-only where possible: several processes may read a file at once.
            return duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.ConnectionException as exc:
            # This process already has the file open read-write (DuckDB refuses a second, different
            # configuration in one process); a read-write connection reads just as well.
            if read_only and "different configuration" in str(exc):
                return duckdb.connect(str(self.path))
            raise
