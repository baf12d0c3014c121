"""Reports pulled through async exports: transactions, licenses (every version kept), marketing attribution.

A run either gets a finished export from its sensor (run config: the export's id and hrefs) or, when it
was launched some other way (a UI backfill, a manual materialization), starts and polls its own export
with the same lifecycle code. Either way a range is one export, never one per day.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from marketplace_assets.api.exports import ExportHandle, ExportKind, Lifecycle, await_download, run_export
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import describe, marketplace_asset, start_run
from marketplace_assets.partitions import window_of
from marketplace_assets.reports.export_files import read_export
from marketplace_assets.reports.fetch import Window
from marketplace_assets.reports.invariants import Invariants


@dataclass(frozen=True)
class ExportReport:
    area: str
    name: str
    kind: ExportKind
    summary: str
    window: str
    partition_column: str
    date_columns: tuple[str, ...]
    # How a partition window becomes the export's filters.
    params: Callable[[Window], dict[str, Any]]
    merge_keys: tuple[str, ...] = ()  # set: versions are merged, never replaced
    lookback_days: int = 3  # the sensor re-exports this many recent days for late corrections
    invariants: Invariants = field(default_factory=Invariants)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> list[str]:
        return [self.area, self.name]

    @property
    def label(self) -> str:
        return f"{self.area}/{self.name}"

    def keep(self, frame: pl.DataFrame, window: Window) -> pl.DataFrame:
        """Rows of the window only: an export filtered by `lastUpdated` (on or after) also returns later
        versions, which belong to later partitions."""
        if not frame.height:
            return frame
        inside = frame[self.partition_column].is_between(window.start, window.end)
        # Filtering copies every column: skip it when nothing is outside (a million-row export).
        return frame if inside.all() else frame.filter(inside)


def _updated_since(window: Window) -> dict[str, Any]:
    return {"lastUpdated": window.start.isoformat()}


EXPORT_REPORTS: tuple[ExportReport, ...] = (
    ExportReport(
        "sales",
        "transactions",
        ExportKind.TRANSACTIONS,
        "Every sale, renewal, upgrade and refund: one row per transaction line item "
        "(transaction_line_item_id; one transaction_id can have several), with customer, purchase (price, "
        "vendor amount, discounts) "
        "and partner details.",
        "One partition per day, by sale date (purchase_details_sale_date).",
        partition_column="purchase_details_sale_date",
        date_columns=(
            "purchase_details_sale_date",
            "last_updated",
            "purchase_details_maintenance_start_date",
            "purchase_details_maintenance_end_date",
        ),
        params=Window.params,
        invariants=Invariants(
            unique_keys=("transaction_line_item_id",),
            figures={
                "vendor_amount": pl.col("purchase_details_vendor_amount").sum(),
                "purchase_price": pl.col("purchase_details_purchase_price").sum(),
                "transactions": pl.col("transaction_id").n_unique(),
            },
        ),
    ),
    ExportReport(
        "licenses",
        "licenses",
        ExportKind.LICENSES,
        "Every version of every license ever observed: a license's row changes when it converts, renews, "
        "upgrades or lapses, and each version (by last_updated) is kept. Duplicate rows the service sends "
        "are removed on app_entitlement_number + last_updated.",
        "One partition per day, by the date the license last changed (last_updated). Re-materializing a "
        "day merges: it never deletes a version stored before.",
        partition_column="last_updated",
        date_columns=("last_updated", "maintenance_start_date", "maintenance_end_date"),
        params=_updated_since,
        merge_keys=("app_entitlement_number", "last_updated"),
        lookback_days=5,  # lastUpdated is day-granular and revisions arrive late (API_FACTS)
        # The service has sent duplicate license rows (API_FACTS); the merge keeps one, so only warn.
        invariants=Invariants(
            unique_keys=("app_entitlement_number", "last_updated"),
            duplicates_are_errors=False,
            figures={"licenses": pl.col("app_entitlement_number").n_unique()},
        ),
    ),
    ExportReport(
        "marketing",
        "attribution",
        ExportKind.ATTRIBUTION,
        "Marketing attribution: visits, evaluations and installs per app, day and channel.",
        "One partition per day.",
        partition_column="date",
        date_columns=("date",),
        params=Window.params,
        invariants=Invariants(
            non_negative=("visits", "unique_visitors", "evaluations", "installs"),
            figures={n: pl.col(n).sum() for n in ("visits", "evaluations", "installs")},
        ),
    ),
)


class ExportRunConfig(dg.Config):
    """Set by the export sensor; empty when the run starts its own export."""

    export_id: str = Field(default="", description="A finished export to download (set by the sensor)")
    status_href: str = ""
    download_href: str = ""
    failure: str = Field(default="", description="Set by the sensor when an export failed for good")


def build_export_asset(
    report: ExportReport, partitions_def: dg.PartitionsDefinition, *, sandbox: bool
) -> dg.AssetsDefinition:
    extra: dict[str, Any] = {"export": report.kind.value}
    if report.merge_keys:
        extra |= {"write_mode": "merge", "merge_keys": list(report.merge_keys)}

    @marketplace_asset(
        key=report.key,
        description=describe(
            report.summary, report.window, f"POST /rest/3/{report.kind.start_path}", sandbox=sandbox
        ),
        sandbox=sandbox,
        partitions_def=partitions_def,
        partition_expr=report.partition_column,
        invariants=report.invariants,
        **extra,
    )
    def _export_asset(
        context: dg.AssetExecutionContext, config: ExportRunConfig, marketplace: MarketplaceResource
    ) -> dg.Output[pl.DataFrame]:
        window = window_of(context)
        if config.failure:
            raise dg.Failure(f"{report.label}, days {window.start}..{window.end}: {config.failure}")
        run = start_run(context, marketplace, report.label)
        if config.export_id:
            handle = ExportHandle(config.export_id, config.status_href, config.download_href)
            context.log.info(
                f"{report.label}: downloading export {handle.export_id} for {window.start}..{window.end}"
            )
            path = await_download(
                run.client, handle, Lifecycle(poll_interval=marketplace.export_poll_interval)
            )
        else:
            handle, path = run_export(
                run.client, marketplace.developer_id, report.kind, report.params(window),
                lifecycle=Lifecycle(poll_interval=marketplace.export_poll_interval), log=context.log.info,
            )  # fmt: skip
        try:
            frame = read_export(path, handle.accept, report.label, report.date_columns)
        finally:
            path.unlink(missing_ok=True)
        kept = report.keep(frame, window)
        return run.output(kept, export_id=handle.export_id, rows_in_export=frame.height)

    return _export_asset


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

    @marketplace_asset(
        key=["licenses", "current"],
        description=describe(
            summary, window, f"POST /rest/3/{ExportKind.LICENSES.start_path}", sandbox=sandbox
        ),
        sandbox=sandbox,
        deps=[dg.AssetKey(["licenses", "licenses"])],
        automation_condition=dg.AutomationCondition.eager(),
        invariants=Invariants(unique_keys=("app_entitlement_number",)),
    )
    def current_licenses(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource
    ) -> dg.Output[pl.DataFrame]:
        run = start_run(context, marketplace, "licenses/current")
        handle, path = run_export(
            run.client, marketplace.developer_id, ExportKind.LICENSES, {},
            lifecycle=Lifecycle(poll_interval=marketplace.export_poll_interval), log=context.log.info,
        )  # fmt: skip
        try:
            frame = read_export(path, handle.accept, "licenses/current", ("last_updated",))
        finally:
            path.unlink(missing_ok=True)
        latest = frame.sort("last_updated").unique("app_entitlement_number", keep="last", maintain_order=True)
        return run.output(latest, export_id=handle.export_id, duplicates_removed=frame.height - latest.height)

    return current_licenses
