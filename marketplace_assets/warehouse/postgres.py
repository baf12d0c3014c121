"""The PostgreSQL warehouse: a schema per area, a table per report, one transaction per write.

Open it with ``open_warehouse("postgresql://user@host:port/db")``; the password comes from
``MARKETPLACE_WAREHOUSE_PASSWORD``, else from libpq (``PGPASSWORD``, ``~/.pgpass``), and is never shown
(``postgres_connection.py``). The role needs CREATE on the database (it creates a schema per area on
first write), or schemas created beforehand that it owns; plus TEMPORARY (granted to everyone by
default) for the staging table of merges.

What it guarantees, like DuckDB: a write (a frame or `Batches`) is one transaction; a failure, or a
process killed mid-write, leaves the table exactly as it was (the server rolls back the transaction of
a connection that dies). Each batch is streamed with ``COPY ... FROM STDIN`` (``postgres_rows.py``),
so memory is bounded by a batch; columns land by name (matched case-insensitively). ``write`` deletes
the scope's rows (half-open ``[start, end)`` on date/timestamptz columns, text equality on key
columns), then copies the batches in. ``merge`` copies each batch into a temporary staging table and
upserts it with ``INSERT ... ON CONFLICT (keys) DO UPDATE`` (a unique index on the keys is created
with the table, or before the first merge into an older table): a stored version is never deleted;
a row whose key is stored replaces it, columns it lacks included (as on DuckDB); a key repeated in a
later batch wins and counts as a duplicate dropped (rows this transaction already wrote are told
apart by their ``xmin``). Rows outside the scope are refused: a frame before connecting, each batch of
`Batches` before it is copied (the transaction then rolls back).

Types (``postgres_schema.py`` has the full table): integers are bigint; floats and decimals are exact
``numeric``, because amounts arrive as decimal text in the API and must add up to the cent in SQL
(``sum(revenue)`` over a numeric column is exact; over double precision it is not); a float's shortest
decimal text (0.1 as ``0.1``) is what is stored. Dates are ``date``, datetimes ``timestamptz`` (naive
ones are UTC), booleans ``boolean``, all-null columns ``text``. List and struct columns are ``jsonb``:
PostgreSQL arrays cannot hold structs nor ragged nesting, one composite type per column shape would
need DDL for every shape the API sends, and jsonb is queryable as it is (``jsonb_array_length(
purchase_details_discounts)``, ``partners -> 0 ->> 'name'``, ``jsonb_array_elements``). Reads return
numeric columns as Float64, timestamptz as Datetime(us, UTC) and jsonb as decoded lists/structs.
Schema evolution is additive: new columns are added, an integer column that receives fractions is
widened to numeric, nothing is dropped or narrowed.

What blocks what (``postgres_locks.py`` has the details):

- readers never wait for writers nor writers for readers: a reader sees the rows as of the last
  commit (MVCC), the old rows until a write commits, then all the new ones; except that a write that
  changes the table's columns (a new column, a widening, the first merge's index) holds PostgreSQL's
  exclusive table lock from that change to its commit, and readers of that table wait meanwhile;
- writes of different partitions of a table run at the same time; a write of partitions another run
  is writing waits for it (polling an advisory lock, reported to ``on_wait`` about every 10 s) and
  gives up with `WarehouseBusyError` after ``lock_timeout``; never do both write and duplicate rows;
- waits on table or row locks (behind another write's schema change, say) end after ``lock_timeout``
  too, with `WarehouseBusyError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
import psycopg
from psycopg import errors, sql

from marketplace_assets.metrics.sql import bound_statement
from marketplace_assets.warehouse.base import (
    ColumnNotFoundError,
    TableNotFoundError,
    TableRef,
    WriteResult,
    check_rows_in_scope,
    logger,
)
from marketplace_assets.warehouse.batches import Batches, Rows, iter_batches
from marketplace_assets.warehouse.postgres_core import schemas_of
from marketplace_assets.warehouse.postgres_merge import PostgresMerge
from marketplace_assets.warehouse.postgres_query import frame_from_cursor
from marketplace_assets.warehouse.postgres_rows import copy_batch, from_table, read_frame, scope_predicate
from marketplace_assets.warehouse.postgres_schema import qt, table_columns
from marketplace_assets.warehouse.scope import PartitionScope


class PostgresWarehouse(PostgresMerge):
    """`Warehouse` on a PostgreSQL database; ``lock_timeout`` bounds every wait for another write."""

    def read(self, table: TableRef, scope: PartitionScope | None = None) -> pl.DataFrame:
        with self._transaction(f"reading {table}") as con:
            columns = table_columns(con, table)
            if not columns:
                raise TableNotFoundError(
                    f"Table {table} does not exist in {self.url}; materialize its asset first"
                )
            predicate = None if scope is None else scope_predicate(scope, columns)
            return read_frame(con, from_table(table, predicate), columns)

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> pl.DataFrame:
        statement, values = bound_statement(sql, "postgres", parameters or {})
        try:
            with self._transaction("running a query") as con:
                # Before the statement: the transaction refuses any write, whatever the SQL says.
                con.execute("SET TRANSACTION READ ONLY")
                # The metrics' SQL is long and its estimated cost high (generate_series over dates is
                # guessed at 1,000 rows), so PostgreSQL compiles it with JIT, which costs more than
                # it saves: 1.6 s against 0.5 s for the MRR reconciliation (bench/results/metrics.md).
                con.execute("SET LOCAL jit = off")
                with con.cursor() as cursor:
                    cursor.execute(statement, values)  # type: ignore[arg-type]  # bound text, not a literal
                    return frame_from_cursor(cursor)
        except errors.UndefinedTable as exc:
            message = self._target.redact(str(exc).strip())
            raise TableNotFoundError(f"{message} (in {self.url})") from exc
        except errors.UndefinedColumn as exc:
            message = self._target.redact(str(exc).strip())
            raise ColumnNotFoundError(f"{message} (in {self.url})") from exc

    def write(self, table: TableRef, rows: Rows, scope: PartitionScope | None) -> WriteResult:
        # A frame is checked before connecting; staged batches one by one inside the transaction.
        if isinstance(rows, pl.DataFrame):
            check_rows_in_scope(table, rows, scope)
        purpose = f"writing {table} ({scope if scope is not None else 'whole table'})"
        result = self._write(
            table, scope, purpose, lambda con, started: self._replace(con, table, rows, scope, started)
        )
        logger.debug(
            "Wrote %d row(s) to %s, replacing %d (%s)",
            result.rows_written,
            table,
            result.rows_deleted,
            purpose,
        )
        return result

    def _replace(
        self,
        con: psycopg.Connection[Any],
        table: TableRef,
        rows: Rows,
        scope: PartitionScope | None,
        started: float,
    ) -> WriteResult:
        prepared = self._prepare(con, table, schemas_of(rows), None, started)
        if prepared is None:
            return WriteResult.nothing_to_store(table)
        deleted = self._delete_rows(con, table, scope, prepared.columns)
        written = 0
        for batch in iter_batches(rows):
            if isinstance(rows, Batches):
                check_rows_in_scope(table, batch, scope)
            written += copy_batch(con, qt(table), batch, [prepared.name(c) for c in batch.columns])
        return WriteResult.replaced(table, prepared, written, deleted)

    @staticmethod
    def _delete_rows(
        con: psycopg.Connection[Any], table: TableRef, scope: PartitionScope | None, columns: dict[str, str]
    ) -> int:
        predicate = sql.SQL("TRUE") if scope is None else scope_predicate(scope, columns)
        return con.execute(sql.SQL("DELETE FROM {} AS t WHERE {}").format(qt(table), predicate)).rowcount

    # -- merge --------------------------------------------------------------------------------------
