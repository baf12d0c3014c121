"""A read-only SELECT on PostgreSQL, its rows as a polars frame with exact numbers.

`PostgresWarehouse.query` runs the statement in a read-only transaction and hands the cursor here. The
rows are fetched through psycopg, which gives numeric values as `Decimal`; each column's polars type
comes from the result's own type (the cursor's description), so an empty result has its columns too.
numeric becomes polars Decimal with the column's declared precision and scale (``CAST(x AS
DECIMAL(18, 2))``), or, for a numeric without them (a ``sum`` of numeric), precision 38 and the largest
scale among its values, so no digit is lost. The COPY path of ``postgres_rows.py`` reads whole tables
fast and gives numeric as Float64; a query's result is small, and money must not pass through floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import polars as pl
import psycopg

# PostgreSQL type names (the cursor's type information) -> polars types; numeric is handled apart.
_TYPES: dict[str, pl.DataType] = {
    "int2": pl.Int64(),
    "int4": pl.Int64(),
    "int8": pl.Int64(),
    "float4": pl.Float64(),
    "float8": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "text": pl.String(),
    "varchar": pl.String(),
    "bpchar": pl.String(),
    "name": pl.String(),
    "timestamptz": pl.Datetime("us", "UTC"),
    "timestamp": pl.Datetime("us"),
}
# polars' widest Decimal.
MAX_PRECISION = 38


def frame_from_cursor(cursor: psycopg.Cursor[Any]) -> pl.DataFrame:
    """The cursor's result (after `execute`) as a frame: every row fetched, typed by its description."""
    description = cursor.description or []
    rows = cursor.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in description]
    series = []
    for column, values in zip(description, columns, strict=True):
        info = psycopg.adapters.types.get(column.type_code)
        type_name = info.name if info is not None else ""
        series.append(_series(column.name, type_name, column.precision, column.scale, values))
    return pl.DataFrame(series)


def _series(
    name: str, type_name: str, precision: int | None, scale: int | None, values: Sequence[Any]
) -> pl.Series:
    if type_name == "numeric":
        dtype = pl.Decimal(precision or MAX_PRECISION, scale if scale is not None else _largest_scale(values))
        return pl.Series(name, values, dtype=dtype)
    dtype = _TYPES.get(type_name)
    if dtype is None:
        # jsonb, arrays, intervals, ...: whatever polars makes of psycopg's Python values.
        return pl.Series(name, values)
    return pl.Series(name, values, dtype=dtype)


def _largest_scale(values: Sequence[Any]) -> int:
    """The most decimal places any value has (0 for none): a numeric without a declared scale."""
    scales = [
        -exponent
        for value in values
        if isinstance(value, Decimal)
        and value.is_finite()
        and isinstance(exponent := value.as_tuple().exponent, int)
        and exponent < 0
    ]
    return max(scales, default=0)
