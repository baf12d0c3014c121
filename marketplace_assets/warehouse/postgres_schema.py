"""Column types and additive schema evolution for the PostgreSQL warehouse.

Polars types map to PostgreSQL types as follows (the module docstring of ``postgres.py`` says why):

==========================================  ===================================================
polars                                      PostgreSQL
==========================================  ===================================================
Int8 .. Int64, UInt8 .. UInt32              bigint
UInt64, Int128, Float32, Float64, Decimal   numeric (exact; a float is stored as its shortest
                                            decimal text, 0.1 as 0.1)
Boolean                                     boolean
String, Categorical, Enum                   text
Date                                        date
Datetime (naive = UTC, or any time zone)    timestamp with time zone
Time                                        time without time zone
Duration                                    interval
List, Array, Struct                         jsonb
Null (a column with no value yet)           text
==========================================  ===================================================

A widened integer column becomes numeric. Binary and Object columns are refused with a message.

`plan_columns` folds the schemas of every batch of a write over the table's columns *before* the first
row is written, so all the DDL of a write happens at its start (see ``postgres.py`` on locking). The
first type a column gets stays, as on DuckDB, with two exceptions: a column with no value yet (polars
``Null``) takes the type of the first batch that brings values, and an integer column that receives
fractions is widened to numeric. Column names match the table's case-insensitively, as on DuckDB.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from marketplace_assets.warehouse.base import TableRef

# The planning type of an all-null column; stored as text when no batch brings a value.
NULL = "null"
FALLBACK_TYPE = "text"
INTEGER_TYPES = ("smallint", "integer", "bigint")
WIDE_TYPE = "numeric"
NUMERIC_DTYPES = (pl.Float32, pl.Float64, pl.Decimal, pl.UInt64, pl.Int128)
INTEGER_DTYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)


def pg_type(column: str, dtype: pl.DataType) -> str:
    """The PostgreSQL type storing a polars column; `NULL` for a column without any value yet."""
    if dtype == pl.Null():
        return NULL
    if isinstance(dtype, INTEGER_DTYPES):
        return "bigint"
    if isinstance(dtype, NUMERIC_DTYPES):
        return WIDE_TYPE
    if dtype == pl.Boolean():
        return "boolean"
    if isinstance(dtype, pl.String | pl.Categorical | pl.Enum):
        return "text"
    if dtype == pl.Date():
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "timestamp with time zone"
    if dtype == pl.Time():
        return "time without time zone"
    if isinstance(dtype, pl.Duration):
        return "interval"
    if isinstance(dtype, pl.List | pl.Array | pl.Struct):
        return "jsonb"
    raise TypeError(
        f"Column {column!r} is of polars type {dtype}, which the PostgreSQL warehouse does not store; "
        "convert it in the asset (e.g. binary to hex text with .bin.encode('hex'), objects to strings)."
    )


@dataclass(frozen=True)
class ColumnPlan:
    """What a write must do to the table before its first row: columns to create or add (name -> type,
    in order of first appearance) and integer columns to widen to numeric."""

    existing: dict[str, str]
    new: dict[str, str] = field(default_factory=dict)
    widen: list[str] = field(default_factory=list)

    @property
    def needs_ddl(self) -> bool:
        return not self.existing or bool(self.new) or bool(self.widen)

    def resolve(self, column: str) -> str:
        """The table's name for a frame column (case-insensitive, as on DuckDB)."""
        return _by_lower(self.existing).get(column.lower(), column)


def plan_columns(existing: Mapping[str, str], schemas: Iterable[Mapping[str, pl.DataType]]) -> ColumnPlan:
    stored = {name.lower(): (name, sql_type.lower()) for name, sql_type in existing.items()}
    new: dict[str, tuple[str, str]] = {}
    widen: list[str] = []
    for schema in schemas:
        lowered = [name.lower() for name in schema]
        if len(set(lowered)) != len(lowered):
            repeated = sorted({n for n in schema if lowered.count(n.lower()) > 1})
            raise ValueError(
                f"Columns {repeated} differ only by case; the warehouse matches column names "
                "case-insensitively, so rename one of them in the asset."
            )
        for name, dtype in schema.items():
            incoming = pg_type(name, dtype)
            lower = name.lower()
            if lower in stored:
                stored_name, stored_type = stored[lower]
                if stored_type in INTEGER_TYPES and incoming == WIDE_TYPE:
                    stored[lower] = (stored_name, WIDE_TYPE)
                    widen.append(stored_name)
            elif lower in new:
                new_name, new_type = new[lower]
                if new_type == NULL or (new_type == "bigint" and incoming == WIDE_TYPE):
                    new[lower] = (new_name, incoming)
            else:
                new[lower] = (name, incoming)
    planned = {name: (FALLBACK_TYPE if sql_type == NULL else sql_type) for name, sql_type in new.values()}
    return ColumnPlan(existing=dict(existing), new=planned, widen=widen)


def _by_lower(columns: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): name for name in columns}


# -- catalog ----------------------------------------------------------------------------------------
def qt(table: TableRef) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))


def table_columns(con: psycopg.Connection[Any], table: TableRef) -> dict[str, str]:
    """Column name -> type in table order; empty when there is no such table. Plain catalog reads
    with the statement's snapshot: they see DDL another transaction committed a moment ago."""
    rows = con.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod)
        FROM pg_attribute AS a
        JOIN pg_class AS c ON c.oid = a.attrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (table.schema, table.name),
    ).fetchall()
    return {str(name): str(sql_type) for name, sql_type in rows}


def schema_exists(con: psycopg.Connection[Any], schema: str) -> bool:
    row = con.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,)).fetchone()
    return bool(row and row[0])


def has_unique_index(con: psycopg.Connection[Any], table: TableRef, columns: list[str]) -> bool:
    """Whether a valid, plain unique index covers exactly ``columns`` (what ON CONFLICT needs)."""
    row = con.execute(
        """
        SELECT EXISTS (
          SELECT 1 FROM pg_index AS i
          JOIN pg_class AS c ON c.oid = i.indrelid
          JOIN pg_namespace AS n ON n.oid = c.relnamespace
          WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indisvalid
            AND i.indpred IS NULL AND i.indexprs IS NULL
            AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute AS a
                 WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = %s::text[]
        )
        """,
        (table.schema, table.name, sorted(columns)),
    ).fetchone()
    return bool(row and row[0])


# -- DDL ----------------------------------------------------------------------------------------------
def create_table(con: psycopg.Connection[Any], table: TableRef, columns: Mapping[str, str]) -> None:
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(sql_type)) for name, sql_type in columns.items()
    )
    con.execute(sql.SQL("CREATE TABLE {} ({})").format(qt(table), definition))


def add_columns(con: psycopg.Connection[Any], table: TableRef, columns: Mapping[str, str]) -> None:
    for name, sql_type in columns.items():
        # Nullable and without default: the rows already stored read as null in the new column.
        con.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                qt(table), sql.Identifier(name), sql.SQL(sql_type)
            )
        )


def widen_columns(con: psycopg.Connection[Any], table: TableRef, columns: list[str]) -> None:
    for name in columns:
        con.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE numeric").format(qt(table), sql.Identifier(name))
        )


def merge_index_name(table: TableRef) -> str:
    """A unique index name within PostgreSQL's 63-byte identifiers, stable per table."""
    digest = hashlib.blake2b(str(table).encode(), digest_size=4).hexdigest()
    return f"{table.name[:40]}_{digest}_merge_key"


def create_unique_index(con: psycopg.Connection[Any], table: TableRef, columns: list[str]) -> None:
    con.execute(
        sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
            sql.Identifier(merge_index_name(table)),
            qt(table),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        )
    )
