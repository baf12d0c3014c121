"""What a report is: one row of the catalog, and the vocabulary it is written in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import dagster as dg
import polars as pl

from marketplace_assets.api.exports import ExportKind
from marketplace_assets.reports.invariants import Invariants

if TYPE_CHECKING:  # fetch.py imports this module
    from marketplace_assets.reports.fetch import Window


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"  # Sunday to Saturday, as the reporting API dates weeks
    MONTHLY = "monthly"


class Family(StrEnum):
    """The shape of a report's response; each has one parser and one request shape (`fetch.py`)."""

    TIME_SERIES = "time_series"  # total/addons → datasets → series → elements
    OFFSET_LIST = "offset_list"  # `_links.next` pages of records under a key
    CURSOR_LIST = "cursor_list"  # `links.next` pages of `items`
    SCOPED_RECORDS = "scoped_records"  # total + per-app blocks, each with a list of per-month records
    INSIGHTS = "insights"  # per month: insightsType → {group, usersDistribution}
    PERIOD_DETAILS = "period_details"  # `details` records that aggregate the requested window
    APPEARANCES = "appearances"  # search appearances: total + per-app elements
    CSV_EXPORT = "csv_export"  # a CSV file for one `date`
    ASYNC_EXPORT = "async_export"  # started, polled, then downloaded as a file (`api/exports.py`)


@dataclass(frozen=True)
class ExportSpec:
    """How an export-backed report is fetched: which export, with which filters for a window, how far
    its sensor looks back, and how records without the partition column are dated."""

    kind: ExportKind
    # How a partition window becomes the export's filters.
    params: Callable[[Window], dict[str, Any]]
    lookback_days: int = 3  # the sensor re-exports this many recent days for late corrections
    # Records with no `partition_column` are dated by the first of these fields they have.
    date_candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    area: str
    name: str
    path: str  # under /rest/3; {developerId} is filled in, other {placeholders} from path_params
    family: Family
    cadence: Cadence | None
    summary: str  # the business meaning, shown as the asset's description
    window: str = ""  # the window semantics, in words
    records_key: str | None = None
    path_params: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    partition_column: str | None = "date"
    date_columns: tuple[str, ...] = ("date",)
    base_schema: Mapping[str, pl.DataType] = field(default_factory=dict)
    # The response aggregates over the requested window (top keywords, appearances, ...), so a range
    # cannot be split afterwards: the run asks once per partition period and stamps each answer with
    # its period's start in `date` (docs/api-notes.md, "Windows and aggregation").
    per_period: bool = False
    # What must hold of the rows (asset checks) and the figures plotted per partition.
    invariants: Invariants = field(default_factory=Invariants)
    # Set for Family.ASYNC_EXPORT: the export that delivers the rows.
    export: ExportSpec | None = None
    # Empty: a run replaces its partitions. Set: rows are merged on these keys, never deleting a
    # stored version (the write mode).
    merge_keys: tuple[str, ...] = ()

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([self.area, self.name])

    @property
    def label(self) -> str:
        return f"{self.area}/{self.name}"

    @property
    def aggregation(self) -> str:
        return "month" if self.cadence == Cadence.MONTHLY else "week"

    @property
    def endpoint(self) -> str:
        """The path as documented, for descriptions and metadata."""
        return "/rest/3/" + self.path.format_map({"developerId": "{developerId}", **self.path_params})

    @property
    def export_spec(self) -> ExportSpec:
        """The export of an export-backed report; refuses any other report."""
        if self.export is None:
            raise ValueError(f"{self.label} is not an export-backed report")
        return self.export

    @property
    def request(self) -> str:
        """The request that fetches the report, as a description shows it."""
        return f"{'POST' if self.family is Family.ASYNC_EXPORT else 'GET'} {self.endpoint}"

    def resolve_path(self, developer_id: str, **values: str) -> str:
        filled = {"developerId": developer_id, **self.path_params, **values}
        return self.path.format_map({k: quote(v, safe="") for k, v in filled.items()})
