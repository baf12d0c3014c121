"""Rows in and out of PostgreSQL: COPY a batch in as CSV, COPY a query out as CSV, scope predicates.

In: each batch becomes CSV text with polars (datetimes as UTC with an explicit ``+00``, lists and
structs as JSON, durations as microseconds) and is streamed to ``COPY ... FROM STDIN (FORMAT csv)``
in chunks; PostgreSQL parses every value with the input function of the column's type, so values
land in the table's columns by name whatever the batch's order. An unquoted empty field is NULL and
polars quotes empty strings, so the two stay apart.

Out: ``COPY (SELECT ...) TO STDOUT (FORMAT csv, HEADER)``, parsed with polars against types derived
from the table's (numeric -> Float64, timestamptz -> Datetime(us, UTC) via epoch microseconds,
jsonb -> decoded lists/structs).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from marketplace_assets.warehouse.base import TableRef
from marketplace_assets.warehouse.postgres_schema import INTEGER_TYPES, qt
from marketplace_assets.warehouse.scope import END_SUFFIX, START_SUFFIX, PartitionScope

# Bytes handed to the driver per COPY write: bounded buffers whatever the batch size.
COPY_CHUNK_BYTES = 4 << 20
_JSON_VALUE = "v"


def copy_batch(
    con: psycopg.Connection[Any], target: sql.Composable, batch: pl.DataFrame, columns: list[str]
) -> int:
    """COPY ``batch`` into ``target`` (a table), its columns landing in ``columns`` (the table's names
    for them, in the batch's order). Returns the rows copied."""
    if batch.height == 0 or batch.width == 0:
        return 0
    buffer = io.BytesIO()
    csv_ready(batch).write_csv(buffer, include_header=False)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        target, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    view = buffer.getbuffer()
    with con.cursor() as cur, cur.copy(statement) as copy:
        for offset in range(0, len(view), COPY_CHUNK_BYTES):
            copy.write(view[offset : offset + COPY_CHUNK_BYTES])
    del view
    return batch.height


def csv_ready(batch: pl.DataFrame) -> pl.DataFrame:
    """The batch with every column in a text form PostgreSQL's input functions read back exactly."""
    return batch.select(_csv_expr(name, dtype) for name, dtype in batch.schema.items())


def _csv_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        # Naive datetimes are UTC by the project's convention; say so, whatever the session's zone.
        return (col.dt.to_string("%Y-%m-%d %H:%M:%S%.6f") + "+00").alias(name)
    if dtype == pl.Time():
        return col.dt.to_string("%H:%M:%S%.6f").alias(name)
    if isinstance(dtype, pl.Duration):
        return (col.dt.total_microseconds().cast(pl.String) + " microseconds").alias(name)
    if isinstance(dtype, pl.Struct):
        return col.struct.json_encode().alias(name)
    if isinstance(dtype, pl.List | pl.Array):
        # polars encodes structs only: wrap the list in one, then take the value back out.
        wrapped = pl.struct(col.alias(_JSON_VALUE)).struct.json_encode()
        json = wrapped.str.strip_prefix(f'{{"{_JSON_VALUE}":').str.strip_suffix("}")
        return pl.when(col.is_null()).then(None).otherwise(json).alias(name)
    if dtype == pl.Null() or isinstance(dtype, pl.Categorical | pl.Enum):
        return col.cast(pl.String)
    return col


# -- reading --------------------------------------------------------------------------------------------
def read_frame(
    con: psycopg.Connection[Any], from_where: sql.Composable, columns: Mapping[str, str]
) -> pl.DataFrame:
    """``SELECT`` the table's ``columns`` ``FROM ...`` (``from_where``) as a polars frame."""
    select = sql.SQL(", ").join(_select_expr(name, sql_type) for name, sql_type in columns.items())
    statement = sql.SQL("COPY (SELECT {} {}) TO STDOUT (FORMAT csv, HEADER)").format(select, from_where)
    buffer = io.BytesIO()
    with con.cursor() as cur, cur.copy(statement) as copy:
        for data in copy:
            buffer.write(data)
    schema = {name: _read_dtype(sql_type) for name, sql_type in columns.items()}
    buffer.seek(0)
    frame = pl.read_csv(buffer, schema=schema, has_header=True)
    frame = frame.with_columns(_decode(name, sql_type) for name, sql_type in columns.items())
    # JSON is decoded per series: the element types are inferred from every value.
    return frame.with_columns(
        frame.get_column(name).str.json_decode(infer_schema_length=None)
        for name, sql_type in columns.items()
        if _kind(sql_type) == "json" and frame.get_column(name).null_count() < frame.height
    )


def _kind(sql_type: str) -> str:
    t = sql_type.lower()
    if t in INTEGER_TYPES:
        return "integer"
    if t.startswith(("numeric", "double precision", "real")):
        return "float"
    if t == "timestamp with time zone":
        return "timestamptz"
    if t.startswith("timestamp"):
        return "timestamp"
    if t in ("jsonb", "json"):
        return "json"
    return {"boolean": "boolean", "date": "date", "time without time zone": "time"}.get(t, "text")


def _select_expr(name: str, sql_type: str) -> sql.Composable:
    col = sql.Identifier(name)
    kind = _kind(sql_type)
    if kind in ("timestamptz", "timestamp"):
        # Epoch microseconds: exact, and free of any date style or zone formatting.
        return sql.SQL("(extract(epoch FROM {c}) * 1000000)::bigint AS {c}").format(c=col)
    if kind in ("boolean", "time"):
        return sql.SQL("{c}::text AS {c}").format(c=col)
    return col


def _read_dtype(sql_type: str) -> pl.DataType:
    return {
        "integer": pl.Int64(),
        "float": pl.Float64(),
        "timestamptz": pl.Int64(),
        "timestamp": pl.Int64(),
        "boolean": pl.Boolean(),
        "date": pl.Date(),
    }.get(_kind(sql_type), pl.String())


def _decode(name: str, sql_type: str) -> pl.Expr:
    col = pl.col(name)
    kind = _kind(sql_type)
    if kind == "timestamptz":
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if kind == "timestamp":
        return col.cast(pl.Datetime("us"))
    if kind == "time":
        return col.str.to_time("%H:%M:%S%.f")
    return col


# -- scope predicates -------------------------------------------------------------------------------
def scope_predicate(scope: PartitionScope, columns: Mapping[str, str]) -> sql.Composable:
    """A condition on table alias ``t`` selecting the scope's rows, as ``DuckDBWarehouse`` does:
    half-open ``[start, end)`` on time columns (naive bounds are UTC), text equality on key columns.

    The cells travel as literal arrays unnested into one row per cell, matched with one EXISTS (a
    semi join), so a run covering hundreds of month x app cells is still one statement.
    """
    types = {name.lower(): (name, sql_type.lower()) for name, sql_type in columns.items()}
    if not scope.cells or any(c.lower() not in types for c in scope.columns):
        # A column the table lacks is null on every row, and null is in no partition.
        return sql.SQL("FALSE")
    cells = scope.merged().cells_frame()
    arrays: list[sql.Composable] = []
    conditions: list[sql.Composable] = []

    def cell_column(values: pl.Series, array_type: str) -> sql.Composable:
        arrays.append(sql.SQL("{}::{}[]").format(sql.Literal(values.to_list()), sql.SQL(array_type)))
        return sql.SQL("s.{}").format(sql.Identifier(f"c{len(arrays) - 1}"))

    for column in scope.columns:
        name, sql_type = types[column.lower()]
        col = sql.SQL("t.{}").format(sql.Identifier(name))
        if column in scope.time_columns:
            start_values = cells.get_column(column + START_SUFFIX)
            bound_type = "date" if start_values.dtype == pl.Date() else "timestamp"
            start = cell_column(start_values, bound_type)
            end = cell_column(cells.get_column(column + END_SUFFIX), bound_type)
            if sql_type == "timestamp with time zone":
                # Scope bounds are naive UTC: compare instants, whatever the session's zone.
                start = sql.SQL("({}::timestamp AT TIME ZONE 'UTC')").format(start)
                end = sql.SQL("({}::timestamp AT TIME ZONE 'UTC')").format(end)
            conditions.append(sql.SQL("{c} >= {s} AND {c} < {e}").format(c=col, s=start, e=end))
        else:
            # Partition keys are text; casting the column keeps PostgreSQL and the polars check alike.
            key = cell_column(cells.get_column(column), "text")
            conditions.append(sql.SQL("{}::text = {}").format(col, key))
    names = sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(len(arrays)))
    return sql.SQL("EXISTS (SELECT 1 FROM unnest({}) AS s({}) WHERE {})").format(
        sql.SQL(", ").join(arrays), names, sql.SQL(" AND ").join(conditions)
    )


def from_table(table: TableRef, predicate: sql.Composable | None) -> sql.Composable:
    """``FROM "schema"."name" AS t [WHERE predicate]``."""
    if predicate is None:
        return sql.SQL("FROM {} AS t").format(qt(table))
    return sql.SQL("FROM {} AS t WHERE {}").format(qt(table), predicate)
