"""Rows of an export file, made ready for their partitions: dated, and cut to the run's window."""

from __future__ import annotations

from collections import Counter

import polars as pl

from marketplace_assets.api.errors import ReportShapeError
from marketplace_assets.reports.fetch import Window
from marketplace_assets.reports.normalize import parse_dates
from marketplace_assets.reports.report import Report


def date_records(report: Report, frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """Give every record its `partition_column` from the first candidate date field it has, and say
    which fields were used. Fails naming the fields found when a record has none of them."""
    candidates = report.export_spec.date_candidates
    column = report.partition_column
    if not candidates or not frame.height or column is None:
        return frame, {}
    present = [c for c in candidates if c in frame.columns]
    frame = parse_dates(frame, report.label, present)  # a candidate that holds no date is type drift
    dates = {c: pl.col(c) for c in present}
    source = pl.lit(None, dtype=pl.String)
    for candidate in reversed(present):  # the first candidate with a date wins
        source = pl.when(dates[candidate].is_not_null()).then(pl.lit(candidate)).otherwise(source)
    dated = frame.with_columns(
        pl.coalesce(list(dates.values())).alias(column) if present else pl.lit(None, pl.Date),
        source.alias("__dated_by"),
    )
    undated = dated.filter(pl.col("__dated_by").is_null()).height
    if undated:
        raise ReportShapeError(
            report.label,
            f"{undated} of {frame.height} record(s) have no date in any of "
            f"{', '.join(candidates)} (the records have the fields {', '.join(frame.columns)})",
        )
    counts = dated.group_by("__dated_by").len()
    used = dict(zip(counts["__dated_by"].to_list(), counts["len"].to_list(), strict=True))
    return dated.drop("__dated_by"), used


def describe_dating(report: Report, used: Counter[str]) -> str:
    """Which date fields dated how many records, in the candidates' order."""
    candidates = report.export_spec.date_candidates
    return ", ".join(f"{c} ({used[c]} rows)" for c in candidates if used[c])


def rows_in_window(frame: pl.DataFrame, column: str, window: Window) -> pl.DataFrame:
    """Rows of the window only: an export filtered by `lastUpdated` (on or after) also returns later
    versions, which belong to later partitions."""
    if not frame.height:
        return frame
    inside = frame[column].is_between(window.start, window.end)
    # Filtering copies every column: skip it when nothing is outside (a million-row export).
    return frame if inside.all() else frame.filter(inside)
