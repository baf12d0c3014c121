"""The DuckDB warehouse: one file, one table per asset, one transaction per write.

Replace writes and reads live here, merge writes in ``duckdb_merge.py``, and what both share (the
file lock, the transaction, additive schema evolution) in ``_duckdb_core.py``.
"""

from __future__ import annotations

import duckdb
import polars as pl

from marketplace_assets.warehouse._duckdb_core import q, qt
from marketplace_assets.warehouse.base import (
    TableNotFoundError,
    TableRef,
    WriteResult,
    check_rows_in_scope,
    logger,
)
from marketplace_assets.warehouse.duckdb_merge import DuckDBMerge
from marketplace_assets.warehouse.scope import END_SUFFIX, START_SUFFIX, PartitionScope

# Name of the view of a scope's cells registered on a connection; connections are never shared.
_CELLS_VIEW = "__wh_scope_cells"


class DuckDBWarehouse(DuckDBMerge):
    """`Warehouse` on a DuckDB file. ``lock_timeout`` bounds the wait for another process's lock."""

    # -- public interface ---------------------------------------------------------------------------
    def write(self, table: TableRef, df: pl.DataFrame, scope: PartitionScope | None) -> WriteResult:
        # Validate before opening the file: a bad frame must not even take the write lock.
        check_rows_in_scope(table, df, scope)
        result = self._write_transaction(table, lambda con: self._write_in_transaction(con, table, df, scope))
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

    # -- the write, step by step (separate methods so tests can break any one of them) --------------
    def _write_in_transaction(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableRef,
        df: pl.DataFrame,
        scope: PartitionScope | None,
    ) -> WriteResult:
        prepared = self._prepare_table(con, table, df)
        if prepared is None:
            return WriteResult(
                table=table,
                rows_written=0,
                rows_deleted=0,
                skipped_reason=f"{table} does not exist and the frame has no columns: nothing to store",
            )
        columns = prepared.columns
        deleted = self._delete_rows(con, table, scope, columns)
        written = self._insert_rows(con, table) if df.height else 0
        return WriteResult(
            table=table,
            rows_written=written,
            rows_deleted=deleted,
            added_columns=prepared.added_columns,
            widened_columns=prepared.widened_columns,
            columns=columns,
            created_table=prepared.created,
            rows_inserted=written,
        )

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
