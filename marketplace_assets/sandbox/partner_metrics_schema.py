"""The partner-metrics request: names, validation, the filter grammar and the period calendar.

`parse_query` turns a POST body into a `MetricQuery` or raises ApiError(400) with a message naming
what is wrong; `partner_metrics_data` computes the records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from marketplace_assets.sandbox.data import DATA_START
from marketplace_assets.sandbox.routing import ApiError

GRANULARITIES = ("YEAR", "MONTH", "WEEK", "DAY")
DEFAULT_PERIODS, MAX_PERIODS = 7, 14
METRIC_SETS: dict[str, tuple[str, ...]] = {
    "RECURRING_REVENUE": (
        "OPENING_MRR", "NEW_MRR", "EXPANSION_MRR", "CONTRACTION_MRR", "REACTIVATED_MRR", "EXPIRED_MRR",
        "CLOSING_MRR", "ARR",
    ),
    "DISTRIBUTIONS": ("INSTALL_COUNT", "USER_COUNT"),
    "FUNNEL_INSIGHTS": ("PROSPECT", "D1_D6_AI", "AVERAGE_CHURN_DAY"),
    "DOWNLOADS": ("DOWNLOAD_COUNT",),
    "GMV": (
        "LIFETIME_GMV", "NON_HARMONISED_FORGE_VERSIONS_LIFETIME_GMV", "STANDARD_FORGE_VERSIONS_LIFETIME_GMV",
    ),
}  # fmt: skip
SET_OF_FIELD = {field: name for name, fields in METRIC_SETS.items() for field in fields}
# Record keys of the metric fields (reference samples and a public client; the rest camelCased).
FIELD_KEYS = {
    "OPENING_MRR": "openingMrr", "NEW_MRR": "newMrr", "EXPANSION_MRR": "expansionMrr",
    "CONTRACTION_MRR": "contractionMrr", "REACTIVATED_MRR": "reactivatedMrr", "EXPIRED_MRR": "expiredMrr",
    "CLOSING_MRR": "closingMrr", "ARR": "arr", "INSTALL_COUNT": "installCounts", "USER_COUNT": "userCounts",
    "PROSPECT": "prospectCounts", "D1_D6_AI": "d1D6Ai", "AVERAGE_CHURN_DAY": "averageChurnDay",
    "DOWNLOAD_COUNT": "downloadCounts", "LIFETIME_GMV": "lifetimeGmv",
    "NON_HARMONISED_FORGE_VERSIONS_LIFETIME_GMV": "nonHarmonisedForgeVersionsGmv",
    "STANDARD_FORGE_VERSIONS_LIFETIME_GMV": "standardForgeAppVersionsGmv",
}  # fmt: skip
ATTRIBUTE_KEYS = {
    "APP_KEY": "appKey", "APP_NAME": "appName", "GRACE_PERIOD_IN_DAYS": "gracePeriodInDays",
    "SUBSCRIPTION": "subscription", "APP_VERSION": "appVersion", "APP_VERSION_TYPE": "appVersionType",
    "PARENT_SOFTWARE": "parentSoftware", "PARENT_SOFTWARE_VERSION": "parentSoftwareVersion",
    "PARENT_SOFTWARE_MAJOR_VERSION": "parentSoftwareMajorVersions",
    "PARENT_SOFTWARE_MINOR_VERSION": "parentSoftwareMinorVersions", "HOSTING": "hosting",
    "PARENT_PRODUCT": "parentProduct", "PRODUCT_TYPE": "productType",
    "PARENT_PRODUCT_TENURE_LEVEL": "parentProductTenureLevel",
    "PARENT_PRODUCT_EDITION": "parentProductEdition",
    "PARENT_PRODUCT_UNIT_COUNT": "parentProductUnitCount", "LICENSE_STATUS": "licenseStatus",
    "LICENSE_TYPE": "licenseType", "PRODUCT_STATE": "productState", "PROSPECT_TYPE": "prospectType",
}  # fmt: skip
FILTER_FIELDS = (*ATTRIBUTE_KEYS, "PRODUCT_ID")
GMV_FIELDS = frozenset(METRIC_SETS["GMV"])
APP_VERSION_TYPES = ("RUNS_ON_ATLASSIAN", "NATIVE_APP", "NON_HARMONISED")
LIFETIME_GMV_MESSAGE = (
    "LIFETIME_GMV requires exactly one APP_VERSION_TYPE value in the filter: Exactly single "
    "APP_VERSION_TYPE must be present in filter expression from (RUNS_ON_ATLASSIAN, NATIVE_APP or "
    "NON_HARMONISED)"
)

# A filter expression: ("and", [expr]) | ("or", [expr]) | ("not", expr) | ("in", field, frozenset).
Expr = tuple[Any, ...]


@dataclass(frozen=True)
class MetricQuery:
    granularity: str
    attributes: tuple[str, ...]
    fields: tuple[str, ...]
    start: date
    end: date
    filters: tuple[Expr, ...]
    sort: tuple[tuple[str, bool], ...]  # (record key, descending)
    gmv_type: str | None  # the APP_VERSION_TYPE LIFETIME_GMV reports, when GMV is asked for

    @property
    def sets(self) -> frozenset[str]:
        return frozenset(SET_OF_FIELD[field] for field in self.fields)

    def accepts(self, context: Mapping[str, str]) -> bool:
        return all(evaluate(expr, context) for expr in self.filters)


# --- the period calendar ---------------------------------------------------------------------------


def period_start(day: date, granularity: str) -> date:
    """Weeks start on Monday, months on the 1st, years on January 1st."""
    if granularity == "WEEK":
        return day - timedelta(days=day.weekday())
    if granularity == "MONTH":
        return day.replace(day=1)
    if granularity == "YEAR":
        return day.replace(month=1, day=1)
    return day


def next_period(start: date, granularity: str) -> date:
    if granularity == "WEEK":
        return start + timedelta(days=7)
    if granularity == "MONTH":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    if granularity == "YEAR":
        return start.replace(year=start.year + 1)
    return start + timedelta(days=1)


def periods(start: date, end: date, granularity: str) -> Iterator[date]:
    """The start dates of the periods overlapping [start, end] (none when reversed)."""
    current = period_start(max(start, DATA_START), granularity)
    while current <= end:
        yield current
        current = next_period(current, granularity)


def latest_end_date(metric_set: str, today: date) -> date:
    """RECURRING_REVENUE up to today; FUNNEL_INSIGHTS up to the end of last month; the rest yesterday."""
    if metric_set == "RECURRING_REVENUE":
        return today
    if metric_set == "FUNNEL_INSIGHTS":
        return today.replace(day=1) - timedelta(days=1)
    return today - timedelta(days=1)


_LIMIT_TEXT = {
    "RECURRING_REVENUE": "up to today",
    "FUNNEL_INSIGHTS": "up to the last day of the previous month",
}


# --- parsing ---------------------------------------------------------------------------------------


def _names(items: Any, where: str) -> list[str]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) and "name" in i for i in items):
        raise ApiError(400, f"{where} must be a list of objects with a 'name'")
    return [str(item["name"]).upper() for item in items]


def _unknown(kind: str, name: str, known: Any) -> ApiError:
    return ApiError(400, f"Unknown {kind} '{name}': must be one of {list(known)}")


def _day(value: Any, where: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"Invalid date '{value}' for {where}: expected format yyyy-MM-dd") from None


def parse_expr(node: Any) -> Expr:
    """One node of the filter grammar (andGroup | orGroup | notExpression | filter)."""
    if not isinstance(node, dict) or len(node) != 1:
        raise ApiError(400, f"Invalid filter expression {json.dumps(node)[:200]}: expected exactly one of "
                       "andGroup, orGroup, notExpression, filter")  # fmt: skip
    (kind, value), = node.items()  # fmt: skip
    if kind in ("andGroup", "orGroup"):
        if not isinstance(value, list):
            raise ApiError(400, f"Invalid filter expression: {kind} must be a list of expressions")
        return ("and" if kind == "andGroup" else "or", [parse_expr(item) for item in value])
    if kind == "notExpression":
        return ("not", parse_expr(value))
    if kind != "filter":
        raise ApiError(400, f"Invalid filter expression key '{kind}': expected andGroup, orGroup, "
                       "notExpression or filter")  # fmt: skip
    field = str(value.get("fieldName", "")).upper() if isinstance(value, dict) else ""
    if field not in FILTER_FIELDS:
        raise _unknown("filter fieldName", field, FILTER_FIELDS)
    one = value.get("oneFilter")
    if isinstance(one, dict) and isinstance(one.get("stringFilter"), dict):
        string = one["stringFilter"]
        if str(string.get("matchType", "EXACT")).upper() != "EXACT":
            raise ApiError(400, f"Unsupported matchType '{string.get('matchType')}': only EXACT is supported")
        if not isinstance(string.get("value"), str):
            raise ApiError(400, f"Invalid filter on {field}: stringFilter.value must be a string")
        return ("in", field, frozenset([string["value"]]))
    if isinstance(one, dict) and isinstance(one.get("inListFilter"), dict):
        values = one["inListFilter"].get("values")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ApiError(400, f"Invalid filter on {field}: inListFilter.values must be a list of strings")
        return ("in", field, frozenset(values))
    raise ApiError(400, f"Invalid filter on {field}: oneFilter must hold a stringFilter or an inListFilter")


def evaluate(expr: Expr, context: Mapping[str, str]) -> bool:
    kind = expr[0]
    if kind == "and":
        return all(evaluate(e, context) for e in expr[1])
    if kind == "or":
        return any(evaluate(e, context) for e in expr[1])
    if kind == "not":
        return not evaluate(expr[1], context)
    return context.get(expr[1]) in expr[2]


def filter_fields(expr: Expr) -> set[str]:
    if expr[0] in ("and", "or"):
        return set().union(*(filter_fields(e) for e in expr[1]))
    if expr[0] == "not":
        return filter_fields(expr[1])
    return {expr[1]}


def _version_type_values(expr: Expr, negated: bool = False) -> list[str | None]:
    """The APP_VERSION_TYPE values the filter names (None for a value under a negation)."""
    if expr[0] in ("and", "or"):
        return [v for e in expr[1] for v in _version_type_values(e, negated)]
    if expr[0] == "not":
        return _version_type_values(expr[1], True)
    if expr[1] != "APP_VERSION_TYPE":
        return []
    return [None if negated else v for v in sorted(expr[2])]


def _gmv_type(fields: list[str], explicit: list[str], filters: list[Expr]) -> str | None:
    """The APP_VERSION_TYPE LIFETIME_GMV reports: exactly one value in the filter when the field is
    asked for by name; NON_HARMONISED (the documented default) when it only comes with the GMV set."""
    if "LIFETIME_GMV" not in fields:
        return None
    values = set().union(*(_version_type_values(e) for e in filters)) if filters else set()
    if not values and "LIFETIME_GMV" not in explicit:
        return "NON_HARMONISED"
    if len(values) != 1 or next(iter(values)) not in APP_VERSION_TYPES:
        raise ApiError(400, LIFETIME_GMV_MESSAGE)
    return str(next(iter(values)))


def parse_query(raw: bytes, today: date, limit: int) -> MetricQuery:
    """Validate a POST body (400 with a clear message on any problem) and resolve its defaults."""
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    granularity = str(body.get("granularity") or "").upper()
    if granularity not in GRANULARITIES:
        raise _unknown("granularity", body.get("granularity"), GRANULARITIES)
    attributes = list(dict.fromkeys(_names(body.get("attributes"), "attributes")))
    for name in attributes:
        if name not in ATTRIBUTE_KEYS:
            raise _unknown("attribute", name, ATTRIBUTE_KEYS)
    metrics = body.get("metrics")
    if not isinstance(metrics, dict):
        raise ApiError(400, "metrics is required: an object with metricSets and/or metricFields")
    fields: list[str] = []
    for name in _names(metrics.get("metricSets"), "metrics.metricSets"):
        if name not in METRIC_SETS:
            raise _unknown("metric set", name, METRIC_SETS)
        fields.extend(METRIC_SETS[name])
    explicit = _names(metrics.get("metricFields"), "metrics.metricFields")
    for name in explicit:
        if name not in SET_OF_FIELD:
            raise _unknown("metric field", name, SET_OF_FIELD)
    fields = list(dict.fromkeys([*explicit, *fields]))
    if not fields:
        raise ApiError(400, "metrics must name at least one metricSet or metricField")
    filters = []
    for key in ("attributesFilter", "attributeFilter"):  # the examples' key and the schema's: both
        node = body.get(key)
        if node is None:
            continue
        if not isinstance(node, dict):
            raise ApiError(400, f"{key} must be an object with an 'expr'")
        filters.append(parse_expr(node.get("expr", node)))
    gmv_type = _gmv_type(fields, explicit, filters)
    sets = {SET_OF_FIELD[field] for field in fields}
    date_range = body.get("dateRange") or {}
    if not isinstance(date_range, dict):
        raise ApiError(400, "dateRange must be an object with startDate and endDate")
    latest = min(latest_end_date(s, today) for s in sets)
    end = _day(date_range.get("endDate"), "dateRange.endDate") or latest
    for name in sorted(sets):
        limit_day = latest_end_date(name, today)
        if end > limit_day:
            text = _LIMIT_TEXT.get(name, "before today")
            raise ApiError(
                400,
                f"Invalid dateRange.endDate {end}: {name} data is available {text} "
                f"(endDate at most {limit_day})",
            )
    start = _day(date_range.get("startDate"), "dateRange.startDate")
    if start is None:
        start = period_start(end, granularity)
        for _ in range(limit - 1):
            start = period_start(start - timedelta(days=1), granularity)
    sort = []
    keys = {**ATTRIBUTE_KEYS, **FIELD_KEYS}
    for item in body.get("sortByList") or []:
        name = str(item.get("name", "")).upper() if isinstance(item, dict) else ""
        order = str(item.get("order") or "ASC").upper() if isinstance(item, dict) else ""
        if name not in keys:
            raise _unknown("sortByList name", name, keys)
        if order not in ("ASC", "DESC"):
            raise ApiError(400, f"Invalid sortByList order '{item.get('order')}': must be ASC or DESC")
        sort.append((keys[name], order == "DESC"))
    return MetricQuery(
        granularity, tuple(attributes), tuple(fields), start, end, tuple(filters), tuple(sort), gmv_type
    )
