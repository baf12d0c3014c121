"""The DuckDB warehouse: one file, one table per asset, one transaction per write.

Replace writes and reads live here, merge writes in ``duckdb_merge.py``, and what both share (the
file lock, the transaction, additive schema evolution) in ``_duckdb_core.py``.

What it guarantees: a write (a frame or `Batches`, however many batches) is one transaction; a failure
or a killed process leaves the table exactly as it was (DuckDB replays only committed transactions
from its write-ahead log). Each batch is registered and inserted BY NAME on its own, so memory is
bounded by a batch; the table evolves batch by batch (new columns added, integer columns widened to
DOUBLE when a batch brings fractions). A replace write deletes the scope's rows once, before the first
batch is inserted.

What blocks what: DuckDB lets one process at a time open the file for writing, and a process that has
it open for writing also keeps every other process from reading it. Writes therefore run one after the
other (two runs of different partitions both succeed, the second after the first has committed), and
a reader in another process waits for a write to finish, as a writer waits for a reader; each waits up
to ``lock_timeout`` and then raises `WarehouseBusyError`. Nothing is ever half visible: there is no
moment at which another process could read a partly written table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb
import polars as pl

from marketplace_assets.metrics.sql import bound_statement
from marketplace_assets.warehouse._duckdb_core import SchemaChanges, q, qt
from marketplace_assets.warehouse.base import (
    ColumnNotFoundError,
    TableNotFoundError,
    TableRef,
    WriteResult,
    check_rows_in_scope,
    logger,
)
from marketplace_assets.warehouse.batches import Batches, Rows, iter_batches
from marketplace_assets.warehouse.duckdb_merge import DuckDBMerge
from marketplace_assets.warehouse.scope import END_SUFFIX, START_SUFFIX, PartitionScope

# Name of the view of a scope's cells registered on a connection; connections are never shared.
_CELLS_VIEW = "__wh_scope_cells"


class DuckDBWarehouse(DuckDBMerge):
    """`Warehouse` on a DuckDB file. ``lock_timeout`` bounds the wait for another process's lock."""

    # -- public interface ---------------------------------------------------------------------------
    def write(self, table: TableRef, rows: Rows, scope: PartitionScope | None) -> WriteResult:
        # Validate a frame before opening the file: a bad frame must not even take the write lock.
        # Staged batches are checked one by one inside the transaction (a bad one rolls it all back).
        if isinstance(rows, pl.DataFrame):
            check_rows_in_scope(table, rows, scope)
        result = self._write_transaction(
            table, lambda con: self._write_in_transaction(con, table, rows, scope)
        )
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
                return con.sql(f"SELECT * FROM {qt(table)}").pl()
            predicate = self._scope_predicate(con, scope, columns)
            return con.sql(f"SELECT * FROM {qt(table)} AS t WHERE {predicate}").pl()

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> pl.DataFrame:
        statement, values = bound_statement(sql, "duckdb", parameters or {})
        if not self.path.exists():
            raise TableNotFoundError(
                f"No warehouse file at {self.path} yet: materialize the tables the query reads"
            )
        # Read-only: DuckDB refuses any write on the connection, and other processes may read meanwhile.
        with self._connection(read_only=True) as con:
            try:
                relation = con.sql(statement, params=values)
            except duckdb.CatalogException as exc:
                raise TableNotFoundError(f"{exc} (in {self.path})") from exc
            except duckdb.BinderException as exc:
                # DuckDB's binder reports a missing column so; its other errors are the SQL's own.
                if "Referenced column" not in str(exc):
                    raise
                raise ColumnNotFoundError(f"{exc} (in {self.path})") from exc
            if relation is None:
                raise ValueError(
                    f"the statement returned no rows to read; query() runs a SELECT: {sql.strip()[:80]}"
                )
            return relation.pl()

    # -- the write, step by step (separate methods so tests can break any one of them) --------------
    def _write_in_transaction(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableRef,
        rows: Rows,
        scope: PartitionScope | None,
    ) -> WriteResult:
        deleted: int | None = None  # the scope's rows are deleted once, before the first insert
        written = 0
        evolution = SchemaChanges()
        for batch in iter_batches(rows):
            if isinstance(rows, Batches):
                check_rows_in_scope(table, batch, scope)
            prepared = self._prepare_table(con, table, batch)
            if prepared is None:
                continue  # no table yet and a batch without columns: nothing to create
            evolution.add(prepared)
            if deleted is None:
                deleted = self._delete_rows(con, table, scope, prepared.columns)
            if batch.height:
                written += self._insert_rows(con, table)
        if deleted is None:
            # No batch had columns: the scope's rows still go (the partition has no data now).
            columns = self._columns(con, table)
            if not columns:
                return WriteResult.nothing_to_store(table)
            deleted = self._delete_rows(con, table, scope, columns)
            evolution.columns = columns
        return WriteResult.replaced(table, evolution, written, deleted)

    def _delete_rows(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableRef,
        scope: PartitionScope | None,
        columns: dict[str, str],
    ) -> int:
        if scope is None:
            # Unpartitioned: replace every row but keep the table, so no column is ever dropped.
            return self._count(con.execute(f"DELETE FROM {qt(table)}"))
        predicate = self._scope_predicate(con, scope, columns)
        return self._count(con.execute(f"DELETE FROM {qt(table)} AS t WHERE {predicate}"))

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
            col = f"t.{q(column)}"
            if column in scope.time_columns:
                if types[column.lower()].upper().startswith("TIMESTAMP WITH TIME ZONE"):
                    # Scope datetimes are naive UTC; compare the instant in UTC, not local time.
                    col = f"timezone('UTC', {col})"
                start, end = q(column + START_SUFFIX), q(column + END_SUFFIX)
                conditions.append(f"{col} >= s.{start} AND {col} < s.{end}")
            else:
                # Partition keys are text; casting the column keeps DuckDB and the polars check alike.
                conditions.append(f"CAST({col} AS VARCHAR) = s.{q(column)}")
        return f"EXISTS (SELECT 1 FROM {_CELLS_VIEW} AS s WHERE {' AND '.join(conditions)})"
