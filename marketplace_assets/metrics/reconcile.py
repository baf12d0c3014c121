"""Reconciliations: a metric compared with Atlassian's own figure for the same months and apps.

A `Reconciliation` is one SQL SELECT (one text for DuckDB and PostgreSQL, `:start` and `:end` the months
compared as the window [start, end)) that returns, for every month of the window, the rows compared:

- `month`, `addon_key`, `compared` (what the row compares, e.g. "MRR, all hostings" or "revenue, Cloud"),
- `ours` (the metric's figure, on the comparison's calendar), `atlassian` (Atlassian's figure; null when
  the month was not compared), `tolerance` (the largest difference the known differences of the two
  definitions explain, for this row),
- `missing`: why the month was not compared (Atlassian's side, or ours, lacks data for it), else null.

Every month of the window has at least one row (`addon_key` null when neither side has any app in it).
`reconciliation_result` turns the rows into the asset check's result: passed when every month was
compared and every row is within its tolerance; otherwise a WARN (never blocking) whose description names
each app and month outside tolerance and each month not compared. Metadata: the totals as numbers and a
markdown table of the rows compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

import dagster as dg
import polars as pl

# Rows of the comparison table in the check's metadata: those outside tolerance first, then the rest.
TABLE_ROWS = 300
# Apps and months named in the description, at most; the metadata lists every one.
NAMED = 12


@dataclass(frozen=True)
class Reconciliation:
    """One asset check of a metric against an asset holding Atlassian's figure."""

    name: str
    against: dg.AssetKey
    # Every other table the SQL reads (the lineage the UI shows with the check): Atlassian's asset and
    # the raw assets behind the calendar shift or the tolerance.
    reads: tuple[dg.AssetKey, ...]
    sql: str
    unit: Literal["USD", "count"]
    # Markdown: what is compared, on which calendar, the tolerance and why (the check's description).
    description: str


@dataclass(frozen=True)
class Comparison:
    """The rows compared, with their difference and whether it is within tolerance."""

    rows: pl.DataFrame
    not_compared: dict[date, str]

    @property
    def compared(self) -> pl.DataFrame:
        return self.rows.filter(pl.col("missing").is_null() & pl.col("addon_key").is_not_null())

    @property
    def outside(self) -> pl.DataFrame:
        return self.compared.filter(~pl.col("within"))


def compare(rows: pl.DataFrame) -> Comparison:
    """The SQL's rows with `difference` (ours - Atlassian) and `within` (|difference| <= tolerance)."""
    decimals = pl.Decimal(20, 3)
    frame = rows.with_columns(
        pl.col("ours").cast(decimals),
        pl.col("atlassian").cast(decimals),
        pl.col("tolerance").cast(decimals),
    ).with_columns(difference=pl.col("ours") - pl.col("atlassian"))
    frame = frame.with_columns(within=pl.col("difference").abs() <= pl.col("tolerance")).sort(
        "month", "addon_key", "compared", nulls_last=True
    )
    missing = frame.filter(pl.col("missing").is_not_null()).select("month", "missing").unique("month")
    return Comparison(frame, dict(sorted(missing.iter_rows())))


def reconciliation_result(
    reconciliation: Reconciliation, rows: pl.DataFrame, months: Sequence[date]
) -> dg.AssetCheckResult:
    """The check's result from the SQL's rows for `months` (the window's first days)."""
    comparison = compare(rows)
    compared, outside = comparison.compared, comparison.outside
    # A month the SQL returned no row for cannot be said to agree: it is reported, not passed over.
    absent = [m for m in months if m not in set(comparison.rows["month"].to_list())]
    not_compared = {**comparison.not_compared, **{m: "the query returned no row for it" for m in absent}}
    parts = []
    if outside.height:
        parts.append(_outside_in_words(reconciliation, outside))
    if not_compared:
        parts.append(_not_compared_in_words(not_compared))
    if not parts:
        parts.append(_agreement_in_words(reconciliation, compared, months))
    passed = not outside.height and not not_compared
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=" ".join(parts),
        metadata=_metadata(reconciliation, comparison, not_compared, months),
    )


def not_reconciled(reconciliation: Reconciliation, months: Sequence[date], why: str) -> dg.AssetCheckResult:
    """A WARN when the comparison could not run at all (a table it reads is missing)."""
    span = _span(months)
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"Not reconciled for {span}: {why}. Materialize "
        f"{reconciliation.against.to_user_string()}, the metric and its inputs for these months, then "
        "execute this check again.",
        metadata={"months": span, "months_not_compared": len(months), "rows_compared": 0},
    )


def _outside_in_words(reconciliation: Reconciliation, outside: pl.DataFrame) -> str:
    by_app: dict[str, list[str]] = defaultdict(list)
    for row in outside.iter_rows(named=True):
        difference = _amount(reconciliation, row["difference"], signed=True)
        by_app[row["addon_key"]].append(
            f"{row['month']:%Y-%m} ({row['compared']}: ours {_amount(reconciliation, row['ours'])}, "
            f"Atlassian {_amount(reconciliation, row['atlassian'])}, difference {difference}, "
            f"tolerance {_amount(reconciliation, row['tolerance'])})"
        )
    named = _at_most_named([f"{app} in {', '.join(months)}" for app, months in by_app.items()], "apps")
    return (
        f"Outside tolerance ({outside.height} row(s)): {named}. The tolerance covers "
        "the known differences of the two definitions (see the check's description): a larger "
        "difference is a real one to look into."
    )


def _not_compared_in_words(not_compared: dict[date, str]) -> str:
    reasons = _at_most_named([f"{month:%Y-%m}: {why}" for month, why in not_compared.items()], "months")
    return (
        f"Not compared, so not reconciled ({len(not_compared)} month(s)): {reasons}. "
        "Once the data each reason names is materialized (or the month's last week is over), execute "
        "this check again."
    )


def _at_most_named(items: list[str], noun: str) -> str:
    """The first `NAMED` items, then how many more (the metadata lists them all)."""
    more = f"; and {len(items) - NAMED} more {noun} (see the metadata)" if len(items) > NAMED else ""
    return "; ".join(items[:NAMED]) + more


def _agreement_in_words(
    reconciliation: Reconciliation, compared: pl.DataFrame, months: Sequence[date]
) -> str:
    if not compared.height:
        return f"Both sides have nothing for {_span(months)}: nothing differs."
    largest = compared["difference"].abs().max()
    apps = compared["addon_key"].n_unique()
    return (
        f"Within tolerance: {compared.height} row(s), {apps} app(s), {_span(months)}; the largest "
        f"difference is {_amount(reconciliation, largest)}{' USD' if reconciliation.unit == 'USD' else ''}."
    )


def _metadata(
    reconciliation: Reconciliation,
    comparison: Comparison,
    not_compared: dict[date, str],
    months: Sequence[date],
) -> dict[str, dg.RawMetadataValue]:
    compared, outside = comparison.compared, comparison.outside

    def figure(value: Decimal | None) -> str | int:
        """Money as text with its cents and unit (a float would show 1143809.7); counts as numbers."""
        if reconciliation.unit == "count":
            return int(value or 0)
        return f"{_amount(reconciliation, value or Decimal(0))} USD"

    largest = compared["difference"].abs().max() if compared.height else None
    return {
        "months": _span(months),
        "ours_total": figure(compared["ours"].sum()),
        "atlassian_total": figure(compared["atlassian"].sum()),
        "difference_total": figure(compared["difference"].sum()),
        "largest_difference": figure(largest),
        "rows_compared": compared.height,
        "rows_outside_tolerance": outside.height,
        "months_not_compared": len(not_compared),
        "outside_tolerance": ", ".join(
            sorted({f"{r['addon_key']} {r['month']:%Y-%m}" for r in outside.iter_rows(named=True)})
        )
        or "none",
        "not_compared": "; ".join(f"{m:%Y-%m}: {why}" for m, why in not_compared.items()) or "none",
        "comparison": dg.MetadataValue.md(_table(reconciliation, comparison)),
    }


def _table(reconciliation: Reconciliation, comparison: Comparison) -> str:
    rows = pl.concat([comparison.outside, comparison.compared.filter(pl.col("within"))])
    lines = [
        "| month | app | compared | ours | Atlassian | difference | tolerance | result |",
        "|---|---|---|--:|--:|--:|--:|---|",
    ]
    for row in rows.head(TABLE_ROWS).iter_rows(named=True):
        figures = [
            _amount(reconciliation, row["ours"]),
            _amount(reconciliation, row["atlassian"]),
            _amount(reconciliation, row["difference"], signed=True),
            _amount(reconciliation, row["tolerance"]),
        ]
        result = "within" if row["within"] else "**outside**"
        lines.append(
            f"| {row['month']:%Y-%m} | {row['addon_key']} | {row['compared']} | {' | '.join(figures)} "
            f"| {result} |"
        )
    if rows.height > TABLE_ROWS:
        lines.append(f"\n{rows.height - TABLE_ROWS} more rows within tolerance are not shown.")
    if not rows.height:
        lines.append("| | | nothing compared | | | | | |")
    return "\n".join(lines)


def _amount(reconciliation: Reconciliation, value: Decimal | None, *, signed: bool = False) -> str:
    if value is None:
        return ""
    sign = "+" if signed and value > 0 else ""
    if reconciliation.unit == "count":
        return f"{sign}{value:,.0f}"
    return f"{sign}{value:,.2f}"


def _span(months: Sequence[date]) -> str:
    if not months:
        return "no months"
    first, last = min(months), max(months)
    return f"{first:%Y-%m}" if first == last else f"{first:%Y-%m}..{last:%Y-%m}"
