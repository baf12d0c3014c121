"""Partner metric queries: each is its own asset `partner_metrics/<name>`.

The defaults below ship with the project. To use your own list, point MARKETPLACE_PARTNER_METRICS at a
YAML file with a top-level list of queries in the same shape, for example:

    - name: installs_by_hosting
      granularity: WEEK
      summary: Active installs by hosting.
      attributes: [APP_KEY, HOSTING]
      metric_fields: [INSTALL_COUNT]

The API pages by *periods* (its `limit`/`offset` count granularity periods, at most 14), and each metric
set has its own latest servable endDate; both are handled in `request_bodies`.
"""

from __future__ import annotations

import calendar
import os
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

MAX_PERIODS_PER_REQUEST = 14
# Which metric set each field belongs to, for the endDate limits below.
FIELD_SETS: dict[str, str] = {
    **dict.fromkeys(
        ("OPENING_MRR", "NEW_MRR", "EXPANSION_MRR", "CONTRACTION_MRR", "REACTIVATED_MRR", "EXPIRED_MRR",
         "CLOSING_MRR", "ARR"),
        "RECURRING_REVENUE",
    ),
    **dict.fromkeys(("INSTALL_COUNT", "USER_COUNT"), "DISTRIBUTIONS"),
    **dict.fromkeys(("PROSPECT", "D1_D6_AI", "AVERAGE_CHURN_DAY"), "FUNNEL_INSIGHTS"),
    "DOWNLOAD_COUNT": "DOWNLOADS",
    **dict.fromkeys(
        ("LIFETIME_GMV", "NON_HARMONISED_FORGE_VERSIONS_LIFETIME_GMV",
         "STANDARD_FORGE_VERSIONS_LIFETIME_GMV"),
        "GMV",
    ),
}  # fmt: skip


def latest_end_date(metric_set: str, today: date) -> date:
    """The last day the API serves for a metric set (docs/api-notes.md, "Partner metrics: the last day
    served")."""
    if metric_set == "RECURRING_REVENUE":
        return today
    if metric_set == "FUNNEL_INSIGHTS":
        return today.replace(day=1) - timedelta(days=1)
    return today - timedelta(days=1)  # DISTRIBUTIONS, DOWNLOADS, GMV: before today


class MetricQuery(BaseModel):
    """One partner-metrics query: what to break down by, which metrics, and an optional filter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    granularity: Literal["DAY", "WEEK", "MONTH"]
    summary: str
    attributes: tuple[str, ...] = ()
    metric_sets: tuple[str, ...] = ()
    metric_fields: tuple[str, ...] = ()
    # The API's filter expression, e.g. {"expr": {"andGroup": [{"filter": {...}}]}}.
    filter: Mapping[str, Any] | None = None

    @field_validator("metric_fields")
    @classmethod
    def _known_fields(cls, fields: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in fields if f not in FIELD_SETS]
        if unknown:
            raise ValueError(f"unknown metric field(s) {unknown}; known: {sorted(FIELD_SETS)}")
        return fields

    @property
    def metric_set_names(self) -> set[str]:
        return set(self.metric_sets) | {FIELD_SETS[f] for f in self.metric_fields}

    def latest_end_date(self, today: date) -> date:
        """The strictest endDate limit among the query's metric sets."""
        return min((latest_end_date(s, today) for s in self.metric_set_names), default=today)

    def body(self, start: date, end: date) -> dict[str, Any]:
        body: dict[str, Any] = {
            "granularity": self.granularity,
            "attributes": [{"name": a} for a in self.attributes],
            "metrics": {
                "metricSets": [{"name": s} for s in self.metric_sets],
                "metricFields": [{"name": f} for f in self.metric_fields],
            },
            "dateRange": {"startDate": start.isoformat(), "endDate": end.isoformat()},
        }
        if self.filter is not None:
            # The schema calls it attributeFilter, every example attributesFilter, and the service
            # ignores one of them: send both so the filter holds whichever it reads.
            body["attributesFilter"] = dict(self.filter)
            body["attributeFilter"] = dict(self.filter)
        return body

    def request_bodies(self, start: date, end: date, today: date) -> Iterator[tuple[dict[str, Any], int]]:
        """(body, period count) per request: the window cut into chunks of at most 14 periods, each
        ending no later than the API serves; nothing for a window entirely past that limit."""
        end = min(end, self.latest_end_date(today))
        periods = list(_period_starts(self.granularity, start, end))
        for i in range(0, len(periods), MAX_PERIODS_PER_REQUEST):
            chunk = periods[i : i + MAX_PERIODS_PER_REQUEST]
            chunk_end = min(end, _period_end(self.granularity, chunk[-1]))
            yield self.body(chunk[0], chunk_end), len(chunk)


def _period_starts(granularity: str, start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day = _period_end(granularity, day) + timedelta(days=1)


def _period_end(granularity: str, start: date) -> date:
    if granularity == "DAY":
        return start
    if granularity == "WEEK":
        return start + timedelta(days=6 - start.weekday())  # weeks run Monday to Sunday here
    return start.replace(day=calendar.monthrange(start.year, start.month)[1])


_INSTALLS = "Active installs (within the commercial compliance boundary) per app and week"
DEFAULT_QUERIES: tuple[MetricQuery, ...] = (
    MetricQuery(
        name="installs_by_parent_software_version",
        granularity="WEEK",
        summary=f"{_INSTALLS}, by host product and its exact version.",
        attributes=("APP_KEY", "PARENT_SOFTWARE", "PARENT_SOFTWARE_VERSION"),
        metric_fields=("INSTALL_COUNT",),
    ),
    MetricQuery(
        name="installs_by_major_version",
        granularity="WEEK",
        summary=f"{_INSTALLS}, by host product and major version (9.x.x).",
        attributes=("APP_KEY", "PARENT_SOFTWARE", "PARENT_SOFTWARE_MAJOR_VERSION"),
        metric_fields=("INSTALL_COUNT",),
    ),
    MetricQuery(
        name="installs_by_minor_version",
        granularity="WEEK",
        summary=f"{_INSTALLS}, by host product and minor version (9.2.x).",
        attributes=("APP_KEY", "PARENT_SOFTWARE", "PARENT_SOFTWARE_MINOR_VERSION"),
        metric_fields=("INSTALL_COUNT",),
    ),
    MetricQuery(
        name="gmv",
        granularity="MONTH",
        summary="Lifetime gross merchandise value per month, with the Forge version-type breakouts.",
        metric_sets=("GMV",),
    ),
    MetricQuery(
        name="recurring_revenue",
        granularity="MONTH",
        summary="Monthly recurring revenue movements (opening, new, expansion, contraction, reactivated, "
        "expired, closing MRR) and ARR per app and month.",
        attributes=("APP_KEY",),
        metric_sets=("RECURRING_REVENUE",),
        metric_fields=(
            "OPENING_MRR", "NEW_MRR", "EXPANSION_MRR", "CONTRACTION_MRR", "REACTIVATED_MRR", "EXPIRED_MRR",
            "CLOSING_MRR", "ARR",
        ),
    ),
)  # fmt: skip


def load_queries(path: str | os.PathLike[str] | None) -> tuple[MetricQuery, ...]:
    """The queries of the YAML file at `path` (the setting MARKETPLACE_PARTNER_METRICS), or the
    defaults when it is None."""
    if not path:
        return DEFAULT_QUERIES
    try:
        raw = yaml.safe_load(Path(path).read_text())
        queries = TypeAdapter(tuple[MetricQuery, ...]).validate_python(raw)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ValueError(f"MARKETPLACE_PARTNER_METRICS={str(path)!r}: {exc}") from exc
    names = [q.name for q in queries]
    if len(set(names)) != len(names):
        raise ValueError(
            f"MARKETPLACE_PARTNER_METRICS={str(path)!r}: query names must be unique, got {names}"
        )
    return queries
