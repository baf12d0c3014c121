"""Simulated sales metrics: feedback by reason/type, sales by dimension, churn/conversion/renewal.

Every figure is generated per (app, day) and only then summed, like the evaluations of `data.py`:
- feedback metrics count the very items `records.feedback_item` builds, so they agree with
  feedback/details day by day and app by app;
- sales by dimension start from per-hosting sales of the day (count, refunds, revenue in cents) and
  split them over the dimension's values, so every dimension sums to the same count and revenue;
- churn, renewal and conversion are Cloud-only. Renewal opportunities are the churn "Customers",
  renewals are the customers who did not cancel, conversions come from the day's Cloud evaluations;
  the event lists of sales/metrics/{saleMetric}/details hold one event per cancellation / renewal /
  conversion counted here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from marketplace_assets.sandbox.data import (
    App,
    World,
    daily_mean,
    digest,
    dimension_weights,
    draw_count,
    evaluation_split,
    hosting_weights,
    split,
    stable_uuid,
    today,
    units,
)
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


# --- sales by dimension --------------------------------------------------------------------------

SALES_METRICS = ("country", "hosting", "partner", "region", "tier", "type")
SALES_RATE = 2.0  # sales per app per day at volume 1, before popularity and calendar shape
_PRICE = {"Cloud": 180.0, "Data Center": 3400.0, "Server": 1200.0}
_TIERS = (
    ("10 Users", 30.0),
    ("25 Users", 18.0),
    ("50 Users", 14.0),
    ("100 Users", 12.0),
    ("250 Users", 9.0),
    ("500 Users", 7.0),
    ("1000 Users", 5.0),
    ("2000 Users", 3.0),
    ("5000 Users", 1.5),
    ("Unlimited Users", 0.5),
)
_SALE_TYPES = (("New", 35.0), ("Renewal", 45.0), ("Upgrade", 15.0), ("Downgrade", 5.0))


@dataclass(frozen=True)
class SalesCell:
    """Sales of one series value: transactions, transactions net of refunds, revenue in cents."""

    count: int
    net: int
    cents: int


def sales_weights(metric: str, day: date) -> tuple[tuple[str, float], ...]:
    if metric == "tier":
        return _TIERS
    if metric == "type":
        return _SALE_TYPES
    return dimension_weights(metric, day)


def sales_series_names(metric: str) -> list[str]:
    """Output series of a metric (the partner metric's `_direct` share is never output)."""
    return [name for name, _ in sales_weights(metric, date(2018, 1, 1)) if not name.startswith("_")]


@lru_cache(maxsize=1 << 16)
def sales_by_hosting(world: World, app: App, day: date) -> tuple[tuple[str, SalesCell], ...]:
    """The day's sales of an app per hosting: the base every other dimension splits."""
    weights = hosting_weights(day)
    u = units(world.seed, app.product_id, "sales", day.isoformat(), n=4 * len(weights))
    total_weight = sum(w for _, w in weights)
    out = []
    for i, (hosting, weight) in enumerate(weights):
        count = draw_count(
            daily_mean(world, app, SALES_RATE * weight / total_weight, day), u[4 * i], u[4 * i + 1]
        )
        refunds = min(count, draw_count(count * 0.03, u[4 * i + 2], u[4 * i + 3]))
        price = _PRICE[hosting] * (0.7 + 0.6 * u[4 * i + 2])
        out.append((hosting, SalesCell(count, count - refunds, round((count - refunds) * price * 100))))
    return tuple(out)


def sales_split(world: World, app: App, day: date, metric: str) -> dict[str, SalesCell]:
    """The day's sales of an app split over the metric's values; sums equal the hosting base."""
    base = sales_by_hosting(world, app, day)
    if metric == "hosting":
        return dict(base)
    count = sum(cell.count for _, cell in base)
    net = sum(cell.net for _, cell in base)
    cents = sum(cell.cents for _, cell in base)
    weights = sales_weights(metric, day)
    n = len(weights)
    jitter = units(world.seed, app.product_id, "sales", metric, day.isoformat(), n=2 * n)
    counts = split(count, [w for _, w in weights], jitter[:n])
    revenue = split(cents, [float(c) for c in counts], jitter[n:]) if count else [0] * n
    # Refunds go to the values in a stable order, never more than a value's own transactions.
    refunds = count - net
    nets = list(counts)
    for i in sorted(range(n), key=lambda k: jitter[k]):
        take = min(refunds, nets[i])
        nets[i] -= take
        refunds -= take
    return {
        name: SalesCell(c, m, r) for (name, _), c, m, r in zip(weights, counts, nets, revenue, strict=True)
    }


# --- churn, renewal, conversion ------------------------------------------------------------------

DATASETS = ("Monthly", "Annual")
CONVERSION_TYPES = ("Net new", "Upgrade")
SALE_METRICS = ("churn", "conversion", "renewal")
_CUSTOMER_RATE = {"Monthly": 2.5, "Annual": 0.35}  # renewal opportunities per app per day at volume 1
_CANCEL_SHARE = {"Monthly": 0.06, "Annual": 0.12}
_CONVERSION_SHARE = {"Net new": 0.25, "Upgrade": 0.45}


@lru_cache(maxsize=1 << 16)
def churn_day(world: World, app: App, day: date) -> tuple[tuple[int, int], ...]:
    """(customers with a renewal opportunity, cancellations) per dataset (Monthly, Annual)."""
    u = units(world.seed, app.product_id, "churn", day.isoformat(), n=4 * len(DATASETS))
    out = []
    for i, dataset in enumerate(DATASETS):
        customers = draw_count(daily_mean(world, app, _CUSTOMER_RATE[dataset], day), u[4 * i], u[4 * i + 1])
        cancelled = min(customers, draw_count(customers * _CANCEL_SHARE[dataset], u[4 * i + 2], u[4 * i + 3]))
        out.append((customers, cancelled))
    return tuple(out)


@lru_cache(maxsize=1 << 16)
def conversion_day(world: World, app: App, day: date) -> tuple[tuple[int, int], ...]:
    """(Cloud evaluations, conversions) per conversion type (Net new, Upgrade)."""
    cloud = evaluation_split(world, app, day, "hosting")["Cloud"]
    u = units(world.seed, app.product_id, "conversion", day.isoformat(), n=6)
    evaluations = split(cloud, [80.0, 20.0], u[:2])
    out = []
    for i, (kind, evals) in enumerate(zip(CONVERSION_TYPES, evaluations, strict=True)):
        converted = min(evals, draw_count(evals * _CONVERSION_SHARE[kind], u[2 + 2 * i], u[3 + 2 * i]))
        out.append((evals, converted))
    return tuple(out)


def event_count(world: World, app: App, day: date, metric: str) -> int:
    """Events of sales/metrics/{metric}/details for the app on the day (agrees with the aggregates)."""
    if metric == "churn":
        return sum(cancelled for _, cancelled in churn_day(world, app, day))
    if metric == "renewal":
        return sum(customers - cancelled for customers, cancelled in churn_day(world, app, day))
    return sum(converted for _, converted in conversion_day(world, app, day))


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    first_of_next = date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
    return date(year, month + 1, min(day.day, (first_of_next - timedelta(days=1)).day))


def _entitlement_number(raw: bytes) -> str:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    d = [str(b % 10) for b in raw[:6]]
    a = [letters[b % len(letters)] for b in raw[6:13]]
    return f"E-{''.join(d[:3])}-{''.join(a[:3])}-{''.join(a[3:6])}-{''.join(d[3:5])}{a[6]}"


def _transaction_id(raw: bytes, eu: bool) -> str:
    digits = "".join(str(b % 10) for b in raw[:9])
    return f"IN-{'EU-' if eu else ''}{digits[:3]}-{digits[3:6]}-{digits[6:9]}"


def _event(world: World, app: App, day: date, metric: str, index: int, months: int) -> dict[str, Any]:
    seed, key = world.seed, (app.product_id, metric, "event", day.isoformat(), index)
    u = units(seed, *key, n=4)
    if metric == "conversion":  # the first paid period starts on the conversion
        start, end = day, _add_months(day, months)
    else:  # churn and renewal happen at the end of a paid period
        start, end = _add_months(day, -months), day
    entitlement = {
        "appEntitlementId": stable_uuid(seed, *key, "entitlement"),
        "appEntitlementNumber": _entitlement_number(digest(seed, *key, "number", size=16)),
        "cloudId": stable_uuid(seed, app.product_id, "cloud", int(u[0] * 5000)),
        "maintenanceStartDate": start.isoformat(),
        "maintenanceEndDate": end.isoformat(),
        "monthsValid": months,
    }
    return {
        "addonKey": app.addon_key,
        "productId": app.product_id,
        "addonName": app.name,
        "hosting": "Cloud",
        "appEdition": "Advanced" if u[1] < 0.25 else "Standard",
        "lastUpdated": min(day + timedelta(days=int(u[2] * 10)), today()).isoformat(),
        "eventDate": day.isoformat(),
        "transactionId": _transaction_id(digest(seed, *key, "transaction", size=9), u[3] < 0.5),
        # Churn has no license details (sample); conversion and renewal samples nest the license there.
        "licenseDetails": None if metric == "churn" else dict(entitlement),
        **entitlement,
    }


@lru_cache(maxsize=512)
def events_day(world: World, metric: str, day: date) -> tuple[dict[str, Any], ...]:
    """Every app's events of the day, sorted by (addonKey, appEntitlementId). Treat as read-only."""
    items = []
    for app in world.apps:
        index = 0
        if metric == "conversion":
            for _ in range(event_count(world, app, day, metric)):
                u = units(world.seed, app.product_id, metric, "billing", day.isoformat(), index, n=1)[0]
                items.append(_event(world, app, day, metric, index, 12 if u < 0.3 else 1))
                index += 1
            continue
        for dataset, (customers, cancelled) in zip(DATASETS, churn_day(world, app, day), strict=True):
            for _ in range(cancelled if metric == "churn" else customers - cancelled):
                items.append(_event(world, app, day, metric, index, 12 if dataset == "Annual" else 1))
                index += 1
    return tuple(sorted(items, key=lambda item: (item["addonKey"], item["appEntitlementId"])))


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
def _matching_events(world: World, metric: str, day: date, where: EventFilter) -> int:
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
    seen = 0
    page: list[dict[str, Any]] = []
    for day in days:
        count = _matching_events(world, metric, day, where)
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
