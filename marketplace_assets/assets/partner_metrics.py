"""Partner metrics: one asset per query of `reports/partner_metrics.py`, partitioned by its granularity."""

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import MarketplaceAsset, describe
from marketplace_assets.partitions import partitions_for, window_of
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.normalize import records_frame
from marketplace_assets.reports.partner_metrics import MetricQuery
from marketplace_assets.reports.report import Cadence

PATH = "partner-metrics/developer-space/{developerId}"
_WINDOWS = {
    "DAY": "One partition per day.",
    "WEEK": "One partition per week, Monday to Sunday: partner metrics date weeks on Mondays.",
    "MONTH": "One partition per month, dated on the 1st.",
}
_CADENCES = {"DAY": Cadence.DAILY, "WEEK": Cadence.WEEKLY, "MONTH": Cadence.MONTHLY}


def build_partner_metric_asset(query: MetricQuery, *, start_date: date, sandbox: bool) -> dg.AssetsDefinition:
    spec = {"granularity": query.granularity, "attributes": list(query.attributes),
            "metric_sets": list(query.metric_sets), "metric_fields": list(query.metric_fields)}  # fmt: skip
    partitions_def = partitions_for(
        _CADENCES[query.granularity], start_date, weeks_start_monday=query.granularity == "WEEK"
    )
    shape = MarketplaceAsset(dg.AssetKey(["partner_metrics", query.name]), partitions_def=partitions_def,
                             partition_expr="date")  # fmt: skip

    @shape.define(
        description=describe(
            query.summary, _WINDOWS[query.granularity], f"POST /rest/3/{PATH}", sandbox=sandbox
        ),
        sandbox=sandbox,
        query=dg.MetadataValue.json(spec),
    )
    def _partner_metric(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource, pii: PiiPolicy
    ) -> Iterator[Any]:
        with shape.api_run(context, marketplace) as run:
            window = window_of(context)
            path = PATH.format(developerId=marketplace.developer_id)
            records: list[dict[str, Any]] = []
            today = datetime.now(UTC).date()
            for body, periods in query.request_bodies(window.start, window.end, today):
                # limit/offset count periods, not rows; each request asks for exactly its chunk's periods.
                answer = run.client.request_json(
                    "POST", path, params={"limit": periods, "offset": 0}, json_body=body
                )
                if isinstance(answer, dict):
                    records += answer.get("records") or []
            if window.end > query.latest_end_date(today):
                context.log.warning(
                    f"{shape.label}: the API serves {sorted(query.metric_set_names)} only up to "
                    f"{query.latest_end_date(today)}; the rest of {window.start}..{window.end} is not "
                    "available yet."
                )
            frame = records_frame(records, base_schema={"date": pl.Date()}, date_columns=("date",))
            yield from shape.finish(context, run.output(frame), pii)

    return _partner_metric
