"""What every DuckDB write shares: the file lock, the transaction, and additive schema evolution.

A write calls `DuckDBCore._prepare_table` once per batch, inside its one transaction: each batch is
registered as `FRAME_VIEW` and the table evolves to take it (created by the first batch with columns,
then new columns added and integer columns widened as later batches need).

DuckDB lets one process hold a file for writing at a time, and Dagster runs steps in separate
processes, so every operation opens the file, retries while another process holds the lock, does its
work and closes again. Nothing keeps a connection open between operations.

`DuckDBCore` is the base of `DuckDBWarehouse` (``duckdb.py``: replace writes and reads) by way of
`DuckDBMerge` (``duckdb_merge.py``: merge writes); use `DuckDBWarehouse`, not these bases.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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

from marketplace_assets.warehouse.base import TableRef, WarehouseBusyError, WriteResult, logger

# Names of the views registered on a connection for one statement; connections are never shared.
FRAME_VIEW = "__wh_frame"
# DuckDB types an all-null column "NULL" (also nested, e.g. "NULL"[] or STRUCT(a "NULL")); a table
# column cannot have that type, and text is the type that later values can most likely be cast from.
_STAGED = itertools.count()


def _has_null_type(dtype: pl.DataType) -> bool:
    if dtype == pl.Null:
        return True
    inner = getattr(dtype, "inner", None)
    return isinstance(inner, pl.DataType) and _has_null_type(inner)


def _without_null_type(dtype: pl.DataType) -> pl.DataType:
    if dtype == pl.Null:
        return pl.String()
    return type(dtype)(_without_null_type(dtype.inner))  # type: ignore[attr-defined,call-arg]


_NULL_TYPE = re.compile(r'"NULL"(?=$|[\[,)])')
_LOCK_CONFLICT = "Could not set lock on file"


def q(identifier: str) -> str:
    """A quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def qt(table: TableRef) -> str:
    """The quoted ``"schema"."name"`` of a table."""
    return f"{q(table.schema)}.{q(table.name)}"


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and _LOCK_CONFLICT in str(exc)


# While waiting for another process's lock, say so this often (the waits themselves are short).
LOCK_WAIT_REPORT_SECONDS = 10.0
# DuckDB's own memory for one connection (its default is 80% of the machine's RAM). Past it a write's
# uncommitted rows spill to disk. 128MB: a million-row write peaks 100 MB lower than at 256MB, at the
# same speed; 32MB fails the widest report's inserts (out of memory), 64MB holds but is slower.
MEMORY_LIMIT = "128MB"
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER")
_FRACTION_TYPES = ("DOUBLE", "FLOAT", "REAL", "DECIMAL")


@dataclass(frozen=True)
class PreparedTable:
    """The table after `DuckDBCore._prepare_table`: ready to take the registered frame by name."""

    created: bool
    added_columns: list[str]
    # Column name -> SQL type, in table order, after any creation or addition.
    columns: dict[str, str]
    # Column name -> SQL type of the registered frame (empty for a frame without columns).
    frame_types: dict[str, str]
    widened_columns: list[str] = field(default_factory=list)


@dataclass
class SchemaChanges:
    """What the batches of one write did to the table, summed up batch by batch."""

    created: bool = False
    added: list[str] = field(default_factory=list)
    widened: list[str] = field(default_factory=list)
    # The table's columns after the latest batch.
    columns: dict[str, str] = field(default_factory=dict)

    def add(self, prepared: PreparedTable) -> None:
        self.created = self.created or prepared.created
        self.added += [c for c in prepared.added_columns if c not in self.added]
        self.widened += [c for c in prepared.widened_columns if c not in self.widened]
        self.columns = prepared.columns


class DuckDBCore:
    """Connection handling and the schema steps shared by replace and merge writes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float = 60.0,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait
        self._staging: Path | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def table_columns(self, table: TableRef) -> dict[str, str]:
        if not self.path.exists():
            return {}
        with self._connection(read_only=True) as con:
            return self._columns(con, table)

    # -- one write = one transaction ----------------------------------------------------------------
    def _write_transaction(
        self, table: TableRef, work: Callable[[duckdb.DuckDBPyConnection], WriteResult]
    ) -> WriteResult:
        """Run ``work`` in one transaction: committed if it returns a result that is not skipped,
        rolled back (DDL included) if it is skipped or raises."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection(read_only=False) as con, self._staging_cleanup():
            con.begin()
            try:
                result = work(con)
                if result.skipped_reason:
                    con.rollback()
                else:
                    con.commit()
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.rollback()
                raise
        if result.added_columns:
            logger.info("Added column(s) %s to %s", ", ".join(result.added_columns), table)
        return result

    def _prepare_table(
        self, con: duckdb.DuckDBPyConnection, table: TableRef, df: pl.DataFrame
    ) -> PreparedTable | None:
        """Register ``df`` as `FRAME_VIEW`, then create the table or add the frame's new columns.

        None when there is no table and the frame has no columns: nothing to create or store.
        """
        existing = self._columns(con, table)
        if not existing and df.width == 0:
            return None
        frame_types: dict[str, str] = {}
        if df.width:
            self._stage_frame(con, df)
            frame_types = self._frame_types(con)
        created = not existing
        widened: list[str] = []
        if created:
            self._create_table(con, table, frame_types)
            added: list[str] = []
        else:
            added = self._add_columns(con, table, existing, frame_types)
            widened = self._widen_columns(con, table, existing, frame_types)
        return PreparedTable(
            created=created,
            added_columns=added,
            columns=self._columns(con, table),
            frame_types=frame_types,
            widened_columns=widened,
        )

    def _create_table(
        self, con: duckdb.DuckDBPyConnection, table: TableRef, frame_types: dict[str, str]
    ) -> None:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(table.schema)}")
        definition = ", ".join(f"{q(name)} {sql_type}" for name, sql_type in frame_types.items())
        con.execute(f"CREATE TABLE {qt(table)} ({definition})")

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
            con.execute(f"ALTER TABLE {qt(table)} ADD COLUMN {q(name)} {frame_types[name]}")
        return added

    def _widen_columns(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableRef,
        existing: dict[str, str],
        frame_types: dict[str, str],
    ) -> list[str]:
        """Integer columns that now receive fractions become DOUBLE: DuckDB would otherwise round 12.5
        into an integer column without a word."""
        stored = {name.lower(): (name, sql_type.upper()) for name, sql_type in existing.items()}
        widened = []
        for name, sql_type in frame_types.items():
            name_in_table, stored_type = stored.get(name.lower(), (name, ""))
            if stored_type.startswith(_INTEGER_TYPES) and sql_type.upper().startswith(_FRACTION_TYPES):
                con.execute(f"ALTER TABLE {qt(table)} ALTER COLUMN {q(name_in_table)} TYPE DOUBLE")
                widened.append(name_in_table)
        return widened

    def _stage_frame(self, con: duckdb.DuckDBPyConnection, df: pl.DataFrame) -> None:
        """Make ``df`` the `FRAME_VIEW` through a parquet file, not a registered polars frame: DuckDB
        keeps the memory of every frame registered in a transaction until it commits (measured: +1.1 GB
        for a million rows in 25,000-row batches), while rows read from a file stay under its limit."""
        staged = self._staging_dir() / f"{next(_STAGED):08d}.parquet"
        # A column of nulls has no parquet type: as text, the type the table would give it anyway.
        nulls = {c: _without_null_type(t) for c, t in df.schema.items() if _has_null_type(t)}
        (df.cast(nulls) if nulls else df).write_parquet(staged, compression="uncompressed", statistics=False)
        path = str(staged).replace("'", "''")
        con.execute(f"CREATE OR REPLACE TEMP VIEW {FRAME_VIEW} AS SELECT * FROM read_parquet('{path}')")

    def _staging_dir(self) -> Path:
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="marketplace-duckdb-"))
        return self._staging

    def _insert_rows(self, con: duckdb.DuckDBPyConnection, table: TableRef) -> int:
        # BY NAME: frame columns land in the table columns of the same name whatever their order;
        # table columns the frame lacks get nulls.
        return self._count(con.execute(f"INSERT INTO {qt(table)} BY NAME SELECT * FROM {FRAME_VIEW}"))

    # -- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _frame_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        described = con.sql(f"DESCRIBE SELECT * FROM {FRAME_VIEW}").fetchall()
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
    def _staging_cleanup(self) -> Iterator[None]:
        try:
            yield
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging = None

    @contextlib.contextmanager
    def _connection(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._connect(read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    def _connect(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        reported = [0.0]

        def report_wait(state: RetryCallState) -> None:
            waited = state.seconds_since_start or 0.0
            if waited - reported[0] < LOCK_WAIT_REPORT_SECONDS:
                return
            reported[0] = waited
            logger.info("Waiting for DuckDB's lock on %s (%.0fs so far)", self.path, waited)
            if self.on_wait is not None:
                self.on_wait(waited)

        retrying = Retrying(
            retry=retry_if_exception(_is_lock_conflict),
            # Short first waits (steps usually hold the file for well under a second), capped at 2 s.
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.1),
            stop=stop_after_delay(self.lock_timeout),
            before_sleep=report_wait,
            reraise=True,
        )
        try:
            return retrying(self._open, read_only)
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise
            raise WarehouseBusyError(
                f"Could not open {self.path} within {self.lock_timeout:.0f}s: another process holds "
                f"DuckDB's write lock ({exc}). DuckDB allows one writing process per file; wait for it "
                "to finish or limit concurrent runs."
            ) from exc

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        try:
            # Read-only where possible: several processes may read a file at once.
            con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.ConnectionException as exc:
            # This process already has the file open read-write (DuckDB refuses a second, different
            # configuration in one process); a read-write connection reads just as well.
            if not (read_only and "different configuration" in str(exc)):
                raise
            con = duckdb.connect(str(self.path))
        # A write's uncommitted rows spill to `<file>.tmp/` past this, instead of growing with the rows.
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        return con
