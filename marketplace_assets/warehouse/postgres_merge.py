"""Merge writes on PostgreSQL: upsert versions on a key, never delete a stored version.

One transaction: create the table or add new columns (the same steps as a replace write) and make
sure a unique index covers the keys; then per batch: COPY it into a temporary staging table shaped
like the table, count the staged keys the table already holds, and ``INSERT ... SELECT ... ON CONFLICT
(keys) DO UPDATE`` every column (a column the batch lacks becomes null, as a replaced row on DuckDB).
Each batch is deduplicated on its own (the last row wins) and batches are applied in order, so the
last row of a key wins across batches too. A stored key whose row this transaction wrote (its
``xmin`` is our transaction id) was written by an earlier batch: a duplicate dropped, not an update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from marketplace_assets.warehouse.base import (
    MergeKeyError,
    TableRef,
    WriteResult,
    logger,
    merge_input,
    prepare_merge_frame,
)
from marketplace_assets.warehouse.batches import Batches, Rows, iter_batches
from marketplace_assets.warehouse.postgres_core import PostgresCore, Prepared, schemas_of
from marketplace_assets.warehouse.postgres_rows import copy_batch
from marketplace_assets.warehouse.postgres_schema import pg_type, qt
from marketplace_assets.warehouse.scope import PartitionScope

_STAGE = sql.SQL("pg_temp.__wh_merge_stage")


@dataclass
class _Counts:
    written: int = 0
    updated: int = 0
    duplicates: int = 0


class PostgresMerge(PostgresCore):
    """The merge write of `PostgresWarehouse`."""

    def merge(
        self, table: TableRef, rows: Rows, keys: Sequence[str], scope: PartitionScope | None = None
    ) -> WriteResult:
        keys, source, dropped = merge_input(table, rows, keys, scope)
        purpose = f"merging into {table} on {', '.join(keys)}"
        result = self._write(
            table,
            scope,
            purpose,
            lambda con, started: self._upsert(con, table, source, keys, scope, dropped, started),
        )
        if result.duplicates_dropped:
            logger.warning(
                "Dropped %d row(s) for %s that repeat a key (%s); kept the last of each",
                result.duplicates_dropped,
                table,
                ", ".join(keys),
            )
        return result

    # -- the merge, batch by batch -----------------------------------------------------------------

    def _upsert(
        self,
        con: psycopg.Connection[Any],
        table: TableRef,
        rows: Rows,
        keys: list[str],
        scope: PartitionScope | None,
        dropped: int,
        started: float,
    ) -> WriteResult:
        staged = isinstance(rows, Batches)
        prepared = self._prepare(con, table, schemas_of(rows), keys, started)
        if prepared is None:
            return WriteResult.nothing_to_merge(table)
        con.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(_STAGE, qt(table)))
        counts = _Counts(duplicates=dropped)
        for batch in iter_batches(rows):
            if staged:
                if batch.width == 0 and batch.height == 0:
                    continue  # an empty placeholder batch
                batch, repeats = prepare_merge_frame(table, batch, keys, scope)
                counts.duplicates += repeats
            if batch.height:
                self._upsert_batch(con, table, prepared, batch, keys, staged, counts)
        return WriteResult.merged(
            table, prepared, written=counts.written, updated=counts.updated,
            deleted=counts.updated,  # each update replaced one stored version
            duplicates=counts.duplicates,
        )  # fmt: skip

    def _upsert_batch(
        self,
        con: psycopg.Connection[Any],
        table: TableRef,
        prepared: Prepared,
        batch: pl.DataFrame,
        keys: list[str],
        staged: bool,
        counts: _Counts,
    ) -> None:
        columns = [prepared.name(c) for c in batch.columns]
        key_names = [prepared.name(k) for k in keys]
        con.execute(sql.SQL("TRUNCATE {}").format(_STAGE))
        copy_batch(con, _STAGE, batch, columns)
        self._check_keys_unique_as_stored(con, table, prepared, batch, keys)
        key_list = sql.SQL(", ").join(sql.Identifier(k) for k in key_names)
        match = sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in key_names)
        # Stored keys are updates, unless this transaction wrote them (an earlier batch): duplicates.
        stored, repeated = con.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE t.xmin = pg_current_xact_id()::xid) "
                "FROM {} AS s JOIN {} AS t ON {}"
            ).format(_STAGE, qt(table), match)
        ).fetchone() or (0, 0)
        if repeated and not staged:
            raise _cast_collision(table, keys, repeated)
        others = [c for c in prepared.columns if c not in key_names] or key_names[:1]
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others
        )
        column_list = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        written = con.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) DO UPDATE SET {}").format(
                qt(table), column_list, column_list, _STAGE, key_list, updates
            )
        ).rowcount
        counts.written += written - repeated
        counts.updated += stored - repeated
        counts.duplicates += repeated

    @staticmethod
    def _check_keys_unique_as_stored(
        con: psycopg.Connection[Any],
        table: TableRef,
        prepared: Prepared,
        batch: pl.DataFrame,
        keys: list[str],
    ) -> None:
        """Refuse keys unique in the batch that collide once stored as the table's types (two
        timestamps of one day into a date key): ON CONFLICT could not update one row twice."""
        stored_types = {c.lower(): t.lower() for c, t in prepared.columns.items()}
        changed = [k for k in keys if pg_type(k, batch.schema[k]) != stored_types[k.lower()]]
        if not changed:
            return
        row_key = sql.SQL(", ").join(sql.Identifier(prepared.name(k)) for k in keys)
        row = con.execute(
            sql.SQL("SELECT count(*) - count(DISTINCT ({})) FROM {}").format(row_key, _STAGE)
        ).fetchone()
        repeated = int(row[0]) if row else 0
        if repeated:
            raise _cast_collision(table, keys, repeated, changed, prepared, batch)


def _cast_collision(
    table: TableRef,
    keys: list[str],
    repeated: int,
    changed: list[str] | None = None,
    prepared: Prepared | None = None,
    batch: pl.DataFrame | None = None,
) -> MergeKeyError:
    conversions = ""
    if changed and prepared is not None and batch is not None:
        stored = {c.lower(): t for c, t in prepared.columns.items()}
        conversions = (
            " ("
            + ", ".join(f"{k} {pg_type(k, batch.schema[k])} -> {stored[k.lower()]}" for k in changed)
            + ")"
        )
    total = f" of {batch.height}" if batch is not None else ""
    return MergeKeyError(
        f"Refusing to merge into {table}: stored as the table's key types{conversions}, {repeated}{total} "
        f"row(s) repeat another row's key ({', '.join(keys)}). Convert the key column(s) to the stored "
        "types upstream so duplicates are visible. Nothing was written."
    )
