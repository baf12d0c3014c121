"""Reports pulled through async exports (catalog rows of `Family.ASYNC_EXPORT`): transactions, licenses
(every version kept), marketing attribution; and `licenses/current`, the latest version of each license.

A run either gets a finished export from its sensor (run config: the export's id and hrefs) or, when it
was launched some other way (a UI backfill, a manual materialization), starts and polls its own export
with the same lifecycle code. Either way a range is one export, never one per day.
"""

from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from marketplace_assets.api.exports import (
    ExportHandle,
    Lifecycle,
    await_download,
    count_export_records,
    run_export,
)
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import MarketplaceAsset, describe
from marketplace_assets.partitions import partitions_for, window_of
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.catalog import LICENSES_EXPORT
from marketplace_assets.reports.completeness import collapse_staged_duplicates, reconcile
from marketplace_assets.reports.export_files import stage_export
from marketplace_assets.reports.export_rows import date_records, describe_dating, rows_in_window
from marketplace_assets.reports.invariants import Invariants
from marketplace_assets.reports.report import Report
from marketplace_assets.warehouse.batches import keep_latest


class ExportRunConfig(dg.Config):
    """Set by the export sensor; empty when the run starts its own export."""

    export_id: str = Field(default="", description="A finished export to download (set by the sensor)")
    status_href: str = ""
    download_href: str = ""
    expected_records: int | None = Field(
        default=None,
        description="The list's totalCount for the export's filters, taken by the sensor before it started "
        "the export; the file must hold at least this many records",
    )
    failure: str = Field(default="", description="Set by the sensor when an export failed for good")


def build_export_asset(report: Report, *, start_date: date, sandbox: bool) -> dg.AssetsDefinition:
    export = report.export_spec
    column = report.partition_column
    assert column is not None, f"{report.label}: an export-backed report has a partition column"
    shape = MarketplaceAsset(
        report.key, report.invariants, partitions_for(report.cadence, start_date), column, report.merge_keys
    )

    @shape.define(
        description=describe(report.summary, report.window, report.request, sandbox=sandbox),
        sandbox=sandbox,
        export=export.kind.name,
    )
    def _export_asset(
        context: dg.AssetExecutionContext,
        config: ExportRunConfig,
        marketplace: MarketplaceResource,
        pii: PiiPolicy,
    ) -> Iterator[Any]:
        window = window_of(context)
        if config.failure:
            raise dg.Failure(f"{report.label}, days {window.start}..{window.end}: {config.failure}")
        with shape.api_run(context, marketplace) as run:
            params = export.params(window)
            lifecycle = _lifecycle(marketplace)

            def count() -> int | None:
                return count_export_records(run.client, marketplace.developer_id, export.kind, params)

            if config.export_id:
                handle = ExportHandle(config.export_id, config.status_href, config.download_href)
                expected = config.expected_records
                context.log.info(
                    f"{report.label}: downloading export {handle.export_id} for {window.start}..{window.end}"
                )
                path = await_download(run.client, handle, lifecycle)
            else:
                expected = count()  # before the export starts: the file must hold at least as many
                handle, path = run_export(
                    run.client, marketplace.developer_id, export.kind, params, lifecycle=lifecycle,
                    log=context.log.info,
                )  # fmt: skip
            dated_by: Counter[str] = Counter()

            def shape_batch(batch: pl.DataFrame) -> pl.DataFrame:
                batch, used = date_records(report, batch)
                dated_by.update(used)
                return rows_in_window(batch, column, window)

            try:
                staged, records = stage_export(
                    path, handle.accept, report.label, report.date_columns, shape_batch
                )
            finally:
                path.unlink(missing_ok=True)
            try:
                verified = reconcile(
                    report.label, handle.export_id, records, expected, count, context.log.warning
                )
                if not report.merge_keys and report.invariants.unique_keys:
                    staged = collapse_staged_duplicates(
                        staged, report.label, report.invariants.unique_keys, context.log.warning
                    )
            except BaseException:
                staged.cleanup()
                raise
            dating = {"dated_by": describe_dating(report, dated_by)} if export.date_candidates else {}
            output = run.output(
                staged, export_id=handle.export_id, rows_in_export=records, completeness=verified, **dating
            )
            yield from shape.finish(context, output, pii)

    return _export_asset


def _lifecycle(marketplace: MarketplaceResource) -> Lifecycle:
    return Lifecycle(poll_interval=marketplace.export_poll_interval, deadline=marketplace.export_deadline)


def build_current_licenses_asset(*, sandbox: bool) -> dg.AssetsDefinition:
    """One row per license, its latest version; refreshed whenever licenses/licenses is."""
    summary = (
        "Every license of the account as it is now: one row per license (app_entitlement_number), its "
        "latest version. Includes licenses last changed before MARKETPLACE_START_DATE."
    )
    window = (
        "Not partitioned. Each run takes a full export of the account's licenses (the API serves each "
        "license's current version) and keeps the latest version per license; it runs after every "
        "licenses/licenses materialization."
    )
    shape = MarketplaceAsset(
        dg.AssetKey(["licenses", "current"]),
        Invariants(unique_keys=("app_entitlement_number",), identity=("app_entitlement_number",)),
    )

    @shape.define(
        description=describe(summary, window, f"POST /rest/3/{LICENSES_EXPORT.start_path}", sandbox=sandbox),
        sandbox=sandbox,
        deps=[dg.AssetKey(["licenses", "licenses"])],
        # Eager, except that it does not wait for every daily partition of the history to exist (most
        # never will: an unpartitioned asset would count them all as missing deps and never run).
        automation_condition=dg.AutomationCondition.eager().without(
            ~dg.AutomationCondition.any_deps_missing()
        ),
    )
    def current_licenses(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource, pii: PiiPolicy
    ) -> Iterator[Any]:
        with shape.api_run(context, marketplace) as run:

            def count() -> int | None:
                return count_export_records(run.client, marketplace.developer_id, LICENSES_EXPORT, {})

            expected = count()
            handle, path = run_export(
                run.client, marketplace.developer_id, LICENSES_EXPORT, {},
                lifecycle=_lifecycle(marketplace), log=context.log.info,
            )  # fmt: skip
            try:
                staged, records = stage_export(path, handle.accept, shape.label, ("last_updated",))
            finally:
                path.unlink(missing_ok=True)
            try:
                reconcile(shape.label, handle.export_id, records, expected, count, context.log.warning)
                latest, removed = keep_latest(staged, "app_entitlement_number", "last_updated")
            except BaseException:
                staged.cleanup()
                raise
            yield from shape.finish(
                context, run.output(latest, export_id=handle.export_id, duplicates_removed=removed), pii
            )

    return current_licenses
