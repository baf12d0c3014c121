"""The markdown summary on a metric's latest materialization: its headline figures over the last 12
periods (months, or days for a daily metric) and the top apps of the latest period.

The figures are sums of the metric's own rows, exactly (Decimal money stays Decimal until it is
printed with two decimals).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import polars as pl

from marketplace_assets.metrics.metric import APP_COLUMN, Completeness, Metric

PERIODS = 12
TOP_APPS = 5
# More headline columns than this: amounts and counts in two tables.
WIDEST = 8


def summary_markdown(metric: Metric, rows: pl.DataFrame, periods: Sequence[date]) -> str:
    """The summary of `rows` (the metric's rows of `periods`, the last of them the latest) as markdown."""
    period = metric.period_column
    unit = "days" if metric.cadence.value == "daily" else "months"
    headline = [c for c in metric.headline if c in rows.columns]
    flags = [c for c in metric.completeness if c.column in rows.columns]
    totals = (
        rows.group_by(period).agg(
            *(pl.col(c).sum() for c in headline), *(pl.col(f.column).all() for f in flags)
        )
        if rows.height
        else pl.DataFrame(schema={period: pl.Date})
    )
    by_period = {row[period]: row for row in totals.iter_rows(named=True)}
    lines = [
        f"**{metric.key.to_user_string()}: the last {len(periods)} {unit}** (all apps; an empty row is a "
        "period with no rows or not materialized yet)",
    ]
    # Too many columns for one readable table (MRR has 14): amounts, then counts, each by period.
    money = [c for c in headline if c in metric.money]
    tables = [money, [c for c in headline if c not in money]] if len(headline) > WIDEST else [headline]
    for number, columns in enumerate(t for t in tables if t):
        # The completeness column goes with the first table only.
        shown = flags if number == 0 else []
        lines += ["", *_period_table(period, columns, shown, periods, by_period)]
    marked = [f for f in flags if any(by_period.get(day, {}).get(f.column) is False for day in periods)]
    if marked:
        lines += ["", *(f"**{f.incomplete}**: {f.why}." for f in marked)]
        named = ", ".join(f"`{f.column}`" for f in marked)
        which = f"the columns {named} say" if len(marked) > 1 else f"the column {named} says"
        lines.append(
            f"Materialize the raw input's earlier partitions, then these periods again ({which} which rows)."
        )
    ranking = next(iter(headline), None)
    latest = periods[-1] if periods else None
    if ranking is not None and latest is not None and APP_COLUMN in rows.columns:
        lines += ["", *_top_apps(rows.filter(pl.col(period) == latest), ranking, latest)]
    return "\n".join(lines)


def _period_table(
    period: str,
    columns: list[str],
    flags: list[Completeness],
    periods: Sequence[date],
    by_period: dict[date, dict[str, object]],
) -> list[str]:
    """One row per period: its totals of `columns`, and (with `flags`) whether its rows are complete."""
    lines = [
        "| " + " | ".join([period, *columns, *(["complete"] if flags else [])]) + " |",
        "|---|" + "---:|" * len(columns) + ("---|" if flags else ""),
    ]
    for day in periods:
        values = by_period.get(day, {})
        cells = [day.isoformat(), *(_number(values.get(c)) for c in columns)]
        if flags:
            incomplete = [f for f in flags if values.get(f.column) is False]
            cells.append(", ".join(f"**{f.incomplete}**" for f in incomplete) or ("yes" if values else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _top_apps(rows: pl.DataFrame, ranking: str, latest: date) -> list[str]:
    apps = (
        rows.group_by(APP_COLUMN).agg(pl.col(ranking).sum()).sort(ranking, descending=True, nulls_last=True)
    )
    if not apps.height:
        return [f"No rows for {latest.isoformat()}: no top apps."]
    total = apps.get_column(ranking).sum()
    lines = [
        f"**Top apps in {latest.isoformat()}** by {ranking}",
        "",
        f"| app | {ranking} | share |",
        "|---|---:|---:|",
    ]
    for app, value in apps.head(TOP_APPS).iter_rows():
        share = f"{Decimal(value) / Decimal(total):.1%}" if total and value is not None else ""
        lines.append(f"| {app if app is not None else '(no app)'} | {_number(value)} | {share} |")
    if apps.height > TOP_APPS:
        lines.append(f"| {apps.height - TOP_APPS} more app(s) | | |")
    return lines


def _number(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal | float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
