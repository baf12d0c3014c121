"""Partner metrics: one asset per query of `reports/partner_metrics.py`, partitioned by its granularity."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import describe, marketplace_asset, start_run
from marketplace_assets.partitions import window_of
from marketplace_assets.reports.normalize import records_frame
from marketplace_assets.reports.partner_metrics import MetricQuery

PATH = "partner-metrics/developer-space/{developerId}"
_WINDOWS = {
    "DAY": "One partition per day.",
    "WEEK": "One partition per week, Monday to Sunday: partner metrics date weeks on Mondays.",
    "MONTH": "One partition per month, dated on the 1st.",
}


def partitions_for_granularity(granularity: str, start_date: str) -> dg.TimeWindowPartitionsDefinition:
    if granularity == "DAY":
        return dg.DailyPartitionsDefinition(start_date=start_date)
    if granularity == "WEEK":
        return dg.WeeklyPartitionsDefinition(start_date=start_date, day_offset=1)
    return dg.MonthlyPartitionsDefinition(start_date=start_date)


def build_partner_metric_asset(query: MetricQuery, *, start_date: str, sandbox: bool) -> dg.AssetsDefinition:
    label = f"partner_metrics/{query.name}"
    spec = {"granularity": query.granularity, "attributes": list(query.attributes),
            "metric_sets": list(query.metric_sets), "metric_fields": list(query.metric_fields)}  # fmt: skip

    @marketplace_asset(
        key=["partner_metrics", query.name],
        description=describe(
            query.summary, _WINDOWS[query.granularity], f"POST /rest/3/{PATH}", sandbox=sandbox
        ),
        sandbox=sandbox,
        partitions_def=partitions_for_granularity(query.granularity, start_date),
        partition_expr="date",
        query=dg.MetadataValue.json(spec),
    )
    def _partner_metric(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource
    ) -> dg.Output[pl.DataFrame]:
        run = start_run(context, marketplace, label)
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
                f"{label}: the API serves {sorted(query.metric_set_names)} only up to "
                f"{query.latest_end_date(today)}; the rest of {window.start}..{window.end} is not "
                "available yet."
            )
        frame = records_frame(records, base_schema={"date": pl.Date()}, date_columns=("date",))
        return run.output(frame)

    return _partner_metric
