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
from marketplace_assets.warehouse.io_manager import partition_cells
from marketplace_assets.warehouse.scope import PartitionScope

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
    asset: str = "asset",
) -> dict[str, dict[str, Any]]:
    """partition key -> {dagster/row_count, figure: value}, for every key of the run (empty ones too)."""
    parts = _split(frame, partitions_def, partition_keys, partition_expr, asset)
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
    asset: str,
) -> dict[str, pl.DataFrame]:
    """The frame's rows by partition key, through the warehouse's own partition matching."""
    columns, cells = partition_cells(asset, partitions_def, partition_expr, keys)
    if not frame.height or any(c not in frame.columns for c in columns):
        return {}
    # One cell per key, in key order: a row's cell index is its partition.
    index = PartitionScope(tuple(columns), tuple(cells)).cell_index(frame)
    tagged = frame.with_columns(index.alias("_partition"))
    return {
        keys[cell]: part.drop("_partition")
        for (cell,), part in tagged.partition_by("_partition", as_dict=True).items()
        if cell is not None
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
