"""Type drift: a field that arrives with another type than the one it is stored (or declared) with.

Polars infers each column's type from the values of one response, so a numeric field that arrives as
text ("n/a") makes the whole column text, and DuckDB would then either refuse the insert with a raw
conversion error or, for a float into an integer column, round it silently. Both are caught here,
before anything is written, with a message that names the report, the field, both types and a value.

What a field is expected to be comes from the report's declared numeric columns
(`Invariants.numeric_columns`, checked in the asset before any figure is computed, so a first load is
checked too) and from the warehouse table (checked by the IO manager just before it writes, where the
table's columns are at hand: `check_stored_types`).
Widening is not drift: integers into a DOUBLE column, or floats into an integer column (the warehouse
widens that column, see `warehouse/_duckdb_core.py`). Text columns take anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl

from marketplace_assets.api.errors import TypeDriftError
from marketplace_assets.warehouse.batches import Batches, Rows

NUMBER, DATE, TIMESTAMP, BOOLEAN, LIST, STRUCT, TEXT = (
    "number",
    "date",
    "timestamp",
    "boolean",
    "list",
    "struct",
    "text",
)
_SQL_NUMBERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER")
_SQL_NUMBERS += ("UBIGINT", "UHUGEINT", "FLOAT", "REAL", "DOUBLE", "DECIMAL", "NUMERIC")


def sql_kind(sql_type: str) -> str:
    """The kind of a warehouse column from its SQL type (DuckDB's spelling)."""
    upper = sql_type.upper()
    if upper.endswith("]"):
        return LIST
    if upper.startswith("STRUCT"):
        return STRUCT
    if upper.startswith(_SQL_NUMBERS):
        return NUMBER
    if upper.startswith("TIMESTAMP"):
        return TIMESTAMP
    if upper == "DATE":
        return DATE
    if upper == "BOOLEAN":
        return BOOLEAN
    return TEXT


def frame_kind(dtype: pl.DataType) -> str | None:
    """The kind of a frame column; None for an all-null column, which fits any kind."""
    if dtype == pl.Null:
        return None
    if dtype.is_numeric():
        return NUMBER
    if dtype == pl.Date:
        return DATE
    if isinstance(dtype, pl.Datetime):
        return TIMESTAMP
    if dtype == pl.Boolean:
        return BOOLEAN
    if isinstance(dtype, pl.List | pl.Array):
        return LIST
    if isinstance(dtype, pl.Struct):
        return STRUCT
    return TEXT


def _fits(expected: str, received: str) -> bool:
    # Text stores anything; a date is a timestamp at midnight.
    return expected in (received, TEXT) or (expected == TIMESTAMP and received == DATE)


def check_field_types(
    frame: pl.DataFrame,
    report: str,
    stored_columns: Mapping[str, str],
    numeric_columns: Iterable[str] = (),
) -> None:
    """Raise `TypeDriftError` for the first column of `frame` whose kind differs from its expected one."""
    expected = _expected(stored_columns, numeric_columns)
    drift = _first_drift(frame.schema, expected)
    if drift is None:
        return
    column, want = drift
    dtype = frame.schema[column]
    raise TypeDriftError(
        report,
        column,
        want[1] if want[1] == "a number" else f"{want[1]} ({want[0]})",
        f"{dtype} ({frame_kind(dtype)})",
        _example(frame, column, want[0]),
    )


def check_stored_types(rows: Rows, report: str, stored_columns: Mapping[str, str]) -> None:
    """`check_field_types` against the table's stored columns, for a frame or staged batches. Batches
    are judged by their files' schemas; only a batch that drifts is read, to quote a value."""
    if not stored_columns:
        return
    if not isinstance(rows, Batches):
        check_field_types(rows, report, stored_columns)
        return
    expected = _expected(stored_columns, ())
    for file in rows.files:
        if _first_drift(pl.read_parquet_schema(file), expected) is not None:
            check_field_types(pl.read_parquet(file), report, stored_columns)


def _expected(
    stored_columns: Mapping[str, str], numeric_columns: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """Column (lower-cased) -> (expected kind, how to name it in a message)."""
    expected = {name.lower(): (sql_kind(sql_type), sql_type) for name, sql_type in stored_columns.items()}
    for name in numeric_columns:
        expected.setdefault(name.lower(), (NUMBER, "a number"))
    return expected


def _first_drift(
    schema: Mapping[str, pl.DataType], expected: Mapping[str, tuple[str, str]]
) -> tuple[str, tuple[str, str]] | None:
    for column, dtype in schema.items():
        want = expected.get(column.lower())
        received = frame_kind(dtype)
        if want is not None and received is not None and not _fits(want[0], received):
            return column, want
    return None


def _example(frame: pl.DataFrame, column: str, expected: str) -> object:
    """A value of `column` that is not of the expected kind (the first non-null one if none is)."""
    values = frame.get_column(column).drop_nulls()
    if expected == NUMBER and values.dtype == pl.String:
        bad = values.filter(values.cast(pl.Float64, strict=False).is_null())
        values = bad if bad.len() else values
    return values[0] if values.len() else None
