"""The row type of the metrics catalog: one `Metric` per derived asset, from which `assets.py` builds it.

A metric is one SQL SELECT over raw report tables. ``metrics/sql.py`` binds its `:start` and `:end`, a
window [start, end) of one or more whole periods; the SQL returns one row per period and dimensions for
every period in it, the rows a query per period would give (test_metrics_contract.py), so a backfill's
run is one query. The row also names the raw assets the metric reads, each with the partition mapping
that says which of their partitions one of its partitions reads (lineage and staleness in the UI), its
columns with their meaning and type, and the figures that sum a partition up (plotted per partition in
the UI and tabled in the latest materialization's summary).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
import polars as pl

from marketplace_assets.metrics.reconcile import Reconciliation
from marketplace_assets.reports.invariants import Figure, Invariants
from marketplace_assets.reports.report import Cadence

GROUP = "metrics"
APP_COLUMN = "addon_key"
# The types metric SQL casts its results to, the same on DuckDB and PostgreSQL.
DATE, TEXT, COUNT, MONEY, FLAG = "DATE", "VARCHAR", "BIGINT", "DECIMAL(18,2)", "BOOLEAN"


@dataclass(frozen=True)
class Column:
    """What a column means (shown in the UI's column schema) and its SQL type."""

    description: str
    sql_type: str


@dataclass(frozen=True)
class Completeness:
    """A boolean column that says whether a row's figures are complete (the history loaded may be too
    short for them). The rows where it is false are counted per partition (`figure`, for the Plots tab)
    and their periods marked in the summary as `incomplete`, with `why` under the table."""

    column: str
    figure: str
    incomplete: str
    why: str


@dataclass(frozen=True)
class Upstream:
    """A raw asset a metric reads, and which of its partitions one partition of the metric reads."""

    key: dg.AssetKey
    mapping: dg.PartitionMapping
    # In words, for the asset's description: "the daily partitions of the month", ...
    reads: str

    def dep(self) -> dg.AssetDep:
        return dg.AssetDep(self.key, partition_mapping=self.mapping)


@dataclass(frozen=True)
class Metric:
    """One derived metric: its SQL, partitions, inputs, columns and headline figures."""

    name: str
    cadence: Cadence
    # What the metric answers, in markdown: the asset's description (every rule it applies).
    description: str
    sql: str
    # Where the SQL lives, for the description: "marketplace_assets/metrics/revenue.py (REVENUE_SQL)".
    sql_location: str
    # Column -> meaning and type, in the order the SQL returns them; the first is the period (the
    # partition column: the 1st of the month, or the day).
    columns: Mapping[str, Column]
    # The columns that identify a row (the period first): unique, and never null but for the app's
    # dimensions the API may leave empty.
    grain: tuple[str, ...]
    upstream: tuple[Upstream, ...]
    # Headline figures: columns summed per partition. Money is plotted as a number with cents; counts as
    # whole numbers. The first money (else count) column ranks the apps in the summary.
    money: tuple[str, ...] = ()
    counts: tuple[str, ...] = ()
    # How many of its latest partitions the automation keeps up with the raw refreshes (`assets.py`).
    refresh_partitions: int = 1
    # The asset checks that compare this metric with Atlassian's own figures (issue 14, item 5), defined
    # in `reconciliations.py`; `assets.py` builds one check per row.
    reconciliations: tuple[Reconciliation, ...] = ()
    # Boolean columns that say whether a row's figures are complete (see `Completeness`).
    completeness: tuple[Completeness, ...] = ()

    def __post_init__(self) -> None:
        described = set(self.columns)
        declared = {*self.grain, *self.money, *self.counts, *(c.column for c in self.completeness)}
        if not declared <= described:
            raise ValueError(
                f"metric {self.name}: columns {sorted(declared - described)} have no description"
            )
        if not self.grain or self.grain[0] != self.period_column:
            raise ValueError(
                f"metric {self.name}: the grain starts with the period column {self.period_column!r}"
            )

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([GROUP, self.name])

    @property
    def period_column(self) -> str:
        return next(iter(self.columns))

    @property
    def refresh_lookback(self) -> timedelta:
        """The lookback of Dagster's `in_latest_time_window` that covers exactly the latest
        `refresh_partitions` partitions: N days, or 31 x N days for months (N months span at most
        31 x N days and, for any N up to 48, N + 1 months span more)."""
        return timedelta(days=self.refresh_partitions * (1 if self.cadence is Cadence.DAILY else 31))

    @property
    def input_lookback(self) -> timedelta:
        """The lookback, on an input's own partitions, of those whose absence holds the automation back:
        the refreshed periods and the period before them (N + 1 periods of the metric's cadence)."""
        return self.refresh_lookback + timedelta(days=1 if self.cadence is Cadence.DAILY else 31)

    @property
    def headline(self) -> tuple[str, ...]:
        return (*self.money, *self.counts)

    @property
    def figures(self) -> dict[str, Figure]:
        """Per-partition figures: the sum of each headline column over the partition's rows. Money goes
        to the UI as a float (the metadata has no decimal type); the table keeps the exact Decimal."""
        money = {c: pl.col(c).sum().cast(pl.Float64) for c in self.money}
        incomplete = {c.figure: (~pl.col(c.column)).sum() for c in self.completeness}
        return {**money, **{c: pl.col(c).sum() for c in self.counts}, **incomplete}

    @property
    def invariants(self) -> Invariants:
        """One row per grain, the period never null, counts never negative, money a number."""
        return Invariants(
            unique_keys=self.grain,
            identity=(self.period_column,),
            non_negative=self.counts,
            numeric=self.money,
            figures=self.figures,
        )

    def column_schema(self) -> dg.TableSchema:
        return dg.TableSchema(
            columns=[
                dg.TableColumn(name=name, type=column.sql_type, description=column.description)
                for name, column in self.columns.items()
            ]
        )
