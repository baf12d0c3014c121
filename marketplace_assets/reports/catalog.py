"""The report catalog: every report the graph keeps, one row each.

A row says where the report comes from (path under /rest/3), how its response is shaped (family), how
it is partitioned (cadence) and what it means. Assets, partitions and tables are generated from it, so
adding an endpoint is a row here and a sandbox fixture, not a new module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import dagster as dg
import polars as pl

from marketplace_assets.reports import families
from marketplace_assets.reports.families import Fetcher


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class Family(StrEnum):
    TIME_SERIES = "time_series"
    OFFSET_LIST = "offset_list"
    CURSOR_LIST = "cursor_list"


FETCHERS: dict[Family, Fetcher] = {
    Family.TIME_SERIES: families.fetch_time_series,
    Family.OFFSET_LIST: families.fetch_offset_list,
    Family.CURSOR_LIST: families.fetch_cursor_list,
}
_AGGREGATION = {Cadence.WEEKLY: "week", Cadence.MONTHLY: "month"}
REPORTING = "reporting/developer-space/{developerId}"


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

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([self.area, self.name])

    @property
    def label(self) -> str:
        return f"{self.area}/{self.name}"

    @property
    def aggregation(self) -> str:
        return _AGGREGATION.get(self.cadence, "week") if self.cadence else "week"

    @property
    def endpoint(self) -> str:
        """The path as documented, for descriptions and metadata."""
        return "/rest/3/" + self.path.format_map({"developerId": "{developerId}", **self.path_params})

    def resolve_path(self, developer_id: str) -> str:
        values = {"developerId": developer_id, **self.path_params}
        return self.path.format_map({k: quote(v, safe="") for k, v in values.items()})

    @property
    def fetch(self) -> Fetcher:
        return FETCHERS[self.family]


def _evaluations(metric: str) -> Report:
    return Report(
        area="evaluations",
        name=f"by_{metric}",
        path=REPORTING + "/evaluations/{metric}",
        path_params={"metric": metric},
        family=Family.TIME_SERIES,
        cadence=Cadence.WEEKLY,
        summary=(
            f"New app evaluations (trials started) by {metric}, for all apps together (scope=total) and "
            "for each app (scope=app)."
        ),
        window=(
            "One partition per week, Sunday to Saturday; each row's date is the Sunday that starts its week."
        ),
    )


FEEDBACK_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "addon_key": pl.String(),
    "product_id": pl.String(),
    "hosting": pl.String(),
    "app_edition": pl.String(),
    "feedback_type": pl.String(),
    "reason_key": pl.String(),
    "reason": pl.String(),
    "message": pl.String(),
    "app_entitlement_id": pl.String(),
}

LISTING_SCHEMA: dict[str, pl.DataType] = {
    "product_id": pl.String(),
    "app_key": pl.String(),
    "app_name": pl.String(),
    "state": pl.String(),
    "revision": pl.Int64(),
}

REPORTS: tuple[Report, ...] = (
    *(_evaluations(metric) for metric in ("country", "hosting", "partner", "region")),
    Report(
        area="feedback",
        name="details",
        path=REPORTING + "/feedback/details",
        family=Family.OFFSET_LIST,
        records_key="feedback",
        cadence=Cadence.DAILY,
        summary=(
            "Every feedback entry customers left when they uninstalled, unsubscribed from or disabled an "
            "app: type, reason, free-text message, app, hosting and edition."
        ),
        window="One partition per day, by the date the feedback was given.",
        base_schema=FEEDBACK_SCHEMA,
    ),
    Report(
        area="listings",
        name="apps",
        path="product-listing/developer-space/{developerId}",
        family=Family.CURSOR_LIST,
        records_key="items",
        cadence=None,
        params={"includePrivate": True, "limit": 50},
        summary=(
            "The developer space's app listings as they are now: name, key, state, approval, tags, links, "
            "programs and the listing revision."
        ),
        window="Not partitioned: each run replaces the table with the current listings.",
        partition_column=None,
        date_columns=(),
        base_schema=LISTING_SCHEMA,
    ),
)

REPORTS_BY_KEY: dict[dg.AssetKey, Report] = {r.key: r for r in REPORTS}
