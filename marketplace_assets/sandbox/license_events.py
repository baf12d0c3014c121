"""Cloud churn, renewal and conversion, counted from the license history of `licensing_data`.

Only licenses that pay (groups `paid` and `eval`; free licenses never do) and are hosted on Cloud count,
as on the live service. Every paid term of the sandbox is annual (365 days), so the `Monthly` dataset
of churn and renewal is always zero and every event has `monthsValid` 12.
- A renewal opportunity arises on the day a paid term ends (`maintenanceEndDate`): a license that was
  not refunded, at the end of any of its terms.
- A renewal is an opportunity whose license starts its next term that day (a license version with a
  Renewal, Upgrade or downgrade sale dated that day). A cancellation (churn) is one whose license does
  not: its next version, dated the day after, is `inactive`. Both are dated on the opportunity day.
  The outcome of an opportunity on day D is known on D + 1, so churn and renewal count days before the
  sandbox clock.
- An evaluation counts on its start day (the license's `maintenanceStartDate`); a conversion on the day
  the evaluation becomes a paid term (`EVAL_DAYS` later, a New sale whose oldTier is "Evaluation").
  `conversionType` is "Upgrade" for an `upgrade_evaluation` license, else "Net new".
Because every fate is a prefix of a cohort group's ranks, the counts are arithmetic on the groups
(`Group.termed`, `refunds`, `renewed`) and the Cloud block (ranks [0, hosting[0])); licenses are only
built for the event details.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from marketplace_assets.sandbox.data import DATA_START, App, World
from marketplace_assets.sandbox.evaluation_data import app_index
from marketplace_assets.sandbox.licensing_data import (
    EVAL_DAYS,
    MAX_RENEWALS,
    TERM,
    Group,
    clock,
    group,
    make_license,
)
from marketplace_assets.sandbox.sales_data import Sale, transaction_id

DATASETS = ("Monthly", "Annual")
CONVERSION_TYPES = ("Net new", "Upgrade")
SALE_METRICS = ("churn", "conversion", "renewal")
MONTHS_VALID = 12  # every paid term is annual
_DAY = timedelta(days=1)


def _terms_ending(world: World, index: int, day: date) -> Iterator[tuple[Group, date, int, int, int]]:
    """(group, cohort day, term j, Cloud opportunities, Cloud renewals) of the paid terms ending on day."""
    for kind in ("paid", "eval"):
        anchor = EVAL_DAYS if kind == "eval" else timedelta(0)
        for j in range(MAX_RENEWALS + 1):
            cohort_day = day - anchor - (j + 1) * TERM
            if cohort_day < DATA_START:
                break
            grp = group(world, index, cohort_day, kind)
            cloud = grp.hosting[0]
            if not cloud:
                continue
            start = cohort_day + anchor + j * TERM
            had_term = grp.termed - grp.refunds if j == 0 else grp.renewed(j, start)
            opportunities = min(cloud, had_term)
            if opportunities:
                yield grp, cohort_day, j, opportunities, min(cloud, grp.renewed(j + 1, day))


@lru_cache(maxsize=1 << 16)
def _churn_day(world: World, index: int, day: date) -> tuple[int, int]:
    customers = renewals = 0
    for *_, opportunities, renewed in _terms_ending(world, index, day):
        customers += opportunities
        renewals += renewed
    return customers, customers - renewals


def churn_day(world: World, app: App, day: date) -> tuple[tuple[int, int], ...]:
    """(renewal opportunities, cancellations) per dataset (Monthly, Annual) on a day before the clock."""
    if day >= clock(world):
        return ((0, 0), (0, 0))
    return ((0, 0), _churn_day(world, app_index(world, app), day))


def _conversion_type(world: World, index: int, cohort_day: date, rank: int) -> int:
    lic = make_license(world, index, cohort_day, "eval", rank)
    return 1 if lic.eval_type == "upgrade_evaluation" else 0


@lru_cache(maxsize=1 << 16)
def _conversion_day(world: World, index: int, day: date) -> tuple[tuple[int, int], ...]:
    evaluations, conversions = [0, 0], [0, 0]
    started = group(world, index, day, "eval")
    for rank in range(started.hosting[0]):
        evaluations[_conversion_type(world, index, day, rank)] += 1
    cohort_day = day - EVAL_DAYS
    if cohort_day >= DATA_START:
        converted = group(world, index, cohort_day, "eval")
        for rank in range(min(converted.hosting[0], converted.termed)):
            conversions[_conversion_type(world, index, cohort_day, rank)] += 1
    return tuple(zip(evaluations, conversions, strict=True))


def conversion_day(world: World, app: App, day: date) -> tuple[tuple[int, int], ...]:
    """(Cloud evaluations started, Cloud conversions) per conversion type (Net new, Upgrade)."""
    if day > clock(world):
        return ((0, 0), (0, 0))
    return _conversion_day(world, app_index(world, app), day)


def event_count(world: World, app: App, day: date, metric: str) -> int:
    """Events of sales/metrics/{metric}/details for the app on the day (agrees with the aggregates)."""
    if metric == "churn":
        return sum(cancelled for _, cancelled in churn_day(world, app, day))
    if metric == "renewal":
        return sum(customers - cancelled for customers, cancelled in churn_day(world, app, day))
    return sum(converted for _, converted in conversion_day(world, app, day))


# --- event details -------------------------------------------------------------------------------


def _event(
    world: World, sale: Sale, metric: str, event_day: date, start: date, updated: date
) -> dict[str, Any]:
    lic = make_license(world, sale.app_index, sale.cohort_day, sale.kind, sale.rank)
    app_id, app_number, _, _ = lic.entitlements
    entitlement = {
        "appEntitlementId": app_id,
        "appEntitlementNumber": app_number,
        "cloudId": lic.cloud_id,
        "maintenanceStartDate": start.isoformat(),
        "maintenanceEndDate": (start + TERM).isoformat(),
        "monthsValid": MONTHS_VALID,
    }
    return {
        "addonKey": lic.app.addon_key,
        "productId": lic.app.product_id,
        "addonName": lic.app.name,
        "hosting": lic.hosting,
        "appEdition": lic.edition,
        "lastUpdated": updated.isoformat(),
        "eventDate": event_day.isoformat(),
        "transactionId": transaction_id(world, sale, lic),
        # Churn has no license details (sample); conversion and renewal samples nest the license there.
        "licenseDetails": None if metric == "churn" else dict(entitlement),
        **entitlement,
    }


def _app_events(world: World, index: int, metric: str, day: date) -> Iterator[dict[str, Any]]:
    if metric == "conversion":
        cohort_day = day - EVAL_DAYS
        if cohort_day < DATA_START:
            return
        grp = group(world, index, cohort_day, "eval")
        for rank in range(min(grp.hosting[0], grp.termed)):
            yield _event(world, Sale(index, cohort_day, "eval", rank, 0), metric, day, day, day)
        return
    for grp, cohort_day, j, opportunities, renewed in _terms_ending(world, index, day):
        ranks = range(renewed) if metric == "renewal" else range(renewed, opportunities)
        for rank in ranks:
            # Renewal: the sale that starts term j + 1 that day. Churn: the sale of the lapsed term j,
            # and the license turns inactive the day after.
            k, updated = (j + 1, day) if metric == "renewal" else (j, day + _DAY)
            yield _event(world, Sale(index, cohort_day, grp.kind, rank, k), metric, day, day - TERM, updated)


@lru_cache(maxsize=512)
def _events_day(world: World, metric: str, day: date) -> tuple[dict[str, Any], ...]:
    items = [item for index in range(len(world.apps)) for item in _app_events(world, index, metric, day)]
    return tuple(sorted(items, key=lambda item: (item["addonKey"], item["appEntitlementId"])))


def events_day(world: World, metric: str, day: date) -> tuple[dict[str, Any], ...]:
    """Every app's events of the day, sorted by (addonKey, appEntitlementId). Treat as read-only."""
    visible = day <= clock(world) if metric == "conversion" else day < clock(world)
    return _events_day(world, metric, day) if visible else ()
