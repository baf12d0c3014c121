"""What must hold of a report's rows, and the figures that summarize a partition.

A report states these next to its catalog row; `checks.py` turns them into Dagster asset checks and
`monitoring.py` into per-partition metadata. Families have defaults (`for_family`), so most rows only add
what is particular to them (which columns are additive, which key is unique).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

# `unique_keys=DIMENSIONS`: every non-numeric column together (time series: scope, app, dataset, series,
# date and the series' attributes) identifies a row.
DIMENSIONS: tuple[str, ...] = ("*",)
TOTAL = pl.col("scope") == "total"


@dataclass(frozen=True)
class DistinctCount:
    """A figure: how many distinct non-null values `column` has in the partition. Counted by DuckDB
    (`monitoring.py`), whose memory stays within its limit: polars keeps one set of values per
    partition, which measured +600 MB for ten million rows."""

    column: str


# A per-partition figure: an aggregate expression over the partition's rows, or a distinct count.
Figure = pl.Expr | DistinctCount


@dataclass(frozen=True)
class Invariants:
    """Invariants of one report's rows. Columns missing from a frame are skipped, never failed."""

    unique_keys: tuple[str, ...] = ()
    # The columns that identify a record and so can never be null (the blocking check
    # `identity_keys_present`); unique keys may include columns that are null on total rows.
    identity: tuple[str, ...] = ()
    # False where the warehouse de-duplicates anyway (merge assets): repeats are reported as a warning.
    duplicates_are_errors: bool = True
    non_negative: tuple[str, ...] = ()
    # On reports with a `scope` column: each total row equals the sum of the app rows of its group
    # (same date, dataset, series and attributes), to the cent. Rates and unique counts are not additive.
    additive: tuple[str, ...] = ()
    # Per-partition key figures for the UI (name -> aggregate expression over the partition's rows);
    # `dagster/row_count` is always there.
    figures: Mapping[str, Figure] = field(default_factory=dict)
    # Columns that must be numbers (amounts summed into figures): text there is type drift, even on a
    # first load (`field_types.py`). Non-negative and additive columns are numbers too.
    numeric: tuple[str, ...] = ()

    def numeric_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.numeric, *self.non_negative, *self.additive)))

    def all_figures(self) -> dict[str, Figure]:
        """The declared figures, plus the total of each additive column (over the total rows)."""
        derived = {f"total_{c}": pl.col(c).filter(TOTAL).sum() for c in self.additive}
        return {**derived, **self.figures}


def time_series(*additive: str, non_negative: tuple[str, ...] = ("count",)) -> Invariants:
    """A time series: one element per dimension combination, counts never negative."""
    return Invariants(unique_keys=DIMENSIONS, non_negative=non_negative, additive=additive)
