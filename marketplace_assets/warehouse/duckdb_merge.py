"""Merge writes on DuckDB: upsert versions on a key, never delete a row a frame merely lacks.

One transaction: create the table or add new columns (the same steps as a replace write), delete the
stored rows whose key the frame holds (one hash semi join against the registered frame), insert the
frame BY NAME. Tables created earlier have no primary key, so ``INSERT OR REPLACE`` cannot be relied
on; delete + insert works on any table and costs two set operations however large the frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import polars as pl

from marketplace_assets.warehouse._duckdb_core import FRAME_VIEW, DuckDBCore, PreparedTable, q, qt
from marketplace_assets.warehouse.base import (
    MergeKeyError,
    TableRef,
    WriteResult,
    logger,
    prepare_merge_frame,
)
from marketplace_assets.warehouse.scope import PartitionScope


class DuckDBMerge(DuckDBCore):
    """The merge write of `DuckDBWarehouse`."""

    def merge(
        self,
        table: TableRef,
        df: pl.DataFrame,
        keys: Sequence[str],
        scope: PartitionScope | None = None,
    ) -> WriteResult:
        # Validate (keys, nulls, scope) and deduplicate before opening the file: a bad frame must not
        # even take the write lock.
        frame, dropped = prepare_merge_frame(table, df, keys, scope)
        keys = list(keys)
        if dropped:
            logger.warning(
                "Dropped %d row(s) of the frame for %s that repeat a key (%s); kept the last of each",
                dropped,
                table,
                ", ".join(keys),
            )
        result = self._write_transaction(
            table, lambda con: self._merge_in_transaction(con, table, frame, keys, dropped)
        )
        logger.debug(
            "Merged %d row(s) into %s on %s: %d inserted, %d updated",
            result.rows_written,
            table,
            ", ".join(keys),
            result.rows_inserted,
            result.rows_updated,
        )
        return result

    # -- the merge, step by step (separate methods so tests can break any one of them) --------------
    def _merge_in_transaction(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableRef,
        df: pl.DataFrame,
        keys: list[str],
        dropped: int,
    ) -> WriteResult:
        prepared = self._prepare_table(con, table, df)
        # The frame has at least its key columns, so there is always a table to prepare.
        assert prepared is not None
        updated = deleted = written = 0
        if df.height:
            self._check_keys_unique_as_stored(con, table, prepared, keys, df.height)
            match = self._key_match(prepared, keys)
            updated = self._count_stored_keys(con, table, match)
            deleted = self._delete_matching_keys(con, table, match)
            written = self._insert_rows(con, table)
        return WriteResult(
            table=table,
            rows_written=written,
            rows_deleted=deleted,
            added_columns=prepared.added_columns,
            widened_columns=prepared.widened_columns,
            columns=prepared.columns,
            created_table=prepared.created,
            rows_inserted=written - updated,
            rows_updated=updated,
            duplicates_dropped=dropped,
        )

    @staticmethod
    def _key_match(prepared: PreparedTable, keys: list[str]) -> str:
        """The condition pairing a stored row ``t`` with a frame row ``f`` of the same key.

        Frame keys are cast to the stored column types, exactly as INSERT BY NAME will store them, so
        a key matches the row that inserting it would produce (a DATE column compares dates).
        """
        types = {name.lower(): sql_type for name, sql_type in prepared.columns.items()}
        return " AND ".join(f"t.{q(k)} = CAST(f.{q(k)} AS {types[k.lower()]})" for k in keys)

    def _check_keys_unique_as_stored(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableRef,
        prepared: PreparedTable,
        keys: list[str],
        rows: int,
    ) -> None:
        """Refuse keys that are unique in the frame but collide once cast to the stored types (e.g.
        two timestamps of one day into a DATE key): both rows would be stored under one key."""
        types = {name.lower(): sql_type for name, sql_type in prepared.columns.items()}
        changed = [k for k in keys if prepared.frame_types[k].upper() != types[k.lower()].upper()]
        if not changed:
            return  # same types: the frame was deduplicated on exactly these values
        cast = ", ".join(f"CAST({q(k)} AS {types[k.lower()]})" for k in keys)
        distinct = self._count(
            con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {cast} FROM {FRAME_VIEW})")
        )
        if distinct < rows:
            conversions = ", ".join(f"{k} {prepared.frame_types[k]} -> {types[k.lower()]}" for k in changed)
            raise MergeKeyError(
                f"Refusing to merge into {table}: stored as the table's key types ({conversions}), "
                f"{rows - distinct} of {rows} frame row(s) repeat another row's key. Convert the key "
                "column(s) to the stored types upstream so duplicates are visible. Nothing was written."
            )

    def _count_stored_keys(self, con: duckdb.DuckDBPyConnection, table: TableRef, match: str) -> int:
        """Frame rows whose key the table already holds: the updates."""
        return self._count(
            con.execute(
                f"SELECT count(*) FROM {FRAME_VIEW} AS f "
                f"WHERE EXISTS (SELECT 1 FROM {qt(table)} AS t WHERE {match})"
            )
        )

    def _delete_matching_keys(self, con: duckdb.DuckDBPyConnection, table: TableRef, match: str) -> int:
        """Delete the stored rows whose key the frame holds (their new versions follow): a semi join."""
        return self._count(
            con.execute(
                f"DELETE FROM {qt(table)} AS t WHERE EXISTS (SELECT 1 FROM {FRAME_VIEW} AS f WHERE {match})"
            )
        )
