"""Reporting endpoints: /rest/3/reporting/developer-space/{developerId}/..."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from marketplace_assets.sandbox.data import (
    DATA_START,
    EVALUATION_METRICS,
    App,
    World,
    evaluation_series,
    time_series,
    today,
)
from marketplace_assets.sandbox.evaluation_data import evaluation_split
from marketplace_assets.sandbox.licensing_data import clock
from marketplace_assets.sandbox.records import FeedbackFilter, feedback_page
from marketplace_assets.sandbox.routing import ApiError, ApiRequest, Reply, Route, href

DEV = r"/rest/3/reporting/developer-space/(?P<developerId>[^/]+)"
AGGREGATIONS = ("week", "month")


def date_window(req: ApiRequest, default_start: date | None = None) -> tuple[date, date]:
    """startDate/endDate, both inclusive. Defaults: endDate today, startDate a year before it.

    A reversed window is returned as is: the generators answer it with an empty result, as the
    real service does.
    """
    end = req.day("endDate") or today()
    start = req.day("startDate") or default_start or (end - timedelta(days=364))
    return start, end


def dev_path(world: World, rest: str) -> str:
    return f"/rest/3/reporting/developer-space/{world.developer_id}/{rest}"


def query_link(world: World, path: str, template: str) -> dict[str, Any]:
    return {"href": href(world, path) + template, "templated": True}


def evaluations(world: World, req: ApiRequest) -> Reply:
    """GET .../evaluations/{metric}: evaluations per week/month split by country|hosting|partner|region,
    counted from the evaluation licenses by their start day (`evaluation_data`), up to the clock."""
    metric = req.params["metric"]
    if metric not in EVALUATION_METRICS:
        raise ApiError(400, f"Invalid metric '{metric}': must be one of {list(EVALUATION_METRICS)}")
    aggregation = req.choice("aggregation", AGGREGATIONS, "week")
    start, end = date_window(req)
    as_of = clock(world)

    def daily(app: App, day: date) -> dict[str, dict[str, int]]:
        if day > as_of:
            return {}
        return {name: {"count": n} for name, n in evaluation_split(world, app, day, metric).items()}

    total, addons = time_series(world, start, end, aggregation, evaluation_series(metric), daily)
    path = dev_path(world, f"evaluations/{metric}")
    links = {
        "self": {"href": href(world, path, req.query)},
        "query": query_link(world, path, "{?aggregation,startDate,endDate}"),
    }
    return Reply({"_links": links, "total": total, "addons": addons})


def feedback_details(world: World, req: ApiRequest) -> Reply:
    """GET .../feedback/details: offset-paged feedback items, `limit` clamped to 50 silently."""
    start, end = date_window(req, default_start=DATA_START)
    offset, limit = req.page()
    where = FeedbackFilter(
        product_ids=frozenset(req.many("productId")) or None,
        hosting=FeedbackFilter.loose(req.many("hosting")),
        types=FeedbackFilter.loose(req.many("type")),
        reasons=FeedbackFilter.loose(req.many("reason")),
        editions=FeedbackFilter.loose(req.many("appEdition")),
        text=req.one("text") or None,
    )
    total, items = feedback_page(world, start, end, where, offset, limit)
    path = dev_path(world, "feedback/details")
    base = req.query_without("offset", "limit")
    links: dict[str, Any] = {
        "self": {"href": href(world, path, req.query)},
        "query": query_link(
            world,
            path,
            "{?type*,anonymous,reason*,productId*,hosting*,appEdition*,startDate,endDate,text,offset,limit}",
        ),
    }
    if offset > 0:
        links["prev"] = {
            "href": href(world, path, [*base, ("offset", str(max(0, offset - limit))), ("limit", str(limit))])
        }
    if offset + limit < total:
        links["next"] = {
            "href": href(world, path, [*base, ("offset", str(offset + limit)), ("limit", str(limit))])
        }
    return Reply({"_links": links, "totalCount": total, "feedback": items})


ROUTES: tuple[Route, ...] = (
    Route("GET", DEV + r"/evaluations/(?P<metric>[^/]+)", evaluations, "evaluations"),
    Route("GET", DEV + r"/feedback/details", feedback_details, "feedback_details"),
)
