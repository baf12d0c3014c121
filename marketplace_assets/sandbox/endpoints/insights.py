"""Benchmarks, customer insights, search keywords, app requests and the reporting links.

All under /rest/3/reporting/developer-space/{developerId}/. Monthly lists are dated on the 1st; the
benchmark and app-request lists run newest month first, as the reference samples do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from marketplace_assets.sandbox.data import App, World
from marketplace_assets.sandbox.endpoints.reporting import (
    AGGREGATIONS,
    DEV,
    date_window,
    dev_path,
    query_link,
)
from marketplace_assets.sandbox.insights_data import (
    churn_benchmark,
    evaluation_benchmark,
    insights_month,
    last_churn_benchmark_month,
    last_full_month,
    last_sales_benchmark_month,
    months_between,
    requests_by_month,
    requests_record,
    sales_benchmark,
)
from marketplace_assets.sandbox.routing import ApiError, ApiRequest, Reply, Route, href
from marketplace_assets.sandbox.search_data import (
    SOURCES,
    ZERO_RESULT_SOURCES,
    appearances_by_app,
    product_keywords,
    top_keywords,
    zero_results,
)

_SCOPED_QUERY = "{?productId*,startDate,endDate}"


def _links(world: World, req: ApiRequest, rest: str, template: str, export: bool = False) -> dict[str, Any]:
    path = dev_path(world, rest)
    links: dict[str, Any] = {
        "self": {"href": href(world, path, req.query)},
        "query": query_link(world, path, template),
    }
    if export:  # the documented export paths (the live hrefs double `/export`; these do not)
        links["export"] = [
            {"href": href(world, f"{path}/export") + f"?accept={kind}", "type": mime}
            for kind, mime in (("csv", "text/csv"), ("json", "application/json"))
        ]
    return links


def _apps(world: World, req: ApiRequest) -> list[App]:
    """The apps selected by repeated productId parameters (all apps without any)."""
    ids = set(req.many("productId"))
    return [app for app in world.apps if not ids or app.product_id in ids]


def _months(req: ApiRequest, last: date, newest_first: bool = True) -> list[date]:
    start, end = date_window(req)
    months = months_between(start, end, last)
    return months[::-1] if newest_first else months


# --- benchmarks ----------------------------------------------------------------------------------


def churn_benchmark_report(world: World, req: ApiRequest) -> Reply:
    """Per app and month: churned/total licenses, churn rates and the Marketplace benchmarks."""
    months = _months(req, last_churn_benchmark_month())
    per_app = [
        {
            "appName": app.name,
            "appKey": app.addon_key,
            "productId": app.product_id,
            "churnBenchmarkPerMonth": [churn_benchmark(world, app, first) for first in months],
        }
        for app in (_apps(world, req) if months else [])
    ]
    links = _links(world, req, "sales/metrics/churn/benchmark", _SCOPED_QUERY)
    return Reply({"_links": links, "churnBenchmarkPerApp": per_app})


def evaluation_benchmark_report(world: World, req: ApiRequest) -> Reply:
    """Cloud evaluations per month with growth, percentiles and benchmarks; totals = sum over apps."""
    months = _months(req, last_full_month())
    apps = _apps(world, req) if months else []
    totals = {
        "name": "All apps",
        "CloudEvaluationBenchmarkPerVendorPerMonth": [
            evaluation_benchmark(world, apps, first, per_app=False) for first in months if apps
        ],
    }
    per_app = [
        {
            "addonKey": app.addon_key,
            "productId": app.product_id,
            "name": app.name,
            "CloudEvaluationBenchmarkPerAppPerMonth": [
                evaluation_benchmark(world, [app], first, per_app=True) for first in months
            ],
        }
        for app in apps
    ]
    links = _links(world, req, "benchmark/evaluations", _SCOPED_QUERY)
    return Reply({"_links": links, "totals": totals, "CloudEvaluationBenchmarkPerApp": per_app})


def sales_benchmark_report(world: World, req: ApiRequest) -> Reply:
    """Partner share of Cloud sales per month; months after the last quarterly update are omitted."""
    months = _months(req, last_sales_benchmark_month())
    apps = _apps(world, req) if months else []
    total = {
        "name": "All apps",
        "salesBenchmarkPerMonth": [sales_benchmark(world, apps, m, per_app=False) for m in months if apps],
    }
    addons = [
        {
            "addonKey": app.addon_key,
            "productId": app.product_id,
            "name": app.name,
            "salesBenchmarkPerMonth": [sales_benchmark(world, [app], m, per_app=True) for m in months],
        }
        for app in apps
    ]
    links = _links(world, req, "benchmark/sales", _SCOPED_QUERY)
    return Reply({"_links": links, "total": total, "addons": addons})


# --- customer insights ---------------------------------------------------------------------------

# path -> (group kind, top-level key)
_INSIGHTS = {
    "regions": ("region", "regionWiseUserInsightsPerMonth"),
    "editions": ("edition", "usersEditionDistribution"),
    "active-users": ("activeUsers", "activePaidUsersInsights"),
    "tiers": ("tier", "usersDistributionPerProduct"),
}
_PRODUCTS = ("confluence", "jira")


def customer_insights(world: World, req: ApiRequest) -> Reply:
    """Users per month by region / edition / paid activity / product and tier, with benchmarks.

    usersPercent sums to 100 within a month (within a month and product for tiers). productId and
    hosting are ignored; tiers take an optional `product` (jira or confluence).
    """
    name = req.params["insight"]
    kind, key = _INSIGHTS[name]
    products: Sequence[str] = ("Confluence", "Jira")
    template = "{?startDate,endDate}"
    if kind == "tier":
        template = "{?startDate,endDate,product}"
        product = req.one("product")
        if product:
            if product.lower() not in _PRODUCTS:
                raise ApiError(400, f"Invalid product '{product}': must be one of {list(_PRODUCTS)}")
            products = (product.capitalize(),)
    months = _months(req, last_full_month(), newest_first=False)
    body = [
        {"date": first.isoformat(), "insightsType": insights_month(world, kind, first, products)}
        for first in months
    ]
    return Reply({"_links": _links(world, req, f"customer-insights/{name}", template), key: body})


# --- search --------------------------------------------------------------------------------------


def _source(req: ApiRequest, allowed: Sequence[str]) -> str:
    source = req.params["sourceKey"]
    if source not in allowed:
        raise ApiError(400, f"Invalid sourceKey '{source}': must be one of {list(allowed)}")
    return source


def search_keywords_by_source(world: World, req: ApiRequest) -> Reply:
    """Top keywords searched on the source in the window and their share of all searches (%)."""
    source = _source(req, SOURCES)
    start, end = date_window(req)
    links = _links(world, req, f"search-keywords/source/{source}", "{?startDate,endDate}", export=True)
    return Reply({"_links": links, "details": top_keywords(world, source, start, end)})


def zero_search_results(world: World, req: ApiRequest) -> Reply:
    """Searches that found nothing, with the filters used (source `marketplace` only)."""
    source = _source(req, ZERO_RESULT_SOURCES)
    start, end = date_window(req)
    rest = f"zero-search-results-keywords/source/{source}"
    links = _links(world, req, rest, "{?startDate,endDate}", export=True)
    return Reply({"_links": links, "details": zero_results(world, start, end)})


def search_keywords(world: World, req: ApiRequest) -> Reply:
    """Each app's search appearances per week/month and leading keyword; the total sums the apps."""
    aggregation = req.choice("aggregation", AGGREGATIONS, "week")
    start, end = date_window(req)
    total, addons = appearances_by_app(world, start, end, aggregation)
    links = _links(world, req, "search-keywords", "{?aggregation,startDate,endDate}", export=True)
    return Reply({"_links": links, "total": total, "addons": addons})


def product_search_keywords(world: World, req: ApiRequest) -> Reply:
    """One app's keywords, each with its appearances per week/month; unknown productId is a 404."""
    product_id = req.params["productId"]
    app = world.app(product_id)
    if app is None:
        raise ApiError(404, f"Product '{product_id}' not found")
    aggregation = req.choice("aggregation", AGGREGATIONS, "week")
    start, end = date_window(req)
    summary, details = product_keywords(world, app, start, end, aggregation)
    rest = f"products/{product_id}/search-keywords"
    links = _links(world, req, rest, "{?startDate,endDate,aggregation}", export=True)
    return Reply({"_links": links, "summary": summary, "details": details})


# --- app requests and approvals ------------------------------------------------------------------


def app_requests(world: World, req: ApiRequest) -> Reply:
    """Install requests to admins and approvals per month (the days of the window); totals sum apps."""
    start, end = date_window(req)
    apps = _apps(world, req)
    per_app = [requests_by_month(world, app, start, end) for app in apps]
    months = sorted({first for months in per_app for first in months}, reverse=True)
    total = {
        "name": "All apps",
        "appRequestsAndApprovalsPerMonth": [
            requests_record(first, sum(m[first][0] for m in per_app), sum(m[first][1] for m in per_app))
            for first in months
        ],
    }
    addons = [
        {
            "addonKey": app.addon_key,
            "productId": app.product_id,
            "name": app.name,
            "appRequestsAndApprovalsPerAppPerMonth": [requests_record(f, *m[f]) for f in months],
        }
        for app, m in zip(apps, per_app, strict=True)
        if months  # an empty window answers no apps, like the other reports
    ]
    links = _links(world, req, "app-requests-and-approvals", _SCOPED_QUERY)
    return Reply({"_links": links, "total": total, "addons": addons})


# --- reporting links -----------------------------------------------------------------------------

_AGG = "{?aggregation,startDate,endDate}"
_FEEDBACK_Q = "type*,anonymous,reason*,productId*,hosting*,appEdition*,startDate,endDate,text,offset,limit"
_LICENSES_Q = (
    "productId*,startDate,endDate,text,tier*,dateType,licenseType*,partnerType*,hosting*,status*,"
    "withAttribution,withDataInsights,includeAtlassianLicenses,lastUpdated,sortBy,order,offset,limit"
)
_TRANSACTIONS_Q = (
    "productId*,startDate,endDate,text,tier*,saleType*,partnerType*,hosting*,billingPeriod*,lastUpdated,"
    "excludeZeroTransactions,includeManualInvoice,paymentStatus*,sortBy,order,offset,limit"
)
_JSON, _CSV = "application/json", "text/csv"
# (link key, path under the developer space, URI template, type, name, written as a list)
_REPORTING_LINKS: tuple[tuple[str, str, str, str, str, bool], ...] = (
    ("appRequestsAndApprovals", "app-requests-and-approvals", _SCOPED_QUERY, _JSON,
     "appRequestsAndApprovals", False),
    ("cloudChurn", "sales/metrics/churn", _AGG, _JSON, "aggregated", True),
    ("cloudConversions", "sales/metrics/conversion", _AGG, _JSON, "aggregated", True),
    ("cloudRenewals", "sales/metrics/renewal", _AGG, _JSON, "aggregated", True),
    ("cloudChurnBenchmark", "sales/metrics/churn/benchmark", _SCOPED_QUERY, _JSON, "cloudChurnBenchmark",
     False),
    ("cloudEvaluationBenchmark", "benchmark/evaluations", _SCOPED_QUERY, _JSON, "cloudEvaluationBenchmark",
     False),
    ("cloudSalesBenchmark", "benchmark/sales", _SCOPED_QUERY, _JSON, "cloudSalesBenchmark", False),
    ("customerInsightsLinks", "customer-insights/active-users", "{?startDate,endDate}", _JSON, "activeUsers",
     True),
    *((f"evaluationsBy{m.capitalize()}", f"evaluations/{m}", _AGG, _JSON, f"evaluationsBy{m.capitalize()}",
       False) for m in ("country", "hosting", "partner", "region")),
    ("feedbackLinks", "feedback/details", f"{{?{_FEEDBACK_Q}}}", _JSON, "feedback", True),
    ("feedbackExport", "feedback/details/export", f"?accept=csv{{&{_FEEDBACK_Q}}}", _CSV, "feedbackExport",
     True),
    ("freeStarterTier", "sales/freeStarterTier/export", "?accept=csv", _CSV, "freeStarterTierExport", True),
    ("licenses", "licenses", f"{{?{_LICENSES_Q}}}", _JSON, "licenses", False),
    ("licensesExport", "licenses/export", f"?accept=csv{{&{_LICENSES_Q}}}", _CSV, "licensesExport", True),
    ("transactions", "sales/transactions", f"{{?{_TRANSACTIONS_Q}}}", _JSON, "transactions", False),
    ("transactionsExport", "sales/transactions/export", f"?accept=csv{{&{_TRANSACTIONS_Q}}}", _CSV,
     "transactionsExport", True),
    *((f"transactionsBy{m.capitalize()}", f"sales/transactions/{m}", _AGG, _JSON,
       f"transactionsBy{m.capitalize()}", False)
      for m in ("country", "hosting", "partner", "region", "tier", "type")),
)  # fmt: skip


def reporting_links(world: World, req: ApiRequest) -> Reply:
    """GET .../developer-space/{developerId}/: the links to every report, as the reference sample has."""
    links: dict[str, Any] = {"self": {"href": href(world, dev_path(world, ""))}}
    for key, rest, template, mime, name, as_list in _REPORTING_LINKS:
        link = {"href": href(world, dev_path(world, rest)) + template, "templated": True, "type": mime}
        links[key] = [{**link, "name": name}] if as_list else {**link, "name": name}
    return Reply({"_links": links})


ROUTES: tuple[Route, ...] = (
    Route("GET", DEV + r"/?", reporting_links, "reporting_links"),
    Route("GET", DEV + r"/sales/metrics/churn/benchmark", churn_benchmark_report, "churn_benchmark"),
    Route("GET", DEV + r"/benchmark/evaluations", evaluation_benchmark_report, "evaluation_benchmark"),
    Route("GET", DEV + r"/benchmark/sales", sales_benchmark_report, "sales_benchmark"),
    Route(
        "GET",
        DEV + r"/customer-insights/(?P<insight>regions|editions|active-users|tiers)",
        customer_insights,
        "customer_insights",
    ),
    Route(
        "GET", DEV + r"/search-keywords/source/(?P<sourceKey>[^/]+)", search_keywords_by_source, "search_src"
    ),
    Route(
        "GET",
        DEV + r"/zero-search-results-keywords/source/(?P<sourceKey>[^/]+)",
        zero_search_results,
        "zero_search_results",
    ),
    Route("GET", DEV + r"/search-keywords", search_keywords, "search_keywords"),
    Route(
        "GET",
        DEV + r"/products/(?P<productId>[^/]+)/search-keywords",
        product_search_keywords,
        "product_search_keywords",
    ),
    Route("GET", DEV + r"/app-requests-and-approvals", app_requests, "app_requests_and_approvals"),
)
