"""What the Dagster UI shows about each asset's health: per-partition figures, a run summary, a
preview, freshness.

Per-partition figures matter because a single-run backfill writes many partitions with one output, and
Dagster copies that output's metadata onto every partition: a 3-partition run would plot the run's total
row count three times. So each partition gets its own row count and key figures (`figures_by_partition`,
attached with `context.add_asset_metadata(..., partition_key=...)`), which the UI plots per partition.
The run's own facts (requests, the export, the preview) and a table of the figures over all its
partitions are attached once, to its last partition (`run_summary_markdown`, `figures_markdown`): the
UI plots only the latest 120 partitions, so an old year's backfill is read from that table.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa

from marketplace_assets.partitions import cadence_of
from marketplace_assets.reports.invariants import DistinctCount, Figure
from marketplace_assets.reports.report import Cadence
from marketplace_assets.warehouse.batches import BATCH_ROWS
from marketplace_assets.warehouse.io_manager import partition_cells
from marketplace_assets.warehouse.scope import PartitionScope

__all__ = [
    "cadence_of",
    "figures_by_partition",
    "figures_markdown",
    "freshness_policy_for",
    "preview_markdown",
    "run_summary_markdown",
]

ROW_COUNT = "dagster/row_count"
_PARTITION = "__partition_key"
PREVIEW_ROWS = 5
# DuckDB's memory while counting distinct values; past it, it spills to a temporary directory.
_DISTINCT_MEMORY = "128MB"

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
    frame: pl.DataFrame | pl.LazyFrame,
    partitions_def: dg.PartitionsDefinition,
    partition_keys: list[str],
    partition_expr: str | Mapping[str, str],
    figures: Mapping[str, Figure],
    asset: str = "asset",
) -> dict[str, dict[str, Any]]:
    """partition key -> {dagster/row_count, figure: value}, for every key of the run (empty ones too).

    Works on a frame or lazily on staged batches: rows are matched to partitions through the distinct
    values of the partition columns (the warehouse's own matching), then aggregated in one streaming
    group-by, so only the figures' columns are read and memory does not grow with the rows. Distinct
    counts stream the same rows through DuckDB, which counts them within a fixed memory limit."""
    lazy = frame.lazy()
    schema = lazy.collect_schema()
    columns, cells = partition_cells(asset, partitions_def, partition_expr, partition_keys)
    result: dict[str, dict[str, Any]] = {key: {ROW_COUNT: 0} for key in partition_keys}
    if any(c not in schema for c in columns):
        return result
    values = lazy.select(columns).unique().collect(engine="streaming")
    if not values.height:
        return result
    index = PartitionScope(tuple(columns), tuple(cells)).cell_index(values)
    keys = pl.Series(_PARTITION, [None if i is None else partition_keys[i] for i in index], dtype=pl.String)
    mapping = values.with_columns(keys).drop_nulls(_PARTITION)
    matched = lazy.join(mapping.lazy(), on=columns, how="inner")
    expressions = {n: f for n, f in figures.items() if isinstance(f, pl.Expr)}
    present = {n: e for n, e in expressions.items() if set(e.meta.root_names()) <= set(schema)}
    aggregates = [pl.len().alias(ROW_COUNT), *(e.alias(n) for n, e in present.items())]
    grouped = matched.group_by(_PARTITION).agg(aggregates).collect(engine="streaming")
    for row in grouped.iter_rows(named=True):
        result[row.pop(_PARTITION)] = {ROW_COUNT: row.pop(ROW_COUNT), **_numbers(row)}
    distinct = {n: f for n, f in figures.items() if isinstance(f, DistinctCount) and f.column in schema}
    for row in _distinct_counts(matched, distinct).iter_rows(named=True):
        result[row.pop(_PARTITION)].update(_numbers(row))
    return result


def _distinct_counts(matched: pl.LazyFrame, figures: Mapping[str, DistinctCount]) -> pl.DataFrame:
    """Per partition, the number of distinct non-null values of each figure's column: the rows stream
    batch by batch into DuckDB as Arrow, so memory stays within DuckDB's limit whatever the rows."""
    if not figures:
        return pl.DataFrame()
    columns = list(dict.fromkeys(f.column for f in figures.values()))
    batches = matched.select(_PARTITION, *columns).collect_batches(chunk_size=BATCH_ROWS)
    arrow = (batch.to_arrow() for batch in batches)
    first = next(arrow, None)
    if first is None:
        return pl.DataFrame()
    reader = pa.RecordBatchReader.from_batches(first.schema, _record_batches(first, arrow))
    counts = ", ".join(f"count(DISTINCT {_quoted(f.column)}) AS {_quoted(n)}" for n, f in figures.items())
    with tempfile.TemporaryDirectory(prefix="marketplace-distinct-") as spill, duckdb.connect() as con:
        con.execute(f"SET memory_limit = '{_DISTINCT_MEMORY}'")
        con.execute(f"SET temp_directory = '{spill}'")
        con.register("matched_rows", reader)
        return con.sql(f"SELECT {_quoted(_PARTITION)}, {counts} FROM matched_rows GROUP BY 1").pl()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _record_batches(first: pa.Table, rest: Iterator[pa.Table]) -> Iterator[pa.RecordBatch]:
    yield from first.to_batches()
    for table in rest:
        yield from table.cast(first.schema).to_batches()


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


def figures_markdown(per_partition: Mapping[str, Mapping[str, float | int]]) -> str:
    """The figures of every partition of a run as one markdown table, a row per partition in key order,
    with the run's rows in total. Distinct counts are not added up: a total would count an id seen on
    two days twice."""
    names = list(dict.fromkeys(n for values in per_partition.values() for n in values if n != ROW_COUNT))
    header = ["partition", "rows", *names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for key, values in per_partition.items():
        cells = [_cell(values.get(ROW_COUNT)), *(_cell(values.get(n)) for n in names)]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    total = sum(int(values.get(ROW_COUNT, 0)) for values in per_partition.values())
    lines.append(f"| **all {len(per_partition):,}** | **{total:,}** |" + " |" * len(names))
    return "\n".join(lines)


def run_summary_markdown(
    run_id: str, scope: str, facts: Mapping[str, Any], per_partition: Mapping[str, Mapping[str, Any]]
) -> str:
    """The run's facts once, for the last partition it wrote: its id, partitions and rows, then what the
    step recorded about the run as a whole (API requests, the export and its completeness, ...)."""
    rows = sum(int(values.get(ROW_COUNT, 0)) for values in per_partition.values())
    lines = [
        f"Run `{run_id[:8]}` wrote {scope} ({len(per_partition):,} partitions, {rows:,} rows) in one step.",
        "These facts are the run's, not this partition's; `figures_by_partition` has each partition's.",
        "",
        "| fact | value |",
        "|---|---|",
        *(f"| {name} | {_cell(value)} |" for name, value in facts.items()),
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


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
