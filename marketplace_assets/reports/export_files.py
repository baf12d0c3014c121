"""Reading an async export's file (CSV or JSON) into the same flattened, snake_case frame.

Both readers stay inside polars (no Python object per row), so a file of a million line items is read
in bounded memory. Columns come out as in `normalize.flatten`: the leaf path joined with `_`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from marketplace_assets.api.errors import ReportShapeError
from marketplace_assets.reports.normalize import snake_case

# Identifiers that look numeric but are text (postcodes, phone numbers, entitlement numbers, ...): read
# as strings so leading zeros and formats survive.
_TEXT_LIKE = re.compile(r"(postcode|phone|id|number|key|hostname|tier|name|email|address)$", re.IGNORECASE)


def _leaf(column: str) -> str:
    return column.rsplit(".", 1)[-1]


def read_csv_export(path: Path, report: str) -> pl.DataFrame:
    """A CSV export: dotted camelCase headers (`purchaseDetails.purchasePrice`), lists as JSON text."""
    try:
        header = pl.read_csv(path, n_rows=0).columns
    except pl.exceptions.NoDataError:
        return pl.DataFrame()
    overrides = {c: pl.String for c in header if _TEXT_LIKE.search(_leaf(c))}
    try:
        frame = pl.read_csv(path, schema_overrides=overrides, infer_schema_length=10_000)
    except pl.exceptions.ComputeError as exc:
        raise ReportShapeError(report, f"the export CSV does not parse: {str(exc).splitlines()[0]}") from exc
    frame = frame.rename({c: snake_case(c) for c in frame.columns})
    return _decode_json_lists(frame)


def _decode_json_lists(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV exports write arrays (discounts, ...) as JSON text; arrays are list columns everywhere else."""
    for column, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        values = frame[column].drop_nulls()
        if values.len() and values.str.starts_with("[").all():
            # The Series method infers the list's type; polars 2's expression form needs it spelled out.
            frame = frame.with_columns(frame[column].str.json_decode())
    return frame


def read_json_export(path: Path, report: str) -> pl.DataFrame:
    """A JSON export (an array of objects): nested objects unnested into columns, lists kept as lists."""
    if path.stat().st_size <= 2:
        return pl.DataFrame()
    try:
        frame = pl.read_json(path, infer_schema_length=None)
    except (pl.exceptions.ComputeError, ValueError) as exc:
        raise ReportShapeError(report, f"the export JSON does not parse: {str(exc).splitlines()[0]}") from exc
    frame = _unnest_all(frame)
    return frame.rename({c: snake_case(c) for c in frame.columns})


def _unnest_all(frame: pl.DataFrame) -> pl.DataFrame:
    while structs := [c for c, dtype in frame.schema.items() if isinstance(dtype, pl.Struct)]:
        for column in structs:
            fields = [f.name for f in frame.schema[column].fields]  # type: ignore[union-attr]
            frame = frame.with_columns(
                pl.col(column).struct.rename_fields([f"{column}.{f}" for f in fields])
            ).unnest(column)
    return frame


def read_export(path: Path, accept: str, report: str, date_columns: Sequence[str] = ()) -> pl.DataFrame:
    frame = read_csv_export(path, report) if accept == "csv" else read_json_export(path, report)
    for column in date_columns:
        if column in frame.columns and frame.schema[column] != pl.Date:
            frame = frame.with_columns(
                pl.col(column).cast(pl.String).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
            )
    return frame
