"""Reports pulled through async exports: transactions, licenses (every version kept), marketing attribution.

A run either gets a finished export from its sensor (run config: the export's id and hrefs) or, when it
was launched some other way (a UI backfill, a manual materialization), starts and polls its own export
with the same lifecycle code. Either way a range is one export, never one per day.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from marketplace_assets.api.errors import ReportShapeError
from marketplace_assets.api.exports import (
    ExportHandle,
    ExportKind,
    Lifecycle,
    await_download,
    count_export_records,
    run_export,
)
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import describe, marketplace_asset, start_run
from marketplace_assets.partitions import window_of
from marketplace_assets.reports.completeness import collapse_staged_duplicates, reconcile
from marketplace_assets.reports.export_files import stage_export
from marketplace_assets.reports.fetch import Window
from marketplace_assets.reports.invariants import DistinctCount, Invariants
from marketplace_assets.reports.normalize import parse_dates
from marketplace_assets.warehouse.batches import keep_latest


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
    # Records with no `partition_column` are dated by the first of these fields they have (the record
    # shape is not documented: see docs/api-notes.md, "Marketing attribution").
    date_candidates: tuple[str, ...] = ()

    @property
    def key(self) -> list[str]:
        return [self.area, self.name]

    @property
    def label(self) -> str:
        return f"{self.area}/{self.name}"

    def date_records(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
        """Give every record its `partition_column` from the first candidate date field it has, and say
        which fields were used. Fails naming the fields found when a record has none of them."""
        if not self.date_candidates or not frame.height:
            return frame, {}
        present = [c for c in self.date_candidates if c in frame.columns]
        frame = parse_dates(frame, self.label, present)  # a candidate that holds no date is type drift
        dates = {c: pl.col(c) for c in present}
        source = pl.lit(None, dtype=pl.String)
        for column in reversed(present):  # the first candidate with a date wins
            source = pl.when(dates[column].is_not_null()).then(pl.lit(column)).otherwise(source)
        dated = frame.with_columns(
            pl.coalesce(list(dates.values())).alias(self.partition_column)
            if present
            else pl.lit(None, pl.Date),
            source.alias("__dated_by"),
        )
        undated = dated.filter(pl.col("__dated_by").is_null()).height
        if undated:
            raise ReportShapeError(
                self.label,
                f"{undated} of {frame.height} record(s) have no date in any of "
                f"{', '.join(self.date_candidates)} (the records have the fields {', '.join(frame.columns)})",
            )
        counts = dated.group_by("__dated_by").len()
        used = dict(zip(counts["__dated_by"].to_list(), counts["len"].to_list(), strict=True))
        return dated.drop("__dated_by"), used

    def describe_dating(self, used: Counter[str]) -> str:
        """Which date fields dated how many records, in the candidates' order."""
        return ", ".join(f"{c} ({used[c]} rows)" for c in self.date_candidates if used[c])

    def keep(self, frame: pl.DataFrame, window: Window) -> pl.DataFrame:
        """Rows of the window only: an export filtered by `lastUpdated` (on or after) also returns later
        versions, which belong to later partitions."""
        if not frame.height:
            return frame
        inside = frame[self.partition_column].is_between(window.start, window.end)
        # Filtering copies every column: skip it when nothing is outside (a million-row export).
        return frame if inside.all() else frame.filter(inside)


# How a marketing-attribution record is dated, in order: the evaluation's start date first.
ATTRIBUTION_DATE_FIELDS = (
    "evaluation_start_date",
    "evaluation_date",
    "start_date",
    "date",
    "activity_date",
    "event_date",
    "day",
)


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
            identity=("transaction_line_item_id",),
            numeric=("purchase_details_vendor_amount", "purchase_details_purchase_price"),
            figures={
                "vendor_amount": pl.col("purchase_details_vendor_amount").sum(),
                "purchase_price": pl.col("purchase_details_purchase_price").sum(),
                "transactions": DistinctCount("transaction_id"),
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
        # lastUpdated is day-granular and revisions arrive late (docs/api-notes.md, "Freshness").
        lookback_days=5,
        # The service has sent duplicate license rows (docs/api-notes.md, "Completeness"); the merge keeps
        # one, so only warn.
        invariants=Invariants(
            unique_keys=("app_entitlement_number", "last_updated"),
            identity=("app_entitlement_number", "last_updated"),
            duplicates_are_errors=False,
            figures={"licenses": DistinctCount("app_entitlement_number")},
        ),
    ),
    ExportReport(
        "marketing",
        "attribution",
        ExportKind.ATTRIBUTION,
        "Marketing attribution: customer activity on app pages (visits, evaluations, installs per app and "
        "channel) in the 30 days before an evaluation starts.",
        "One partition per day, by the evaluation's start date. The reference documents no record shape, so "
        "each record is dated by the first of these fields it has: "
        + ", ".join(ATTRIBUTION_DATE_FIELDS)
        + ". The materialization's `dated_by` metadata says which were used.",
        partition_column="date",
        date_columns=(),
        params=Window.params,
        date_candidates=ATTRIBUTION_DATE_FIELDS,
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
    expected_records: int | None = Field(
        default=None,
        description="The list's totalCount for the export's filters, taken by the sensor before it started "
        "the export; the file must hold at least this many records",
    )
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
        params = report.params(window)
        lifecycle = _lifecycle(marketplace)
        if config.export_id:
            handle = ExportHandle(config.export_id, config.status_href, config.download_href)
            expected = config.expected_records
            context.log.info(
                f"{report.label}: downloading export {handle.export_id} for {window.start}..{window.end}"
            )
            path = await_download(run.client, handle, lifecycle)
        else:
            # Counted before the export starts: the file must hold at least as many records.
            expected = count_export_records(run.client, marketplace.developer_id, report.kind, params)
            handle, path = run_export(
                run.client, marketplace.developer_id, report.kind, params, lifecycle=lifecycle,
                log=context.log.info,
            )  # fmt: skip
        dated_by: Counter[str] = Counter()

        def shape(batch: pl.DataFrame) -> pl.DataFrame:
            batch, used = report.date_records(batch)
            dated_by.update(used)
            return report.keep(batch, window)

        try:
            staged, records = stage_export(path, handle.accept, report.label, report.date_columns, shape)
        finally:
            path.unlink(missing_ok=True)
        try:
            verified = reconcile(
                report.label,
                handle.export_id,
                records,
                expected,
                lambda: count_export_records(run.client, marketplace.developer_id, report.kind, params),
                context.log.warning,
            )
            if not report.merge_keys and report.invariants.unique_keys:
                staged = collapse_staged_duplicates(
                    staged, report.label, report.invariants.unique_keys, context.log.warning
                )
        except BaseException:
            staged.cleanup()
            raise
        extra = {"dated_by": report.describe_dating(dated_by)} if report.date_candidates else {}
        return run.output(
            staged, export_id=handle.export_id, rows_in_export=records, completeness=verified, **extra
        )

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

    @marketplace_asset(
        key=["licenses", "current"],
        description=describe(
            summary, window, f"POST /rest/3/{ExportKind.LICENSES.start_path}", sandbox=sandbox
        ),
        sandbox=sandbox,
        deps=[dg.AssetKey(["licenses", "licenses"])],
        automation_condition=dg.AutomationCondition.eager(),
        invariants=Invariants(unique_keys=("app_entitlement_number",), identity=("app_entitlement_number",)),
    )
    def current_licenses(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource
    ) -> dg.Output[pl.DataFrame]:
        run = start_run(context, marketplace, "licenses/current")
        count = lambda: count_export_records(run.client, marketplace.developer_id, ExportKind.LICENSES, {})  # noqa: E731
        expected = count()
        handle, path = run_export(
            run.client, marketplace.developer_id, ExportKind.LICENSES, {}, lifecycle=_lifecycle(marketplace),
            log=context.log.info,
        )  # fmt: skip
        try:
            staged, records = stage_export(path, handle.accept, "licenses/current", ("last_updated",))
        finally:
            path.unlink(missing_ok=True)
        try:
            reconcile("licenses/current", handle.export_id, records, expected, count, context.log.warning)
            latest, removed = keep_latest(staged, "app_entitlement_number", "last_updated")
        except BaseException:
            staged.cleanup()
            raise
        return run.output(latest, export_id=handle.export_id, duplicates_removed=removed)

    return current_licenses
