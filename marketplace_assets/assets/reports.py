"""Report assets, generated from the catalog: one asset per row, one factory for all of them.

No `from __future__ import annotations` here: Dagster reads the asset function's annotations at
definition time and refuses a `context` annotation it sees as a string.
"""

from collections.abc import Iterable
from datetime import date

import dagster as dg
import polars as pl

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import (
    API_POOL,
    KINDS,
    definition_metadata,
    describe,
    run_metadata,
    start_run,
)
from marketplace_assets.partitions import partitions_for, period_windows, window_of
from marketplace_assets.reports.fetch import Window, fetch_report
from marketplace_assets.reports.report import Report


def build_report_asset(report: Report, *, start_date: date, sandbox: bool) -> dg.AssetsDefinition:
    partitions_def = partitions_for(report.cadence, start_date)
    metadata = definition_metadata(sandbox=sandbox, endpoint=report.endpoint)
    if partitions_def is not None:
        metadata["partition_expr"] = report.partition_column

    @dg.asset(
        key=report.key,
        group_name=report.area,
        description=describe(report.summary, report.window, f"GET {report.endpoint}", sandbox=sandbox),
        partitions_def=partitions_def,
        # A backfill of any range is one run and one ranged request per endpoint, not one per day.
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def is not None else None,
        metadata=metadata,
        kinds=KINDS,
        pool=API_POOL,
        io_manager_key="warehouse",
    )
    def _report_asset(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource
    ) -> dg.Output[pl.DataFrame]:
        client = start_run(context, marketplace, report.label)
        before = client.request_count
        windows = _request_windows(context, report)
        frames = [fetch_report(client, report, marketplace.developer_id, w) for w in windows]
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        output_metadata = run_metadata(marketplace, client, before)
        if windows[0] is not None and windows[-1] is not None:
            output_metadata["window"] = f"{windows[0].start.isoformat()} to {windows[-1].end.isoformat()}"
        return dg.Output(frame, metadata=output_metadata)

    return _report_asset


def _request_windows(context: dg.AssetExecutionContext, report: Report) -> list[Window | None]:
    """One window for the run's whole range, or one per partition for reports that aggregate."""
    if not context.has_partition_key_range and not context.has_partition_key:
        return [None]
    if report.per_period:
        return list(period_windows(context))
    return [window_of(context)]


def build_report_assets(
    reports: Iterable[Report], *, start_date: date, sandbox: bool
) -> list[dg.AssetsDefinition]:
    return [build_report_asset(r, start_date=start_date, sandbox=sandbox) for r in reports]
