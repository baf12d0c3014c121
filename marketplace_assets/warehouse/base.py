"""The backend-neutral face of the warehouse: table names, write results, the protocol, the opener.

Every backend (DuckDB: ``duckdb.py``; PostgreSQL: ``postgres.py``) implements `Warehouse` with the same
guarantees: one transaction per write, whatever the number of batches (a failure or a killed process
leaves the table exactly as it was); insert by column name; additive schema evolution, batch by batch
(a column first seen in a late batch is added, an integer column that receives fractions is widened);
and a refusal to store rows outside the partition scope being written. Two write modes: `write`
replaces partitions, `merge` upserts rows on a key and never deletes a row because the input lacks it
(history is kept); the last row of a key wins, across batches too.

Writes take `Rows`: a polars frame, or `Batches` staged on disk (``batches.py``) that a backend reads one
batch at a time, so a write's memory is bounded by one batch, never by the whole output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import polars as pl

from marketplace_assets.warehouse.batches import Rows
from marketplace_assets.warehouse.scope import PartitionScope

logger = logging.getLogger("marketplace_assets.warehouse")

# The URL prefixes of the PostgreSQL backend (settings.py recognises the same ones).
POSTGRES_URL_PREFIXES = ("postgresql://", "postgres://", "postgresql+")


@dataclass(frozen=True)
class TableRef:
    """A table ``schema.name``; for an asset keyed ``[area, report]`` that is ``area.report``."""

    schema: str
    name: str

    def __post_init__(self) -> None:
        if not self.schema or not self.name:
            raise ValueError(f"TableRef needs a schema and a name, got {self.schema!r}.{self.name!r}")

    @classmethod
    def from_asset_key(cls, path: Sequence[str]) -> TableRef:
        if len(path) != 2:
            raise ValueError(
                f"The warehouse stores asset {list(path)} in a table 'area.report', so its asset key "
                f"must have exactly two parts [area, report]; it has {len(path)}. Give the asset "
                'key_prefix=["<area>"] and a report name, e.g. dg.AssetKey(["sales", "transactions"]).'
            )
        return cls(schema=path[0], name=path[1])

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class WriteResult:
    """What a write did. ``columns`` are the table's columns and SQL types after the write.

    ``rows_written`` = ``rows_inserted`` + ``rows_updated``. A replace write inserts every row it
    writes; a merge updates the rows whose key the table already held and inserts the others.
    ``rows_deleted`` counts table rows removed: the replaced partitions' rows, or for a merge the older
    versions of the updated keys. ``duplicates_dropped``: frame rows a merge dropped because a later
    row of the frame had the same key.
    """

    table: TableRef
    rows_written: int
    rows_deleted: int
    added_columns: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    created_table: bool = False
    # Set when the write did nothing at all (e.g. no table yet and a frame without columns).
    skipped_reason: str | None = None
    rows_inserted: int = 0
    rows_updated: int = 0
    duplicates_dropped: int = 0
    # Integer columns widened because the rows brought fractions (never rounded away): to DOUBLE on
    # DuckDB, to exact numeric on PostgreSQL.
    widened_columns: list[str] = field(default_factory=list)

    @classmethod
    def nothing_to_store(cls, table: TableRef) -> WriteResult:
        """No table yet and rows without columns: nothing was created or written."""
        reason = f"{table} does not exist and the rows have no columns: nothing to store"
        return cls(table=table, rows_written=0, rows_deleted=0, skipped_reason=reason)

    @classmethod
    def nothing_to_merge(cls, table: TableRef) -> WriteResult:
        reason = f"{table} does not exist and there are no rows to merge"
        return cls(table=table, rows_written=0, rows_deleted=0, skipped_reason=reason)

    @classmethod
    def replaced(cls, table: TableRef, schema: SchemaChange, written: int, deleted: int) -> WriteResult:
        """A replace write: every row written was inserted."""
        return cls.merged(table, schema, written=written, updated=0, deleted=deleted, duplicates=0)

    @classmethod
    def merged(
        cls,
        table: TableRef,
        schema: SchemaChange,
        *,
        written: int,
        updated: int,
        deleted: int,
        duplicates: int,
    ) -> WriteResult:
        """A merge write: `updated` of the `written` rows replaced a stored version of their key."""
        return cls(
            table=table,
            rows_written=written,
            rows_deleted=deleted,
            added_columns=schema.added,
            widened_columns=schema.widened,
            columns=schema.columns,
            created_table=schema.created,
            rows_inserted=written - updated,
            rows_updated=updated,
            duplicates_dropped=duplicates,
        )


class SchemaChange(Protocol):
    """What a backend's schema preparation did to a table before the rows went in."""

    added: list[str]
    widened: list[str]
    columns: dict[str, str]
    created: bool


class WarehouseError(Exception):
    """Base for errors the warehouse raises on purpose (as opposed to driver errors)."""


class WarehouseBusyError(WarehouseError):
    """Another process held the lock this write needs (DuckDB: the file; PostgreSQL: the partitions
    or the table's schema) for longer than the lock timeout: transient."""


class WarehouseConnectionError(WarehouseError):
    """A warehouse server could not be reached or refused the login (the message names the URL,
    never its password)."""


class TableNotFoundError(WarehouseError, LookupError):
    pass


class ColumnNotFoundError(TableNotFoundError):
    """A column a query reads is not in its table (the table was written before the column existed):
    like a missing table, an input to materialize again."""


class RowsOutsideScopeError(WarehouseError, ValueError):
    """The frame holds rows a later rewrite of another partition would delete: a bug upstream."""


class MergeKeyError(WarehouseError, ValueError):
    """A merge's key is unusable: no keys, a key column the frame lacks, or null key values."""


@runtime_checkable
class Warehouse(Protocol):
    def write(self, table: TableRef, rows: Rows, scope: PartitionScope | None) -> WriteResult:
        """Replace the rows ``scope`` covers (the whole table when None) with ``rows`` (a frame or
        `Batches`), atomically."""
        ...

    def merge(
        self,
        table: TableRef,
        rows: Rows,
        keys: Sequence[str],
        scope: PartitionScope | None = None,
    ) -> WriteResult:
        """Upsert ``rows`` on ``keys``, atomically: rows whose key the table holds replace those rows,
        the others are inserted, and table rows whose key ``rows`` lack stay. Repeated keys keep the
        last row (batches count in order). ``scope`` is only checked (every row must lie inside),
        never deleted."""
        ...

    def read(self, table: TableRef, scope: PartitionScope | None = None) -> pl.DataFrame:
        """The rows ``scope`` covers (the whole table when None)."""
        ...

    def table_columns(self, table: TableRef) -> dict[str, str]:
        """Column name -> SQL type, in table order; empty when the table does not exist."""
        ...

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """The rows of one SELECT, run read-only, as a polars frame. The SQL names its parameters
        ``:name`` (``metrics/sql.py`` binds them for the backend's driver); ``parameters`` gives their
        values, and one the SQL uses without a value is refused. Exact numbers stay exact: DECIMAL and
        numeric results come back as polars Decimal, never as floats. A table the SQL reads that does
        not exist raises `TableNotFoundError`."""
        ...


def check_rows_in_scope(
    table: TableRef, df: pl.DataFrame, scope: PartitionScope | None, *, merging: bool = False
) -> None:
    """Raise unless every row of ``df`` falls inside ``scope``. Call before touching the database."""
    if scope is None or df.height == 0:
        return
    missing = [c for c in scope.columns if c not in df.columns]
    if missing:
        purpose = "checked against the partitions being merged" if merging else "replaced per partition"
        raise RowsOutsideScopeError(
            f"Refusing to write {df.height} row(s) to {table}: the frame has no partition column "
            f"{', '.join(repr(c) for c in missing)} (it has {df.columns}), so its rows could not be "
            f"{purpose}. Scope: {scope}."
        )
    outside = scope.rows_outside(df)
    if outside.height:
        # One concrete bad value makes the upstream bug easy to find.
        example = ", ".join(f"{c}={v!s}" for c, v in outside.row(0, named=True).items())
        risk = (
            "they would be stored as versions of partitions this run does not materialize"
            if merging
            else "rows of other partitions would be silently deleted when those partitions are rewritten"
        )
        raise RowsOutsideScopeError(
            f"Refusing to write to {table}: {outside.height} of {df.height} row(s) have "
            f"{'/'.join(scope.columns)} outside the partition scope {scope} (e.g. {example}). "
            f"An output must hold only the rows of the partition(s) being materialized; {risk}. "
            "Nothing was written."
        )


def check_merge_keys(table: TableRef, keys: Sequence[str]) -> list[str]:
    """The merge keys as a list; refuses a string, no keys, or a repeated key."""
    if isinstance(keys, str):
        raise MergeKeyError(f"Merge keys for {table} must be a list of column names, got the string {keys!r}")
    keys = list(keys)
    if not keys:
        raise MergeKeyError(f"Cannot merge into {table} without key columns: give at least one merge key")
    if len(set(keys)) != len(keys):
        raise MergeKeyError(f"Merge keys for {table} repeat a column: {keys}")
    return keys


def merge_input(
    table: TableRef, rows: Rows, keys: Sequence[str], scope: PartitionScope | None
) -> tuple[list[str], Rows, int]:
    """(keys, rows, repeated rows dropped) for a merge. A frame is validated (keys, nulls, scope) and
    deduplicated before the database is touched: a bad frame must not even take the write lock. Staged
    batches are validated one by one inside the transaction."""
    keys = check_merge_keys(table, keys)
    if isinstance(rows, pl.DataFrame):
        frame, dropped = prepare_merge_frame(table, rows, keys, scope)
        return keys, frame, dropped
    return keys, rows, 0


def prepare_merge_frame(
    table: TableRef, df: pl.DataFrame, keys: Sequence[str], scope: PartitionScope | None
) -> tuple[pl.DataFrame, int]:
    """Validate a merge before touching the database (or one batch of it, inside the transaction);
    return the frame with one row per key (the last occurrence wins, order kept) and how many rows
    were dropped for repeating a key."""
    keys = check_merge_keys(table, keys)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise MergeKeyError(
            f"Cannot merge into {table}: the frame has no key column(s) "
            f"{', '.join(repr(k) for k in missing)} (it has {df.columns}). Nothing was written."
        )
    for key in keys:
        nulls = df.get_column(key).null_count()
        if nulls:
            raise MergeKeyError(
                f"Refusing to merge into {table}: {nulls} of {df.height} row(s) have a null in key "
                f"column {key!r}. A null key never matches a stored row, so every later merge would add "
                "another copy instead of updating it; fill or drop those rows upstream. Nothing was written."
            )
    check_rows_in_scope(table, df, scope, merging=True)
    unique = df.unique(subset=keys, keep="last", maintain_order=True)
    return unique, df.height - unique.height


def open_warehouse(
    url_or_path: str,
    *,
    lock_timeout: float = 60.0,
    on_wait: Callable[[float], None] | None = None,
    password: str | None = None,
) -> Warehouse:
    """A DuckDB file path (created on first write) or a ``postgresql://user@host:port/db`` URL.

    ``lock_timeout`` bounds the wait for another process's lock (sensors pass a short one);
    ``on_wait(seconds_waited)`` is called about every 10 s while waiting, to say so where a user looks.
    The PostgreSQL password is ``password`` when given, else ``MARKETPLACE_WAREHOUSE_PASSWORD``, else libpq
    (``PGPASSWORD``, ``~/.pgpass``); it is never shown (see ``postgres_connection.py``).
    """
    target = url_or_path.strip()
    if not target:
        raise ValueError(
            "warehouse location is empty; set MARKETPLACE_WAREHOUSE to a DuckDB file path or a "
            "postgresql://user@host:port/db URL"
        )
    if target.startswith(POSTGRES_URL_PREFIXES):
        # Imported here so the protocol module stays free of any driver import.
        from marketplace_assets.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(target, lock_timeout=lock_timeout, on_wait=on_wait, password=password)
    if "://" in target:
        # Only the scheme: the rest of a URL may hold a password.
        scheme = target.split("://", 1)[0]
        raise ValueError(
            f"unsupported warehouse URL scheme {scheme!r}: use a DuckDB file path or a postgresql:// URL"
        )
    # Imported here so the protocol module stays free of any driver import.
    from marketplace_assets.warehouse.duckdb import DuckDBWarehouse

    return DuckDBWarehouse(target, lock_timeout=lock_timeout, on_wait=on_wait)
