"""Sales and feedback metrics: /rest/3/reporting/developer-space/{developerId}/...

- feedback/metrics/{metric}              metric = reason | type (time series)
- sales/transactions/{metric}            metric = country | hosting | partner | region | tier | type
- sales/metrics/churn | renewal          time series with a `datasets` level (Monthly, Annual)
- sales/metrics/conversion               time series, series carry `conversionType`
- sales/metrics/{saleMetric}/details     offset-paged events, `limit` clamped to 50
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from marketplace_assets.sandbox.data import (
    DATA_START,
    App,
    SeriesSpec,
    World,
    clamp_window,
    days,
    time_series,
)
from marketplace_assets.sandbox.endpoints.reporting import (
    AGGREGATIONS,
    DEV,
    date_window,
    dev_path,
    query_link,
)
from marketplace_assets.sandbox.injected_differences import is_late, rounding_app, whole_dollars
from marketplace_assets.sandbox.license_events import (
    CONVERSION_TYPES,
    DATASETS,
    SALE_METRICS,
    churn_day,
    conversion_day,
)
from marketplace_assets.sandbox.licensing_data import clock
from marketplace_assets.sandbox.metrics_data import (
    FEEDBACK_METRICS,
    EventFilter,
    events_page,
    feedback_counts,
    feedback_series_names,
)
from marketplace_assets.sandbox.routing import ApiError, ApiRequest, Reply, Route, href
from marketplace_assets.sandbox.sales_aggregates import SALES_METRICS, SERIES, app_lines, sales_split

Daily = Callable[[App, date], dict[str, dict[str, int]]]
_TIME_SERIES_QUERY = "{?aggregation,startDate,endDate}"


def _enum(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ApiError(400, f"Invalid {what} '{value}': must be one of {list(allowed)}")
    return value


def _links(world: World, req: ApiRequest, rest: str, template: str) -> dict[str, Any]:
    path = dev_path(world, rest)
    return {"self": {"href": href(world, path, req.query)}, "query": query_link(world, path, template)}


# --- feedback/metrics/{metric} -------------------------------------------------------------------


def feedback_metrics(world: World, req: ApiRequest) -> Reply:
    """Feedback counts per reason key or type. productId*, hosting*, appEdition* filter the items."""
    metric = _enum(req.params["metric"], FEEDBACK_METRICS, "metric")
    aggregation = req.choice("aggregation", AGGREGATIONS, "week")
    start, end = date_window(req)
    ids = frozenset(req.many("productId")) or None
    hosting = EventFilter.loose(req.many("hosting"))
    editions = EventFilter.loose(req.many("appEdition"))

    def daily(app: App, day: date) -> dict[str, dict[str, int]]:
        if ids is not None and app.product_id not in ids:
            return {}
        counts = feedback_counts(world, app, day, metric, hosting, editions)
        return {name: {"count": n} for name, n in counts.items()}

    specs = [SeriesSpec(name) for name in feedback_series_names(metric)]
    total, addons = time_series(world, start, end, aggregation, specs, daily)
    if ids is not None:
        addons = [addon for addon in addons if addon["productId"] in ids]
    template = "{?aggregation,startDate,endDate,productId*,hosting*,appEdition*}"
    links = _links(world, req, f"feedback/metrics/{metric}", template)
    return Reply({"_links": links, "total": total, "addons": addons})


# --- sales/transactions/{metric} -----------------------------------------------------------------


def _served_revenue(world: World, blocks: list[dict[str, Any]]) -> None:
    """Revenue in dollars as Atlassian serves it: the rounding app's elements in whole dollars
    (injected difference `whole_dollar_revenue`), and the total the sum of the apps as served."""
    total, *addons = blocks
    rounded = rounding_app(world)
    for number, addon in enumerate(addons):
        for one in addon["series"] if number == rounded else ():
            for element in one["elements"]:
                element["revenue"] = whole_dollars(element["revenue"])
    for position, one in enumerate(total["series"]):
        for index, element in enumerate(one["elements"]):
            element["revenue"] = sum(a["series"][position]["elements"][index]["revenue"] for a in addons)
    for block in blocks:
        for one in block["series"]:
            for element in one["elements"]:
                element["revenue"] = round(element["revenue"] / 100, 2)


def sales_by_metric(world: World, req: ApiRequest) -> Reply:
    """Sales per week/month split by a dimension, computed from the transactions (`sales_aggregates`):
    count (line items), netCount (line items that are not refunds), revenue (vendorAmount, USD).

    Revenue is summed in integer cents and only then written as dollars, so a total is the sum of its
    apps to the cent. Every series carries `evaluationType` as the reference sample's do. Atlassian's
    side: the first app's latest refund is not counted yet (`late_refund`), the second app's revenue is
    in whole dollars (`whole_dollar_revenue`); see `injected_differences`.
    """
    metric = _enum(req.params["metric"], SALES_METRICS, "metric")
    aggregation = req.choice("aggregation", AGGREGATIONS, "week")
    start, end = date_window(req)
    as_of = clock(world)

    def daily(app: App, day: date) -> dict[str, dict[str, int]]:
        if day > as_of:
            return {}
        lines = [line for line in app_lines(world, app, day) if not is_late(world, line, as_of)]
        return {
            name: {"count": cell.count, "netCount": cell.net, "revenue": cell.cents}
            for name, cell in sales_split(world, app, day, metric, lines).items()
        }

    attrs = {"evaluationType": "Net new evaluation"}
    specs = [SeriesSpec(name, attrs) for name in SERIES[metric]]
    fields = ("count", "netCount", "revenue")
    total, addons = time_series(world, start, end, aggregation, specs, daily, fields)
    if total["series"]:
        _served_revenue(world, [total, *addons])
    links = _links(world, req, f"sales/transactions/{metric}", _TIME_SERIES_QUERY)
    return Reply({"_links": links, "total": total, "addons": addons})


# --- sales/metrics/churn | renewal | conversion --------------------------------------------------


def _merge(
    world: World,
    start: date,
    end: date,
    aggregation: str,
    parts: Sequence[tuple[str | None, list[SeriesSpec], Daily]],
    unique_total: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Several time series side by side: as datasets (a name per part) or as one series list (None)."""
    key = "datasets" if parts[0][0] else "series"
    total: dict[str, Any] = {"name": "All apps", key: []}
    if clamp_window(start, end) is None:
        return total, []
    addons: list[dict[str, Any]] = []
    blocks: list[list[Any]] = [[] for _ in range(len(world.apps) + 1)]
    for name, specs, daily in parts:
        part_total, part_addons = time_series(world, start, end, aggregation, specs, daily)
        for index, series in enumerate([part_total["series"], *(a["series"] for a in part_addons)]):
            if unique_total:  # each cancellation / customer opportunity is counted once
                series = [
                    {"name": s["name"], "uniqueTotal": sum(e["count"] for e in s["elements"]), **s}
                    for s in series
                ]
            blocks[index].extend([{"name": name, "series": series}] if name else series)
        addons = [{key: a[key] for key in ("addonKey", "productId", "name")} for a in part_addons]
    total[key] = blocks[0]
    for addon, block in zip(addons, blocks[1:], strict=True):
        addon[key] = block
    return total, addons


def _dataset_daily(world: World, dataset: int, names: tuple[str, str], renewal: bool) -> Daily:
    def daily(app: App, day: date) -> dict[str, dict[str, int]]:
        customers, cancelled = churn_day(world, app, day)[dataset]
        second = customers - cancelled if renewal else cancelled
        return {names[0]: {"count": customers}, names[1]: {"count": second}}

    return daily


def churn_or_renewal(world: World, req: ApiRequest) -> Reply:
    """Churn: Customers (renewal opportunities) and Cancellations; renewal: opportunities and Renewals.

    productId and hosting are ignored, as on the live aggregate endpoints.
    """
    metric = req.params["saleMetric"]
    aggregation = req.choice("aggregation", AGGREGATIONS, "week")
    start, end = date_window(req)
    renewal = metric == "renewal"
    names = ("Renewal opportunities", "Renewals") if renewal else ("Customers", "Cancellations")
    parts = [
        (dataset, [SeriesSpec(names[0]), SeriesSpec(names[1])], _dataset_daily(world, i, names, renewal))
        for i, dataset in enumerate(DATASETS)
    ]
    total, addons = _merge(world, start, end, aggregation, parts, unique_total=not renewal)
    links = _links(world, req, f"sales/metrics/{metric}", _TIME_SERIES_QUERY)
    return Reply({"_links": links, "total": total, "addons": addons})


def _conversion_daily(world: World, kind: int) -> Daily:
    def daily(app: App, day: date) -> dict[str, dict[str, int]]:
        evaluations, converted = conversion_day(world, app, day)[kind]
        return {"Evaluations": {"count": evaluations}, "Conversions": {"count": converted}}

    return daily


def conversion(world: World, req: ApiRequest) -> Reply:
    """Cloud evaluations and the ones that converted, per conversionType (Net new, Upgrade)."""
    aggregation = req.choice("aggregation", AGGREGATIONS, "week")
    start, end = date_window(req)
    parts = [
        (
            None,
            [SeriesSpec(name, {"conversionType": kind}) for name in ("Evaluations", "Conversions")],
            _conversion_daily(world, i),
        )
        for i, kind in enumerate(CONVERSION_TYPES)
    ]
    total, addons = _merge(world, start, end, aggregation, parts)
    links = _links(world, req, "sales/metrics/conversion", _TIME_SERIES_QUERY)
    return Reply({"_links": links, "total": total, "addons": addons})


# --- sales/metrics/{saleMetric}/details ----------------------------------------------------------


def sale_metric_details(world: World, req: ApiRequest) -> Reply:
    """Offset-paged churn/conversion/renewal events, ordered by (eventDate, addonKey, appEntitlementId).

    Links are `_links: {self, query, next?}` as on feedback/details (the reference sample writes them at
    the top level as lists); no totalCount is documented here, so none is sent.
    """
    metric = _enum(req.params["saleMetric"], SALE_METRICS, "saleMetric")
    start, end = date_window(req, default_start=DATA_START)
    offset, limit = req.page()
    where = EventFilter(
        product_ids=frozenset(req.many("productId")) or None,
        hosting=EventFilter.loose(req.many("hosting")),
        editions=EventFilter.loose(req.many("appEdition")),
        last_updated=req.day("lastUpdated"),
    )
    window = clamp_window(start, end)
    items, more = events_page(world, metric, list(days(*window)) if window else [], where, offset, limit)
    path = dev_path(world, f"sales/metrics/{metric}/details")
    template = (
        "{?productId*,hosting*,appEdition*,lastUpdated,partnerType*,text,startDate,endDate,sortBy,order,"
        "offset,limit}"
    )
    links: dict[str, Any] = {
        "self": {"href": href(world, path, req.query)},
        "query": query_link(world, path, template),
    }
    if more:
        base = req.query_without("offset", "limit")
        links["next"] = {
            "href": href(world, path, [*base, ("offset", str(offset + limit)), ("limit", str(limit))])
        }
    return Reply({"_links": links, "events": items})


ROUTES: tuple[Route, ...] = (
    Route("GET", DEV + r"/feedback/metrics/(?P<metric>[^/]+)", feedback_metrics, "feedback_metrics"),
    # `export` and `async` belong to the transactions list endpoints (licensing.py), matched later.
    Route(
        "GET",
        DEV + r"/sales/transactions/(?P<metric>(?!export$|async$)[^/]+)",
        sales_by_metric,
        "sales_transactions_by_metric",
    ),
    Route(
        "GET", DEV + r"/sales/metrics/(?P<saleMetric>churn|renewal)", churn_or_renewal, "sales_churn_renewal"
    ),
    Route("GET", DEV + r"/sales/metrics/conversion", conversion, "sales_conversion"),
    Route(
        "GET",
        DEV + r"/sales/metrics/(?P<saleMetric>[^/]+)/details",
        sale_metric_details,
        "sales_metric_details",
    ),
)
