"""Merge writes on DuckDB: upsert versions on a key, never delete a row a frame merely lacks.

One transaction, batch by batch: create the table or add new columns (the same steps as a replace
write), delete the stored rows whose key the batch holds (one hash semi join against the registered
batch), insert the batch BY NAME. Tables created earlier have no primary key, so ``INSERT OR REPLACE``
cannot be relied on; delete + insert works on any table and costs two set operations however large the
batch. Each batch is deduplicated on its own (last row wins) and batches are applied in order, so the
last row of a key wins across batches too; a key a later batch repeats counts as a duplicate dropped,
not as an update (the keys written so far are kept in a temporary table, on DuckDB's side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from marketplace_assets.warehouse._duckdb_core import (
    FRAME_VIEW,
    DuckDBCore,
    PreparedTable,
    SchemaChanges,
    q,
    qt,
)
from marketplace_assets.warehouse.base import (
    MergeKeyError,
    TableRef,
    WriteResult,
    logger,
    merge_input,
    prepare_merge_frame,
)
from marketplace_assets.warehouse.batches import BATCH_ROWS, Batches, Rows, iter_batches
from marketplace_assets.warehouse.scope import PartitionScope

# The keys merged so far by this write (only when it has more than one batch).
_SEEN_KEYS = "__wh_merged_keys"


@dataclass
class _MergeCounts:
    written: int = 0
    updated: int = 0
    deleted: int = 0
    duplicates: int = 0


class DuckDBMerge(DuckDBCore):
    """The merge write of `DuckDBWarehouse`."""

    def merge(
        self,
        table: TableRef,
        rows: Rows,
        keys: Sequence[str],
        scope: PartitionScope | None = None,
    ) -> WriteResult:
        keys, source, dropped = merge_input(table, rows, keys, scope)
        result = self._write_transaction(
            table, lambda con: self._merge_in_transaction(con, table, source, keys, dropped, scope)
        )
        if result.duplicates_dropped:
            logger.warning(
                "Dropped %d row(s) of the rows for %s that repeat a key (%s); kept the last of each",
                result.duplicates_dropped,
                table,
                ", ".join(keys),
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
        rows: Rows,
        keys: list[str],
        dropped: int,
        scope: PartitionScope | None = None,
    ) -> WriteResult:
        staged = isinstance(rows, Batches)
        # A frame is deduplicated as a whole; only its keys cast to the stored types can repeat.
        several = staged or rows.height > BATCH_ROWS
        counts = _MergeCounts(duplicates=dropped)
        evolution = SchemaChanges()
        remembering = False
        for batch in iter_batches(rows):
            if staged:
                if batch.width == 0 and batch.height == 0:
                    continue  # an empty placeholder batch
                batch, batch_dropped = prepare_merge_frame(table, batch, keys, scope)
                counts.duplicates += batch_dropped
            prepared = self._prepare_table(con, table, batch)
            # A batch has at least its key columns, so there is always a table to prepare.
            assert prepared is not None
            evolution.add(prepared)
            if not batch.height:
                continue
            self._check_keys_unique_as_stored(con, table, prepared, keys, batch.height)
            repeated = 0
            if several:
                if not remembering:
                    self._start_remembering_keys(con, prepared, keys)
                    remembering = True
                repeated = self._count_repeated_keys(con, prepared, keys)
                if repeated and not staged:
                    raise MergeKeyError(
                        f"Refusing to merge into {table}: stored as the table's key types, {repeated} "
                        f"row(s) of the frame repeat the key ({', '.join(keys)}) of an earlier row. Convert "
                        "the key column(s) to the stored types upstream so duplicates are visible. "
                        "Nothing was written."
                    )
            match = self._key_match(prepared, keys)
            counts.updated += self._count_stored_keys(con, table, match) - repeated
            counts.deleted += self._delete_matching_keys(con, table, match) - repeated
            counts.written += self._insert_rows(con, table) - repeated
            counts.duplicates += repeated
            if several:
                self._remember_keys(con, prepared, keys)
        if not evolution.columns:
            evolution.columns = self._columns(con, table)
            if not evolution.columns:
                return WriteResult.nothing_to_merge(table)
        if remembering:
            con.execute(f"DROP TABLE {_SEEN_KEYS}")
        return WriteResult.merged(
            table, evolution, written=counts.written, updated=counts.updated, deleted=counts.deleted,
            duplicates=counts.duplicates,
        )  # fmt: skip

    @staticmethod
    def _stored_keys(prepared: PreparedTable, keys: list[str]) -> str:
        """The batch's keys cast to the stored types, as the table will hold them."""
        types = {name.lower(): sql_type for name, sql_type in prepared.columns.items()}
        return ", ".join(f"CAST(f.{q(k)} AS {types[k.lower()]}) AS {q(k)}" for k in keys)

    def _start_remembering_keys(
        self, con: duckdb.DuckDBPyConnection, prepared: PreparedTable, keys: list[str]
    ) -> None:
        con.execute(
            f"CREATE TEMP TABLE {_SEEN_KEYS} AS "
            f"SELECT {self._stored_keys(prepared, keys)} FROM {FRAME_VIEW} AS f LIMIT 0"
        )

    def _count_repeated_keys(
        self, con: duckdb.DuckDBPyConnection, prepared: PreparedTable, keys: list[str]
    ) -> int:
        """Rows of the batch whose key an earlier batch of this merge wrote."""
        types = {name.lower(): sql_type for name, sql_type in prepared.columns.items()}
        match = " AND ".join(f"s.{q(k)} = CAST(f.{q(k)} AS {types[k.lower()]})" for k in keys)
        return self._count(
            con.execute(
                f"SELECT count(*) FROM {FRAME_VIEW} AS f "
                f"WHERE EXISTS (SELECT 1 FROM {_SEEN_KEYS} AS s WHERE {match})"
            )
        )

    def _remember_keys(
        self, con: duckdb.DuckDBPyConnection, prepared: PreparedTable, keys: list[str]
    ) -> None:
        con.execute(
            f"INSERT INTO {_SEEN_KEYS} SELECT {self._stored_keys(prepared, keys)} FROM {FRAME_VIEW} AS f"
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
