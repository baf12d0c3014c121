"""Report assets, generated from the catalog: one asset per row, one factory for all of them.

No `from __future__ import annotations` here: Dagster reads the asset function's annotations at
definition time and refuses a `context` annotation it sees as a string.
"""

from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import MarketplaceAsset, describe
from marketplace_assets.assets.exports import build_export_asset
from marketplace_assets.partitions import partitions_for, period_windows, window_of
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.fetch import Window, fetch_report
from marketplace_assets.reports.report import Family, Report


def build_report_asset(report: Report, *, start_date: date, sandbox: bool) -> dg.AssetsDefinition:
    if report.family is Family.ASYNC_EXPORT:
        return build_export_asset(report, start_date=start_date, sandbox=sandbox)
    partitions_def = partitions_for(report.cadence, start_date)
    shape = MarketplaceAsset(
        report.key,
        report.invariants,
        partitions_def,
        report.partition_column if partitions_def is not None else None,
        report.merge_keys,
    )

    # A backfill of any range is one run and one ranged request per endpoint, not one per day.
    @shape.define(
        description=describe(report.summary, report.window, report.request, sandbox=sandbox),
        sandbox=sandbox,
        endpoint=report.endpoint,
    )
    def _report_asset(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource, pii: PiiPolicy
    ) -> Iterator[Any]:
        with shape.api_run(context, marketplace) as run:
            windows = _request_windows(context, report)
            frames = [fetch_report(run.client, report, marketplace.developer_id, w) for w in windows]
            frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
            if windows[0] is None or windows[-1] is None:
                output = run.output(frame)
            else:
                span = f"{windows[0].start.isoformat()} to {windows[-1].end.isoformat()}"
                output = run.output(frame, window=span)
            yield from shape.finish(context, output, pii)

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
    """One asset per catalog row, export-backed rows included."""
    return [build_report_asset(r, start_date=start_date, sandbox=sandbox) for r in reports]
