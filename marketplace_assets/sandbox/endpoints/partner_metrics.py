"""Partner metrics: POST /rest/3/partner-metrics/developer-space/{developerId}.

The body names a granularity, attributes to break down by, metric sets/fields, a date range, a sort
and a filter (under `attributesFilter` as in every example, or `attributeFilter` as in the schema: both
are honoured, and both apply when both are sent). `limit` (default 7, clamped to 14) and `offset` count
granularity periods, not records. Without a dateRange the answer covers the latest `limit` periods the
asked metric sets can serve. See `partner_metrics_schema` for the validation rules.
"""

from __future__ import annotations

from marketplace_assets.sandbox.data import World, today
from marketplace_assets.sandbox.partner_metrics_data import metric_records
from marketplace_assets.sandbox.partner_metrics_schema import (
    DEFAULT_PERIODS,
    MAX_PERIODS,
    parse_query,
    periods,
)
from marketplace_assets.sandbox.routing import ApiRequest, Reply, Route


def partner_metrics(world: World, req: ApiRequest) -> Reply:
    """POST .../partner-metrics/developer-space/{developerId}: `{records: [...]}` for a page of periods."""
    offset, limit = req.page(DEFAULT_PERIODS, MAX_PERIODS)
    query = parse_query(req.body, today(), limit)
    page = list(periods(query.start, query.end, query.granularity))[offset : offset + limit]
    return Reply({"records": metric_records(world, query, page)})


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        r"/rest/3/partner-metrics/developer-space/(?P<developerId>[^/]+)",
        partner_metrics,
        "partner_metrics",
    ),
)
