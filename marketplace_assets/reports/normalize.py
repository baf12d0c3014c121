"""From JSON records to a tidy polars frame: nested objects flattened, names in snake_case.

`purchaseDetails.purchasePrice` becomes `purchase_details_purchase_price`; arrays stay list columns.
Parsing is by field name: unknown fields become new columns, missing ones become nulls, and so do empty
strings (`blanks_to_nulls`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from marketplace_assets.api.errors import TypeDriftError

_WORD_BOUNDARY = re.compile(r"(.)([A-Z][a-z]+)")
_LOWER_UPPER = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")


def snake_case(name: str) -> str:
    """`appEntitlementId` → `app_entitlement_id`, `D1_D6_AI` → `d1_d6_ai`, `active-users` → `active_users`."""
    name = _WORD_BOUNDARY.sub(r"\1_\2", name)
    name = _LOWER_UPPER.sub(r"\1_\2", name)
    return _NON_WORD.sub("_", name).strip("_").lower()


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """One level of columns from nested objects; lists (of anything) are kept as values."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}_{snake_case(key)}" if prefix else snake_case(key)
        if isinstance(value, Mapping):
            if value:
                out.update(flatten(value, name))
            else:
                out.setdefault(name, None)
        else:
            out[name] = value
    return out


def records_frame(
    records: Iterable[Mapping[str, Any]],
    *,
    base_schema: Mapping[str, pl.DataType] | None = None,
    date_columns: Sequence[str] = (),
    report: str = "",
) -> pl.DataFrame:
    """A frame of flattened records, with the report's known columns always present.

    `base_schema` columns exist even when the response lacks them (as nulls) so a table's core shape
    does not depend on the data of one partition; `date_columns` are parsed from `YYYY-MM-DD`.
    """
    rows = [flatten(r) for r in records]
    frame = blanks_to_nulls(pl.from_dicts(rows, infer_schema_length=None) if rows else pl.DataFrame())
    for column, dtype in (base_schema or {}).items():
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(column))
    frame = parse_dates(frame, report, date_columns)
    # A stable column order: known columns first, then whatever the API sent, sorted.
    known = [c for c in (base_schema or {}) if c in frame.columns]
    rest = sorted(c for c in frame.columns if c not in known)
    return frame.select(known + rest)


def blanks_to_nulls(frame: pl.DataFrame) -> pl.DataFrame:
    """Empty text as null in every text column.

    The API sends `""` for a field that has no value (feedback without a message), and its reference
    gives an empty string no meaning of its own. An empty field of a CSV export is read as null too, so
    the same records store alike whether they came as JSON or as a file, and `IS NULL` finds every
    missing value. Only the empty string is touched: whitespace and list elements stay as sent.
    """
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in text)


def parse_dates(frame: pl.DataFrame, report: str, date_columns: Sequence[str]) -> pl.DataFrame:
    """`YYYY-MM-DD` (or a timestamp's date part) into dates; a value that is no date is type drift."""
    for column in date_columns:
        if column not in frame.columns or frame.schema[column] == pl.Date:
            continue
        text = frame.get_column(column).cast(pl.String)
        parsed = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        bad = text.filter(parsed.is_null() & text.is_not_null())
        if bad.len():
            raise TypeDriftError(report, column, "a date (YYYY-MM-DD)", "text", bad[0])
        frame = frame.with_columns(parsed.alias(column))
    return frame
