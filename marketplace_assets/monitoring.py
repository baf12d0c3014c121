"""What the Dagster UI shows about each asset's health: per-partition figures, a preview, freshness.

Per-partition figures matter because a single-run backfill writes many partitions with one output, and
Dagster copies that output's metadata onto every partition: a 3-partition run would plot the run's total
row count three times. So each partition gets its own row count and key figures (`figures_by_partition`,
attached with `context.add_asset_metadata(..., partition_key=...)`), which the UI plots per partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.partitions import cadence_of
from marketplace_assets.reports.report import Cadence

__all__ = ["cadence_of", "figures_by_partition", "freshness_policy_for", "preview_markdown"]

ROW_COUNT = "dagster/row_count"
PREVIEW_ROWS = 5

# Freshness by cadence: the schedules refresh each cadence once per period (see schedules.py). Warn when
# a refresh is a little late, fail when one was missed entirely. Times are since the last materialization.
_FRESHNESS = {
    Cadence.DAILY: (timedelta(hours=27), timedelta(hours=51)),
    Cadence.WEEKLY: (timedelta(days=8), timedelta(days=15)),
    Cadence.MONTHLY: (timedelta(days=32), timedelta(days=63)),
}


def freshness_policy_for(partitions_def: dg.PartitionsDefinition | None) -> dg.FreshnessPolicy:
    """The policy for the asset's cadence; unpartitioned assets are refreshed daily."""
    warn, fail = _FRESHNESS[cadence_of(partitions_def) or Cadence.DAILY]
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)


def figures_by_partition(
    frame: pl.DataFrame,
    partitions_def: dg.PartitionsDefinition,
    partition_keys: list[str],
    partition_expr: str | Mapping[str, str],
    figures: Mapping[str, pl.Expr],
) -> dict[str, dict[str, Any]]:
    """partition key -> {dagster/row_count, figure: value}, for every key of the run (empty ones too)."""
    parts = _split(frame, partitions_def, partition_keys, partition_expr)
    result: dict[str, dict[str, Any]] = {}
    for key in partition_keys:
        rows = parts.get(key)
        values: dict[str, Any] = {ROW_COUNT: 0 if rows is None else rows.height}
        if rows is not None and rows.height and figures:
            present = {n: e for n, e in figures.items() if set(e.meta.root_names()) <= set(rows.columns)}
            if present:
                values |= _numbers(rows.select(**present).row(0, named=True))
        result[key] = values
    return result


def preview_markdown(frame: pl.DataFrame, rows: int = PREVIEW_ROWS) -> str:
    """The first rows as a markdown table, long texts cut, for the materialization's metadata."""
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_cols=-1,
        tbl_rows=rows,
        fmt_str_lengths=40,
        tbl_width_chars=65_000,
    ):
        return str(frame.head(rows))


def _split(
    frame: pl.DataFrame,
    partitions_def: dg.PartitionsDefinition,
    keys: list[str],
    partition_expr: str | Mapping[str, str],
) -> dict[str, pl.DataFrame]:
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition) and isinstance(partition_expr, str):
        return _split_by_time(frame, partitions_def, keys, partition_expr)
    if not isinstance(partitions_def, dg.MultiPartitionsDefinition) or not isinstance(
        partition_expr, Mapping
    ):
        column = str(partition_expr)
        if column not in frame.columns:
            return {}
        return {k: frame.filter(pl.col(column).cast(pl.String) == k) for k in keys}
    parts = {}
    for key in keys:
        by_dimension = partitions_def.get_partition_key_from_str(key).keys_by_dimension
        mask = pl.lit(True)
        for dimension in partitions_def.partitions_defs:
            column, value = partition_expr[dimension.name], by_dimension[dimension.name]
            if column not in frame.columns:
                return {}
            if isinstance(dimension.partitions_def, dg.TimeWindowPartitionsDefinition):
                window = dimension.partitions_def.time_window_for_partition_key(value)
                start, end = window.start.date(), window.end.date() - timedelta(days=1)
                mask &= pl.col(column).cast(pl.Date).is_between(start, end)
            else:
                mask &= pl.col(column).cast(pl.String) == value
        parts[key] = frame.filter(mask)
    return parts


def _split_by_time(
    frame: pl.DataFrame, partitions_def: dg.TimeWindowPartitionsDefinition, keys: list[str], column: str
) -> dict[str, pl.DataFrame]:
    if column not in frame.columns or not frame.height:
        return {}
    # One pass: each row's partition is the last partition start at or before its date.
    starts = [partitions_def.time_window_for_partition_key(k).start.date() for k in keys]
    order = sorted(range(len(keys)), key=lambda i: starts[i])
    sorted_starts = [starts[i] for i in order]
    dates = frame.get_column(column).cast(pl.Date)
    slots = pl.Series(sorted_starts, dtype=pl.Date).search_sorted(dates, side="right").cast(pl.Int64) - 1
    tagged = frame.with_columns(slots.alias("_partition"))
    return {
        keys[order[slot]]: part.drop("_partition")
        for (slot,), part in tagged.partition_by("_partition", as_dict=True).items()
        if slot is not None and slot >= 0
    }


def _numbers(values: Mapping[str, Any]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for name, value in values.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            out[name] = value
        elif isinstance(value, float):
            out[name] = round(value, 2)
    return out
