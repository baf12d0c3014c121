"""Simulated monthly insights: benchmarks, customer insights and app requests.

Benchmarks are built from the sandbox's own daily figures, so they agree with the other reports:
- the churn benchmark's churned licenses of a month are the churn report's cancellations (Monthly and
  Annual) of that month;
- the evaluation benchmark counts the month's Cloud evaluations of evaluations/hosting;
- the sales benchmark is the month's Cloud vendor revenue (the exact sum of vendorAmount of the Cloud
  transactions: the partner's share, without Atlassian's).
Growth rates, percentiles and the Marketplace benchmarks are hashes of (seed, month, base product).

Publication lags as on the live service: the evaluation benchmark and customer insights have data up
to the last full month, the churn benchmark stops 2 full months earlier, and the sales benchmark only
covers the months before its last quarterly update (Feb, May, Aug, Nov).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from marketplace_assets.sandbox.data import (
    DATA_START,
    App,
    World,
    clamp_window,
    daily_mean,
    days,
    draw_count,
    popularity,
    split,
    today,
    unit,
    units,
)
from marketplace_assets.sandbox.evaluation_data import evaluation_split
from marketplace_assets.sandbox.license_events import churn_day
from marketplace_assets.sandbox.records import application_key
from marketplace_assets.sandbox.sales_aggregates import sales_by_hosting

SALES_UPDATE_MONTHS = (2, 5, 8, 11)

# --- months --------------------------------------------------------------------------------------


def add_months(first: date, months: int) -> date:
    """The 1st of the month `months` after the month of `first`."""
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def month_days(first: date) -> tuple[date, date]:
    return first, add_months(first, 1) - timedelta(days=1)


def months_between(start: date, end: date, last: date) -> list[date]:
    """The 1sts of the months that overlap [start, end], from DATA_START's month up to month `last`."""
    lo = max(start.replace(day=1), DATA_START.replace(day=1))
    hi = min(end.replace(day=1), last)
    if start > end or lo > hi:
        return []
    out = [lo]
    while out[-1] < hi:
        out.append(add_months(out[-1], 1))
    return out


def last_full_month() -> date:
    return add_months(today().replace(day=1), -1)


def last_churn_benchmark_month() -> date:
    """No churn benchmark for the last 2 full months: it lags 2-3 months."""
    return add_months(today().replace(day=1), -3)


def last_sales_benchmark_month() -> date:
    """The sales benchmark is published in Feb, May, Aug and Nov, each time up to the month before."""
    month = today().replace(day=1)
    while month.month not in SALES_UPDATE_MONTHS:
        month = add_months(month, -1)
    return add_months(month, -1)


def _sum_days(first: date, per_day: Callable[[date], int]) -> int:
    window = clamp_window(*month_days(first))
    return sum(per_day(day) for day in days(*window)) if window else 0


def _growth(current: float, previous: float) -> float:
    return round((current - previous) / previous * 100, 2) if previous else 0.0


def _signed(seed: int, *parts: object, spread: float = 15.0) -> float:
    return round(spread * (2 * unit(seed, *parts) - 1), 2)


def _percentile(world: World, app: App | None, *parts: object) -> int:
    base = 70 + 25 * (popularity(world, app) - 0.4) / 1.2 if app else 95
    return max(1, min(100, round(base + 8 * (unit(world.seed, *parts) - 0.5))))


# --- churn benchmark -----------------------------------------------------------------------------


@lru_cache(maxsize=1 << 14)
def churn_month(world: World, app: App, first: date) -> tuple[int, int]:
    """(churned licenses, total licenses) of an app in a month."""
    churned = _sum_days(first, lambda d: sum(c for _, c in churn_day(world, app, d)))
    monthly = _sum_days(first, lambda d: churn_day(world, app, d)[0][0])
    annual = _sum_days(first, lambda d: churn_day(world, app, d)[1][0])
    return churned, monthly + 12 * annual  # each annual customer has its opportunity once a year


def churn_benchmark(world: World, app: App, first: date) -> dict[str, Any]:
    churned, total = churn_month(world, app, first)
    rate = round(churned / total * 100, 3) if total else 0.0
    u = units(world.seed, app.product_id, "churn-benchmark", first.isoformat(), n=2)
    bench = units(world.seed, application_key(world, app), "churn-benchmark", first.isoformat(), n=2)
    rate_benchmark = round(1.0 + 3.0 * bench[0], 2)
    return {
        "year": f"{first.year:04d}",
        "month": f"{first.month:02d}",
        "churnedLicenses": churned,
        "totalLicenses": total,
        "churnRate": rate,
        "isolatedChurnRate": round(rate * (0.35 + 0.3 * u[0]), 3),
        "churnRateBenchmark": rate_benchmark,
        "isolatedChurnRateBenchmark": round(rate_benchmark * (0.5 + 0.3 * bench[1]), 2),
    }


# --- evaluation and sales benchmarks -------------------------------------------------------------


@lru_cache(maxsize=1 << 14)
def cloud_evaluations(world: World, app: App, first: date) -> int:
    return _sum_days(first, lambda d: evaluation_split(world, app, d, "hosting")["Cloud"])


@lru_cache(maxsize=1 << 14)
def vendor_sales_cents(world: World, app: App, first: date) -> int:
    """The month's Cloud vendor revenue (vendorAmount, already the partner's share) in cents."""
    return _sum_days(first, lambda d: dict(sales_by_hosting(world, app, d))["Cloud"].cents)


MonthValue = Callable[[App, date], int]


def _ytd(value: MonthValue, apps: Sequence[App], first: date) -> int:
    return sum(value(app, date(first.year, m, 1)) for app in apps for m in range(1, first.month + 1))


def _figures(value: MonthValue, apps: Sequence[App], first: date) -> tuple[int, int, int, int]:
    """(this month, previous month, year to date, year to date a year earlier), summed over apps."""
    current = sum(value(app, first) for app in apps)
    previous = sum(value(app, add_months(first, -1)) for app in apps)
    return current, previous, _ytd(value, apps, first), _ytd(value, apps, add_months(first, -12))


def evaluation_benchmark(world: World, apps: Sequence[App], first: date, per_app: bool) -> dict[str, Any]:
    """One month of the evaluation benchmark, for one app (per_app) or the vendor (all `apps`)."""
    app = apps[0] if per_app else None
    scope = app.product_id if app else "vendor"
    bench_scope = application_key(world, app) if app else "all-partners"
    suffix = "AllAppsOnBaseProduct" if per_app else "AllPartners"
    month = first.isoformat()
    current, previous, ytd, last_year = _figures(lambda a, m: cloud_evaluations(world, a, m), apps, first)
    return {
        "date": month,
        "evaluationCount": current,
        "previousMonthEvaluationCount": previous,
        "evaluationMoMGrowth": _growth(current, previous),
        "evaluationPercentile": _percentile(world, app, scope, "eval-pct", month),
        f"evaluationMoMGrowthBenchmark{suffix}": _signed(world.seed, bench_scope, "eval-mom", month),
        "evaluationCountYTD": ytd,
        "evaluationCountYTDLastYear": last_year,
        "evaluationYTDYoYGrowth": _growth(ytd, last_year),
        "evaluationYTDPercentile": _percentile(world, app, scope, "eval-ytd-pct", month),
        f"evaluationYTDYoYGrowthBenchmark{suffix}": _signed(world.seed, bench_scope, "eval-yoy", month),
    }


def sales_benchmark(world: World, apps: Sequence[App], first: date, per_app: bool) -> dict[str, Any]:
    """One month of the sales benchmark (money in dollars, summed in cents)."""
    app = apps[0] if per_app else None
    scope = app.product_id if app else "vendor"
    month = first.isoformat()
    current, previous, ytd, last_year = _figures(lambda a, m: vendor_sales_cents(world, a, m), apps, first)
    return {
        "date": month,
        "sale": current / 100,
        "previousMonthSale": previous / 100,
        "salesMoMGrowth": _growth(current, previous),
        "salesPercentile": _percentile(world, app, scope, "sales-pct", month),
        "salesMoMGrowthBenchmarkAllPartners": _signed(world.seed, "all-partners", "sales-mom", month),
        "salesYTD": ytd / 100,
        "salesYTDLastYear": last_year / 100,
        "salesYTDYoYGrowth": _growth(ytd, last_year),
        "salesYTDPercentile": _percentile(world, app, scope, "sales-ytd-pct", month),
        "salesYTDYoYGrowthBenchmarkAllPartners": _signed(world.seed, "all-partners", "sales-yoy", month),
    }


# --- customer insights ---------------------------------------------------------------------------

INSIGHT_GROUPS: dict[str, tuple[tuple[str, float], ...]] = {
    "region": (("apac", 12.0), ("emea", 38.0), ("americas", 32.0), ("unknown", 18.0)),
    "edition": (("premium", 20.0), ("enterprise", 4.0), ("standard", 30.0), ("free", 46.0)),
    "activeUsers": (("paid", 55.0), ("non-paid", 45.0)),
}
INSIGHT_PRODUCTS = (("Confluence", 60.0), ("Jira", 40.0))
INSIGHT_TIERS = (("Evaluation", 2.0), ("1-10", 68.0), ("11-100", 18.0), ("101-1000", 8.0), ("1000+", 4.0))
_GROUP_KEYS = ("region", "activeUsers", "edition", "product", "tier")


def users_in_month(world: World, first: date) -> int:
    """Active users of all the vendor's apps in a month (grows over the years, scales with volume)."""
    wednesday = first + timedelta(days=(2 - first.weekday()) % 7)  # a weekday: no weekend dip
    shape = 0.9 + 0.2 * unit(world.seed, "insights-users", first.isoformat())
    return sum(round(daily_mean(world, app, 900.0, wednesday) * shape) for app in world.apps)


def _insight(group: dict[str, str], count: int, total: int, benchmark: float) -> dict[str, Any]:
    return {
        "value": {
            "group": {**group, **{k: None for k in _GROUP_KEYS if k not in group}},
            "usersDistribution": {
                "usersCount": count,
                "usersPercent": count / total * 100 if total else 0.0,
                "usersMarketplaceBenchmark": benchmark,
            },
        }
    }


def _distribution(
    world: World, first: date, kind: str, weights: Sequence[tuple[str, float]], total: int, *scope: str
) -> list[tuple[str, int, float]]:
    month = first.isoformat()
    jitter = units(world.seed, "insights", kind, *scope, month, n=2 * len(weights))
    parts = split(total, [w for _, w in weights], jitter[: len(weights)])
    return [
        (name, part, 0.5 + 1.5 * jitter[len(weights) + i])
        for i, ((name, _), part) in enumerate(zip(weights, parts, strict=True))
    ]


def insights_month(world: World, kind: str, first: date, products: Sequence[str]) -> list[dict[str, Any]]:
    """The insightsType list of one month: usersPercent sums to 100 (per product for tiers)."""
    total = users_in_month(world, first)
    if kind != "tier":
        return [
            _insight({kind: name}, count, total, bench)
            for name, count, bench in _distribution(world, first, kind, INSIGHT_GROUPS[kind], total)
        ]
    per_product = _distribution(world, first, "product", INSIGHT_PRODUCTS, total)
    rows: list[list[dict[str, Any]]] = []
    for product, product_total, _ in per_product:
        if product not in products:
            continue
        tiers = _distribution(world, first, "tier", INSIGHT_TIERS, product_total, product)
        rows.append(
            [_insight({"product": product, "tier": t}, n, product_total, bench) for t, n, bench in tiers]
        )
    # Interleaved tier by tier (Confluence then Jira), as the reference sample lists them.
    return [row[i] for i in range(len(INSIGHT_TIERS)) for row in rows]


# --- app requests and approvals ------------------------------------------------------------------


def requests_day(world: World, app: App, day: date) -> tuple[int, int]:
    """(install requests sent to admins, requests approved) of an app on a day."""
    u = units(world.seed, app.product_id, "app-requests", day.isoformat(), n=4)
    requests = draw_count(daily_mean(world, app, 0.6, day), u[0], u[1])
    return requests, min(requests, draw_count(requests * 0.45, u[2], u[3]))


def requests_record(first: date, requests: int, approved: int) -> dict[str, Any]:
    return {
        "date": first.isoformat(),
        "appRequests": requests,
        "appRequestsApproved": approved,
        "appRequestsApprovalRate": approved / requests * 100 if requests else 0.0,
    }


def requests_by_month(world: World, app: App, start: date, end: date) -> dict[date, tuple[int, int]]:
    """Requests and approvals of the days in [start, end] (clamped), summed per month."""
    window = clamp_window(start, end)
    out: dict[date, tuple[int, int]] = {}
    for day in days(*window) if window else ():
        first = day.replace(day=1)
        requests, approved = requests_day(world, app, day)
        old = out.get(first, (0, 0))
        out[first] = (old[0] + requests, old[1] + approved)
    return out
