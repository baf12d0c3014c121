"""The report catalog: every report the graph keeps, one row each.

A row says where the report comes from (path under /rest/3), how its response is shaped (family), how
it is partitioned (cadence) and what it means. Assets, partitions and tables are generated from it, so
adding an endpoint is a row here, a sandbox route and a sample fixture, not a new module. The few
reports that need more than a row (the product catalog snapshot, partner metrics, keywords per app)
are plain asset functions in `assets/`.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.api.exports import REPORTING, ExportKind
from marketplace_assets.reports.fetch import Window
from marketplace_assets.reports.invariants import DistinctCount, Invariants, time_series
from marketplace_assets.reports.report import Cadence, ExportSpec, Family, Report

WEEKLY_WINDOW = (
    "One partition per week, Sunday to Saturday; each row's date is the Sunday that starts its week."
)
MONTHLY_WINDOW = "One partition per month; each row's date is the 1st of its month."


def _series(
    area: str, name: str, path: str, summary: str, cadence: Cadence = Cadence.WEEKLY, **kw: object
) -> Report:
    window = WEEKLY_WINDOW if cadence == Cadence.WEEKLY else MONTHLY_WINDOW
    kw.setdefault("invariants", time_series())
    return Report(area, name, path, Family.TIME_SERIES, cadence, summary, window, **kw)  # type: ignore[arg-type]


def _evaluations(metric: str) -> Report:
    return _series(
        "evaluations",
        f"by_{metric}",
        REPORTING + "/evaluations/{metric}",
        f"New app evaluations (trials started) by {metric}, for all apps together (scope=total) "
        "and for each app.",
        path_params={"metric": metric},
        invariants=time_series("count"),
    )


def _transactions_by(metric: str) -> Report:
    return _series(
        "sales",
        f"transactions_by_{metric}",
        REPORTING + "/sales/transactions/{metric}",
        f"Sales by {metric}: transaction count, net count (refunds netted out) and revenue in USD, "
        "for all apps and for each app.",
        path_params={"metric": metric},
        # net_count and revenue go negative in a week of refunds.
        invariants=time_series("count", "net_count", "revenue"),
    )


_SALE_METRICS = {
    "churn": "Cloud churn: customers at risk and cancellations, by Monthly and Annual billing (dataset).",
    "conversion": (
        "Cloud conversions: evaluations and the evaluations that converted to paid, by conversion type."
    ),
    "renewal": "Cloud renewals: renewal opportunities and renewals, by Monthly and Annual billing (dataset).",
}


def _sale_metric(metric: str) -> Report:
    # Churn's series carry uniqueTotal, a count of unique customers over the requested window: a range
    # cannot be split into weeks afterwards, so each week is asked for on its own.
    return _series(
        "sales",
        metric,
        REPORTING + "/sales/metrics/{metric}",
        _SALE_METRICS[metric],
        path_params={"metric": metric},
        per_period=metric == "churn",
        # Churn's uniqueTotal counts unique customers: never negative, but not additive over apps.
        invariants=time_series(
            "count", non_negative=("count", "unique_total") if metric == "churn" else ("count",)
        ),
    )


def _sale_events(metric: str) -> Report:
    return Report(
        "sales",
        f"{metric}_events",
        REPORTING + "/sales/metrics/{metric}/details",
        Family.OFFSET_LIST,
        Cadence.DAILY,
        f"Each Cloud {metric} event: the app, hosting, edition, transaction and license (entitlement) "
        "it concerns.",
        "One partition per day, by the event's date (event_date).",
        records_key="events",
        path_params={"metric": metric},
        partition_column="event_date",
        date_columns=("event_date", "last_updated", "maintenance_start_date", "maintenance_end_date"),
        base_schema={"event_date": pl.Date(), "addon_key": pl.String(), "product_id": pl.String()},
        invariants=Invariants(
            unique_keys=("app_entitlement_number", "event_date", "transaction_id"),
            identity=("app_entitlement_number", "event_date"),
            non_negative=("months_valid",),
            figures={"events": pl.len(), "licenses": DistinctCount("app_entitlement_number")},
        ),
    )


def _scoped(area: str, name: str, path: str, summary: str, *counts: str) -> Report:
    invariants = Invariants(unique_keys=("scope", "product_id", "date"), non_negative=counts)
    return Report(area, name, path, Family.SCOPED_RECORDS, Cadence.MONTHLY, summary, MONTHLY_WINDOW,
                  invariants=invariants)  # fmt: skip


def _insights(name: str, path: str, what: str) -> Report:
    return Report(
        "customer_insights",
        name,
        REPORTING + f"/customer-insights/{path}",
        Family.INSIGHTS,
        Cadence.MONTHLY,
        f"Your apps' users by {what}: user count, share of your users, and the Marketplace benchmark ratio.",
        MONTHLY_WINDOW + " One row per month and group.",
        invariants=Invariants(non_negative=("users_distribution_users_count",)),
    )


def _keywords(name: str, path: str, summary: str, invariants: Invariants) -> Report:
    return Report(
        "search",
        name,
        REPORTING + path,
        Family.PERIOD_DETAILS,
        Cadence.MONTHLY,
        summary,
        "One partition per month; the figures cover that month, and each row's date is the month's 1st.",
        per_period=True,
        invariants=invariants,
    )


def _export(
    area: str,
    name: str,
    summary: str,
    window: str,
    partition_column: str,
    date_columns: tuple[str, ...],
    export: ExportSpec,
    **kw: Any,
) -> Report:
    """A report delivered by an async export, partitioned by day. A range is one export."""
    return Report(
        area, name, export.kind.start_path, Family.ASYNC_EXPORT, Cadence.DAILY, summary, window,
        partition_column=partition_column, date_columns=date_columns, export=export, **kw,
    )  # fmt: skip


# The exports with a list of the same records (its totalCount says how many an export must hold).
TRANSACTIONS_EXPORT = ExportKind(
    "transactions", REPORTING + "/sales/transactions/async/export", REPORTING + "/sales/transactions"
)
# licenses/licenses takes it by day; licenses/current takes it whole.
LICENSES_EXPORT = ExportKind("licenses", REPORTING + "/licenses/async/export", REPORTING + "/licenses")

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
    # withDataInsights adds each license's evaluation fields (evaluation_start_date, days_to_convert_eval,
    # ...): a license that converted before the history was loaded still says it was an evaluation
    # (docs/api-notes.md, "Data insights"); metrics/trial_conversion_monthly counts it from them.
    return {"lastUpdated": window.start.isoformat(), "withDataInsights": "true"}


FEEDBACK_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "addon_key": pl.String(),
    "product_id": pl.String(),
    "hosting": pl.String(),
    "app_edition": pl.String(),
    "feedback_type": pl.String(),
    "reason_key": pl.String(),
    "reason": pl.String(),
    "message": pl.String(),
    "app_entitlement_id": pl.String(),
}
LISTING_SCHEMA: dict[str, pl.DataType] = {
    "product_id": pl.String(),
    "app_key": pl.String(),
    "app_name": pl.String(),
    "state": pl.String(),
    "revision": pl.Int64(),
}

REPORTS: tuple[Report, ...] = (
    # -- evaluations -----------------------------------------------------------------------------------
    *(_evaluations(m) for m in ("country", "hosting", "partner", "region")),
    # -- sales -----------------------------------------------------------------------------------------
    *(_transactions_by(m) for m in ("country", "hosting", "partner", "region", "tier", "type")),
    *(_sale_metric(m) for m in ("churn", "conversion", "renewal")),
    *(_sale_events(m) for m in ("churn", "conversion", "renewal")),
    _export(
        "sales",
        "transactions",
        "Every sale, renewal, upgrade and refund: one row per transaction line item "
        "(transaction_line_item_id; one transaction_id can have several), with customer, purchase (price, "
        "vendor amount, discounts) and partner details.",
        "One partition per day, by sale date (purchase_details_sale_date).",
        "purchase_details_sale_date",
        (
            "purchase_details_sale_date",
            "last_updated",
            "purchase_details_maintenance_start_date",
            "purchase_details_maintenance_end_date",
        ),
        ExportSpec(TRANSACTIONS_EXPORT, Window.params),
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
    Report(
        "sales",
        "free_starter_tier",
        REPORTING + "/sales/freeStarterTier/export",
        Family.CSV_EXPORT,
        Cadence.DAILY,
        "Free starter tier usage of your Cloud apps, as the partner portal's CSV export has it.",
        "One partition per day: the export takes a single date (ranges are ignored), so a range is one "
        "download per day.",
        per_period=True,
        invariants=Invariants(
            unique_keys=("app_entitlement_number", "date"),
            identity=("app_entitlement_number", "date"),
            figures={"licenses": DistinctCount("app_entitlement_number")},
        ),
    ),
    # -- licenses --------------------------------------------------------------------------------------
    _export(
        "licenses",
        "licenses",
        "Every version of every license ever observed: a license's row changes when it converts, renews, "
        "upgrades or lapses, and each version (by last_updated) is kept. Duplicate rows the service sends "
        "are removed on app_entitlement_number + last_updated.",
        "One partition per day, by the date the license last changed (last_updated). Re-materializing a "
        "day merges: it never deletes a version stored before.",
        "last_updated",
        ("last_updated", "maintenance_start_date", "maintenance_end_date"),
        # lastUpdated is day-granular and revisions arrive late (docs/api-notes.md, "Freshness").
        ExportSpec(LICENSES_EXPORT, _updated_since, lookback_days=5),
        merge_keys=("app_entitlement_number", "last_updated"),
        # The service has sent duplicate license rows (docs/api-notes.md, "Completeness"); the merge keeps
        # one, so only warn.
        invariants=Invariants(
            unique_keys=("app_entitlement_number", "last_updated"),
            identity=("app_entitlement_number", "last_updated"),
            duplicates_are_errors=False,
            figures={"licenses": DistinctCount("app_entitlement_number")},
        ),
    ),
    # -- marketing -------------------------------------------------------------------------------------
    _export(
        "marketing",
        "attribution",
        "Marketing attribution: customer activity on app pages (visits, evaluations, installs per app and "
        "channel) in the 30 days before an evaluation starts.",
        "One partition per day, by the evaluation's start date. The reference documents no record shape, so "
        "each record is dated by the first of these fields it has: "
        + ", ".join(ATTRIBUTION_DATE_FIELDS)
        + ". The materialization's `dated_by` metadata says which were used.",
        "date",
        (),
        # The record shape is not documented: see docs/api-notes.md, "Marketing attribution".
        ExportSpec(
            ExportKind("attribution", REPORTING + "/marketing-attribution/async/export"),
            Window.params,
            date_candidates=ATTRIBUTION_DATE_FIELDS,
        ),
        invariants=Invariants(
            non_negative=("visits", "unique_visitors", "evaluations", "installs"),
            figures={n: pl.col(n).sum() for n in ("visits", "evaluations", "installs")},
        ),
    ),
    # -- feedback --------------------------------------------------------------------------------------
    Report(
        "feedback",
        "details",
        REPORTING + "/feedback/details",
        Family.OFFSET_LIST,
        Cadence.DAILY,
        "Every feedback entry customers left when they uninstalled, unsubscribed from or disabled an app: "
        "type, reason, free-text message, app, hosting and edition.",
        "One partition per day, by the date the feedback was given.",
        records_key="feedback",
        base_schema=FEEDBACK_SCHEMA,
        invariants=Invariants(figures={"feedback_entries": pl.len()}),
    ),
    *(
        _series(
            "feedback",
            f"by_{m}",
            REPORTING + "/feedback/metrics/{metric}",
            f"Feedback counts by {m}, for all apps and for each app.",
            path_params={"metric": m},
            invariants=time_series("count"),
        )
        for m in ("reason", "type")
    ),
    # -- benchmarks ------------------------------------------------------------------------------------
    _scoped(
        "benchmarks",
        "churn",
        REPORTING + "/sales/metrics/churn/benchmark",
        "Each app's monthly churn rate and isolated churn rate beside the Marketplace benchmark. The "
        "Marketplace publishes it 2-3 months late.",
        "churned_licenses",
        "total_licenses",
    ),
    _scoped(
        "benchmarks",
        "evaluations",
        REPORTING + "/benchmark/evaluations",
        "Monthly evaluation counts, month-over-month and year-to-date growth and percentiles against all "
        "partners (total) and against apps on the same base product (per app). Updated monthly.",
        "evaluation_count",
    ),
    _scoped(
        "benchmarks",
        "sales",
        REPORTING + "/benchmark/sales",
        "Monthly sales, month-over-month and year-to-date growth and percentiles against all partners. "
        "Updated quarterly (Feb, May, Aug, Nov).",
    ),
    # -- customer insights -----------------------------------------------------------------------------
    _insights("regions", "regions", "region"),
    _insights("editions", "editions", "parent product edition"),
    _insights("active_users", "active-users", "paid and non-paid activity"),
    _insights("tiers", "tiers", "parent product and user tier"),
    # -- search ----------------------------------------------------------------------------------------
    _keywords(
        "top_keywords_marketplace",
        "/search-keywords/source/marketplace",
        "The keywords people searched the Marketplace website with, and each one's share of searches.",
        Invariants(unique_keys=("date", "search_keyword"), non_negative=("percentage",)),
    ),
    _keywords(
        "top_keywords_embedded_marketplace",
        "/search-keywords/source/embedded-marketplace",
        "The keywords people searched the in-product (embedded) Marketplace with, and each one's share.",
        Invariants(unique_keys=("date", "search_keyword"), non_negative=("percentage",)),
    ),
    _keywords(
        "zero_result_keywords",
        "/zero-search-results-keywords/source/marketplace",
        "Marketplace searches that found no app, with the filters used: demand nobody serves yet.",
        Invariants(non_negative=("count",), figures={"searches": pl.col("count").sum()}),
    ),
    Report(
        "search",
        "appearances_by_app",
        REPORTING + "/search-keywords",
        Family.APPEARANCES,
        Cadence.WEEKLY,
        "How often each app appeared in Marketplace search results, and its leading keyword; the total "
        "row has all apps' appearances and the top keyword.",
        WEEKLY_WINDOW + " The leading keyword is the week's, so each week is requested on its own.",
        per_period=True,
        invariants=Invariants(
            unique_keys=("scope", "product_id", "date"), non_negative=("count", "search_appearances")
        ),
    ),
    # -- app requests ----------------------------------------------------------------------------------
    _scoped(
        "app_requests",
        "approvals",
        REPORTING + "/app-requests-and-approvals",
        "Requests by end users for an admin to install your apps, how many were approved, and the rate.",
        "app_requests",
        "app_requests_approved",
    ),
    # -- listings --------------------------------------------------------------------------------------
    Report(
        "listings",
        "apps",
        "product-listing/developer-space/{developerId}",
        Family.CURSOR_LIST,
        None,
        "The developer space's app listings as they are now: name, key, state, approval, tags, links, "
        "programs and the listing revision.",
        "Not partitioned: each run replaces the table with the current listings.",
        records_key="items",
        params={"includePrivate": True, "limit": 50},
        partition_column=None,
        date_columns=(),
        base_schema=LISTING_SCHEMA,
        invariants=Invariants(unique_keys=("product_id",), identity=("product_id",)),
    ),
)

REPORTS_BY_KEY: dict[dg.AssetKey, Report] = {r.key: r for r in REPORTS}
# The reports an export sensor keeps fresh (a schedule would start a second export for the same days).
EXPORT_REPORTS: tuple[Report, ...] = tuple(r for r in REPORTS if r.family is Family.ASYNC_EXPORT)
