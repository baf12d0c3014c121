"""Partner-metrics records: deterministic values per app, period and attribute combination.

Each app's metrics for a period are computed first (stocks such as installs at the period's last day
in the window, flows such as downloads over its days in the window), then split over the
combinations of the attributes the query breaks down or filters by, with per-app shares that do not
depend on the period. The filter keeps combinations; the records group what is left by the asked
attributes. So a total equals the sum of its breakdown.

Recurring revenue (MRR, its movements and ARR) is not generated: it is computed from the sandbox's own
transactions by the MRR rule, per app and hosting (`recurring_revenue`), so opening MRR equals the
previous month's closing MRR and an app's MRR is the sum of its hostings'.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from marketplace_assets.sandbox.data import (
    DATA_START,
    App,
    World,
    daily_mean,
    draw_count,
    popularity,
    split,
    unit,
    units,
)
from marketplace_assets.sandbox.licensing_data import clock
from marketplace_assets.sandbox.partner_metrics_schema import (
    APP_VERSION_TYPES,
    ATTRIBUTE_KEYS,
    FIELD_KEYS,
    GMV_FIELDS,
    METRIC_SETS,
    MetricQuery,
    filter_fields,
    next_period,
)
from marketplace_assets.sandbox.records import application_key
from marketplace_assets.sandbox.recurring_revenue import recurring_revenue
from marketplace_assets.sandbox.routing import ApiError

Weighted = tuple[tuple[Any, float], ...]
MAX_COMBINATIONS = 20000
_HOSTS = {"jira": "Jira", "confluence": "Confluence", "bitbucket": "Bitbucket"}
_PARENT_VERSIONS = {
    "jira": ("9.4.12", "9.12.4", "9.12.15", "10.3.1", "10.3.6"),
    "confluence": ("7.13.2", "7.19.17", "7.19.20", "8.5.4", "8.7.1", "9.2.1"),
    "bitbucket": ("8.9.10", "8.19.2", "9.4.1"),
}
_PARENT_PRODUCTS = {
    "jira": (("Jira", 70.0), ("Jira Service Management", 30.0)),
    "confluence": (("Confluence", 1.0),),
    "bitbucket": (("Bitbucket", 1.0),),
}
_FIXED: dict[str, Weighted] = {
    "GRACE_PERIOD_IN_DAYS": ((0, 70.0), (7, 10.0), (15, 10.0), (30, 10.0)),
    "SUBSCRIPTION": (("MONTHLY", 65.0), ("ANNUAL", 35.0)),
    "APP_VERSION_TYPE": (("RUNS_ON_ATLASSIAN", 30.0), ("NATIVE_APP", 20.0), ("NON_HARMONISED", 50.0)),
    "HOSTING": (("CLOUD", 70.0), ("DATA_CENTER", 25.0), ("SERVER", 5.0)),
    "PRODUCT_TYPE": (("APP", 1.0),),
    "PARENT_PRODUCT_TENURE_LEVEL": (
        ("0-3 months", 15.0), ("3-12 months", 20.0), ("1-3 years", 35.0), ("3+ years", 30.0),
    ),
    "PARENT_PRODUCT_EDITION": (("FREE", 30.0), ("STANDARD", 45.0), ("PREMIUM", 20.0), ("ENTERPRISE", 5.0)),
    "PARENT_PRODUCT_UNIT_COUNT": (("1-10", 40.0), ("11-100", 35.0), ("101-1000", 20.0), ("1001+", 5.0)),
    "LICENSE_STATUS": (("ACTIVE", 85.0), ("INACTIVE", 15.0)),
    "LICENSE_TYPE": (
        ("COMMERCIAL", 70.0), ("EVALUATION", 15.0), ("ACADEMIC", 5.0), ("COMMUNITY", 5.0),
        ("OPEN_SOURCE", 5.0),
    ),
    "PRODUCT_STATE": (("ACTIVE", 90.0), ("INACTIVE", 10.0)),
    "PROSPECT_TYPE": (("NEW", 60.0), ("EXISTING", 40.0)),
}  # fmt: skip
# Attributes that are one value per app, and attributes derived from another one.
_IDENTITY = ("APP_KEY", "APP_NAME", "PRODUCT_ID", "PARENT_SOFTWARE")
_DERIVED: dict[str, tuple[str, Callable[[str], str]]] = {
    "PARENT_SOFTWARE_MAJOR_VERSION": ("PARENT_SOFTWARE_VERSION", lambda v: f"{v.split('.')[0]}.x.x"),
    "PARENT_SOFTWARE_MINOR_VERSION": (
        "PARENT_SOFTWARE_VERSION",
        lambda v: ".".join(v.split(".")[:2]) + ".x",
    ),
}
_COUNTS = ("INSTALL_COUNT", "USER_COUNT", "PROSPECT", "D1_D6_AI", "DOWNLOAD_COUNT")
_MEANS = ("AVERAGE_CHURN_DAY",)


def attribute_values(world: World, app: App, name: str) -> Weighted:
    """The values an attribute takes for an app, with their weights."""
    host = application_key(world, app)
    if name == "PARENT_SOFTWARE_VERSION":
        return tuple((v, 1.0 + i) for i, v in enumerate(_PARENT_VERSIONS[host]))
    if name == "PARENT_PRODUCT":
        return _PARENT_PRODUCTS[host]
    if name == "APP_VERSION":
        major = 1 + int(unit(world.seed, app.product_id, "pm-major") * 6)
        return tuple(
            (f"{major}.{minor}.{patch}", 1.0 + minor) for minor, patch in ((0, 3), (1, 0), (1, 2), (2, 1))
        )
    return _FIXED[name]


def _identity(world: World, app: App) -> dict[str, Any]:
    return {
        "APP_KEY": app.addon_key,
        "APP_NAME": app.name,
        "PRODUCT_ID": app.product_id,
        "PARENT_SOFTWARE": _HOSTS[application_key(world, app)],
    }


def dimensions(query: MetricQuery) -> list[str]:
    """The attributes to split by: asked or filtered ones, per app (identity) ones and derived ones
    aside; with GMV, APP_VERSION_TYPE picks the GMV breakout instead of splitting."""
    wanted = [*query.attributes, *sorted(set().union(*(filter_fields(f) for f in query.filters)))]
    dims: list[str] = []
    for name in wanted:
        base = _DERIVED[name][0] if name in _DERIVED else name
        if base in _IDENTITY or base in dims or (base == "APP_VERSION_TYPE" and query.gmv_type):
            continue
        dims.append(base)
    return dims


def _combinations(world: World, app: App, dims: Sequence[str]) -> list[tuple[dict[str, Any], float]]:
    """Every combination of the dimensions' values for an app, with its share (summing to 1)."""
    value_lists = [attribute_values(world, app, name) for name in dims]
    count = 1
    for values in value_lists:
        count *= len(values)
    if count > MAX_COMBINATIONS:
        raise ApiError(400, f"Too many attribute combinations ({count}): break down by fewer attributes")
    jitter = units(world.seed, app.product_id, "pm-share", *dims, n=count)
    combos = []
    for index, chosen in enumerate(itertools.product(*value_lists)):
        weight = 1.0
        for _, w in chosen:
            weight *= w
        combos.append(
            ({name: v for name, (v, _) in zip(dims, chosen, strict=True)}, weight * (0.5 + jitter[index]))
        )
    total = sum(w for _, w in combos) or 1.0
    return [(combo, w / total) for combo, w in combos]


# --- per app values --------------------------------------------------------------------------------


def _growth(day: date) -> float:
    return 0.5 + 0.5 * min(1.0, max(0, (day - DATA_START).days) / 3000)


def _installs(world: World, app: App, day: date) -> int:
    base = 400 * world.volume * popularity(world, app)
    return round(base * _growth(day) * (0.985 + 0.03 * unit(world.seed, app.product_id, "pm-inst", day)))


def _lifetime_gmv(world: World, app: App, version_type: str, day: date) -> float:
    rate = {"RUNS_ON_ATLASSIAN": 9.0, "NATIVE_APP": 4.0, "NON_HARMONISED": 14.0}[version_type]
    elapsed = max(0, (day - DATA_START).days + 1)
    return round(rate * world.volume * popularity(world, app) * elapsed * _growth(day), 2)


def app_values(world: World, app: App, query: MetricQuery, first: date, last: date) -> dict[str, float]:
    """The app's value of each asked field for the window part [first, last] of one period."""
    seed, pid, ndays = world.seed, app.product_id, (last - first).days + 1
    u = units(seed, pid, "pm-flows", query.granularity, first.isoformat(), n=12)
    installs = _installs(world, app, last)
    out: dict[str, float] = {
        "INSTALL_COUNT": installs,
        "USER_COUNT": round(installs * (18 + 24 * unit(seed, pid, "pm-users")) * (0.97 + 0.06 * u[0])),
        "DOWNLOAD_COUNT": draw_count(daily_mean(world, app, 3.0, last) * ndays, u[1], u[2]),
        "PROSPECT": draw_count(daily_mean(world, app, 1.5, last) * ndays, u[3], u[4]),
        "D1_D6_AI": draw_count(daily_mean(world, app, 0.9, last) * ndays, u[5], u[6]),
        "AVERAGE_CHURN_DAY": round(20 + 40 * u[7], 1),
    }
    if GMV_FIELDS & set(query.fields):
        gmv = {t: _lifetime_gmv(world, app, t, last) for t in APP_VERSION_TYPES}
        out["LIFETIME_GMV"] = gmv[query.gmv_type or "NON_HARMONISED"]
        out["NON_HARMONISED_FORGE_VERSIONS_LIFETIME_GMV"] = gmv["NON_HARMONISED"]
        out["STANDARD_FORGE_VERSIONS_LIFETIME_GMV"] = round(gmv["RUNS_ON_ATLASSIAN"] + gmv["NATIVE_APP"], 2)
    return out


# --- records ---------------------------------------------------------------------------------------


def _gmv_type_label(version_type: str) -> str:
    return "NON_HARMONISED_FORGE_VERSIONS" if version_type == "NON_HARMONISED" else version_type


def period_records(world: World, query: MetricQuery, start: date) -> list[dict[str, Any]]:
    """The records of one period (dated `start`), one per app (when app level) and attribute values."""
    first, last = (
        max(start, query.start),
        min(next_period(start, query.granularity) - timedelta(days=1), query.end),
    )
    dims = dimensions(query)
    by_app = not set(query.fields) <= GMV_FIELDS or bool(set(query.attributes) & {"APP_KEY", "APP_NAME"})
    shown = [a for a in query.attributes if not (a == "APP_VERSION_TYPE" and query.gmv_type)]
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    weights: dict[tuple[Any, ...], float] = {}  # the share summed into each record, for the means
    recurring = [f for f in query.fields if f in METRIC_SETS["RECURRING_REVENUE"]]
    for app_number, app in enumerate(world.apps):
        values = app_values(world, app, query, first, last)
        combos = _combinations(world, app, dims)
        shares = [share for _, share in combos]
        mrr = _MrrSplit(world, app_number, first, last, combos) if recurring else None
        counts = {f: split(int(values[f]), shares, [0.5] * len(shares)) for f in query.fields if f in _COUNTS}
        identity = _identity(world, app)
        if query.gmv_type:
            identity["APP_VERSION_TYPE"] = query.gmv_type
        for index, (combo, share) in enumerate(combos):
            context = {**identity, **combo}
            for name, (base, derive) in _DERIVED.items():
                if base in context:
                    context[name] = derive(context[base])
            if not query.accepts({k: str(v) for k, v in context.items()}):
                continue
            key = ((app.addon_key,) if by_app else ()) + tuple(context[a] for a in shown)
            record = groups.get(key)
            if record is None:
                record = {"date": start.isoformat()}
                if by_app:
                    record |= {"appKey": app.addon_key, "productId": app.product_id}
                record |= {ATTRIBUTE_KEYS[a]: context[a] for a in shown}
                record |= {FIELD_KEYS[f]: 0 for f in query.fields}
                groups[key] = record
            weights[key] = weights.get(key, 0.0) + share
            for field in query.fields:
                name = FIELD_KEYS[field]
                if field in _COUNTS:
                    record[name] += counts[field][index]
                elif field in _MEANS:  # a mean varies by combination; records average it by share
                    spread = 0.8 + 0.4 * unit(world.seed, app.product_id, "pm-mean", str(combo))
                    record[name] += values[field] * spread * share
                elif mrr is not None and field in recurring:
                    record[name] += mrr.value(field, combo, share)
                else:
                    record[name] += values[field] * share
    return [_finish(record, query, weights[key]) for key, record in groups.items()]


class _MrrSplit:
    """An app's RECURRING_REVENUE values (exact per hosting, from `recurring_revenue`) over the query's
    combinations: by HOSTING exactly, and by any other attribute in proportion to the combination's
    share of its hosting (the transactions carry no such attribute)."""

    def __init__(
        self,
        world: World,
        app_number: int,
        first: date,
        last: date,
        combos: list[tuple[dict[str, Any], float]],
    ) -> None:
        self.by_hosting = recurring_revenue(world, app_number, first, last, clock(world))
        self.hosting_share: dict[Any, float] = {}
        for combo, share in combos:
            hosting = combo.get("HOSTING")
            self.hosting_share[hosting] = self.hosting_share.get(hosting, 0.0) + share

    def value(self, field: str, combo: dict[str, Any], share: float) -> float:
        hosting = combo.get("HOSTING")
        if hosting is None:  # not broken down by hosting: the app's total, the sum of its hostings
            return sum(values[field] for values in self.by_hosting.values()) * share
        return self.by_hosting[hosting][field] * share / self.hosting_share[hosting]


def _finish(record: dict[str, Any], query: MetricQuery, weight: float) -> dict[str, Any]:
    for field in query.fields:
        name = FIELD_KEYS[field]
        if field in _MEANS:
            record[name] = round(record[name] / (weight or 1.0), 1)
        elif field not in _COUNTS:
            record[name] = round(record[name], 2)
    if "LIFETIME_GMV" in query.fields and query.gmv_type:
        record["lifetimeGmvAppVersionType"] = _gmv_type_label(query.gmv_type)
    return record


def metric_records(world: World, query: MetricQuery, page: Sequence[date]) -> list[dict[str, Any]]:
    """The records of the page's periods: by date, then the sortByList keys, then appKey and attributes."""
    records: list[dict[str, Any]] = []
    for start in page:
        rows = period_records(world, query, start)
        rows.sort(key=lambda r: tuple(str(v) for k, v in r.items() if k not in FIELD_KEYS.values()))
        for key, descending in reversed(query.sort):
            rows.sort(
                key=lambda r, k=key: (r.get(k) is None, 0 if r.get(k) is None else r.get(k)),
                reverse=descending,
            )
        records.extend(rows)
    return records
