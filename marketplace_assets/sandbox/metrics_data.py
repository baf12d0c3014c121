"""Simulated feedback metrics, and the filters and pages of the license-event details.

- Feedback metrics count the very items `records.feedback_item` builds, so they agree with
  feedback/details day by day and app by app.
- Sales by dimension are computed from the transactions (`sales_aggregates`); churn, renewal and
  conversion and their events from the license history (`license_events`). The event lists of
  sales/metrics/{saleMetric}/details hold one event per cancellation / renewal / conversion counted
  there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from marketplace_assets.sandbox.data import App, World
from marketplace_assets.sandbox.license_events import event_count, events_day
from marketplace_assets.sandbox.licensing_data import clock
from marketplace_assets.sandbox.records import FEEDBACK_REASONS, FEEDBACK_TYPES, feedback_count, feedback_item

# --- feedback metrics ----------------------------------------------------------------------------

FEEDBACK_METRICS = ("reason", "type")


def feedback_series_names(metric: str) -> list[str]:
    """Series of feedback/metrics/{metric}: every reason key / feedback type, alphabetically."""
    if metric == "reason":
        return sorted(key for key, _, _ in FEEDBACK_REASONS)
    return sorted(name for name, _ in FEEDBACK_TYPES)


def _norm(value: str) -> str:
    return value.lower().replace(" ", "").replace("_", "").replace("-", "")


@lru_cache(maxsize=1 << 16)
def feedback_facets(world: World, app: App, day: date) -> tuple[tuple[str, str, str, str], ...]:
    """(reasonKey, feedbackType, hosting, appEdition) of each feedback item of the app on the day."""
    out = []
    for index in range(feedback_count(world, app, day)):
        item = feedback_item(world, app, day, index)
        out.append(
            (item["reasonKey"], item["feedbackType"], _norm(item["hosting"]), _norm(item["appEdition"]))
        )
    return tuple(out)


def feedback_counts(
    world: World,
    app: App,
    day: date,
    metric: str,
    hosting: frozenset[str] | None = None,
    editions: frozenset[str] | None = None,
) -> dict[str, int]:
    """The day's feedback of an app per reason key (metric=reason) or type, after the filters."""
    out: dict[str, int] = {}
    for reason, kind, host, edition in feedback_facets(world, app, day):
        if (hosting is None or host in hosting) and (editions is None or edition in editions):
            key = reason if metric == "reason" else kind
            out[key] = out.get(key, 0) + 1
    return out


# --- event details paging ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """Filters of the event details. None means "not filtered"; hosting/edition compare loosely."""

    product_ids: frozenset[str] | None = None
    hosting: frozenset[str] | None = None
    editions: frozenset[str] | None = None
    last_updated: date | None = None

    @staticmethod
    def loose(values: Sequence[str]) -> frozenset[str] | None:
        return frozenset(_norm(v) for v in values) if values else None

    @property
    def by_item_fields(self) -> bool:
        return any(f is not None for f in (self.hosting, self.editions, self.last_updated))

    def accepts(self, item: dict[str, Any]) -> bool:
        if self.product_ids is not None and item["productId"] not in self.product_ids:
            return False
        if self.hosting is not None and _norm(item["hosting"]) not in self.hosting:
            return False
        if self.editions is not None and _norm(item["appEdition"]) not in self.editions:
            return False
        return self.last_updated is None or item["lastUpdated"] >= self.last_updated.isoformat()


@lru_cache(maxsize=8192)
def _matching_events(world: World, metric: str, day: date, where: EventFilter, as_of: date) -> int:
    """Matching events of a day (as_of: the clock, which decides which events exist; part of the key)."""
    if where.by_item_fields:
        return sum(1 for item in events_day(world, metric, day) if where.accepts(item))
    ids = where.product_ids
    return sum(
        event_count(world, app, day, metric) for app in world.apps if ids is None or app.product_id in ids
    )


def events_page(
    world: World, metric: str, days: Sequence[date], where: EventFilter, offset: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """(the events at [offset, offset + limit) of the days, whether more follow)."""
    seen, as_of = 0, clock(world)
    page: list[dict[str, Any]] = []
    for day in days:
        count = _matching_events(world, metric, day, where, as_of)
        if count and seen + count > offset:
            if len(page) >= limit:
                return page, True
            items = [item for item in events_day(world, metric, day) if where.accepts(item)]
            skip = max(0, offset - seen)
            room = limit - len(page)
            page.extend(items[skip : skip + room])
            if len(items) - skip > room:
                return page, True
        seen += count
    return page, False
