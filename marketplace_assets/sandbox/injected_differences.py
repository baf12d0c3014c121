"""The known differences between the sandbox's raw records and Atlassian's aggregates, in one place.

The sandbox computes every aggregate from its own transactions and licenses (docs/sandbox-aggregates.md).
A reconciliation against the live service never matches to the cent, though, so the sandbox serves
Atlassian's side with these deliberate, deterministic differences, and the metrics layer's checks must
explain them with their tolerances. Tests and docs refer to them by `name`.

Apps are named by position in the sandbox's app list (sorted by addonKey): the "first app" is
`world.apps[0]`, the "second app" `world.apps[1]` (the first one when there is only one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from functools import lru_cache

from marketplace_assets.sandbox.data import DATA_START, World
from marketplace_assets.sandbox.sales_aggregates import REFUND, Line, day_lines
from marketplace_assets.sandbox.sales_data import sales_on

LATE_REFUND_APP = 0
ROUNDING_APP = 1


@dataclass(frozen=True)
class InjectedDifference:
    name: str
    app: str  # which app carries it
    where: str  # the served aggregates that differ from the raw records
    what: str  # how the served figure is computed instead, and how big the difference is
    exercises: str  # the reconciliation whose tolerance must cover it


INJECTED_DIFFERENCES: tuple[InjectedDifference, ...] = (
    InjectedDifference(
        name="late_refund",
        app="the first app",
        where="sales/transactions/{metric} (every metric; the refund's week or month) and the "
        "partner-metrics recurring revenue (every month the refund's maintenance period covers)",
        what="The app's latest refund line item as of the sandbox clock (latest saleDate, then the "
        "greatest transactionLineItemId) is in sales/transactions but not yet in Atlassian's "
        "aggregates: its bucket's count is 1 lower and its revenue higher by -vendorAmount; its "
        "hosting's MRR is higher by -vendorAmount / n in each of its n months.",
        exercises="revenue_monthly vs sales/transactions_by_hosting; mrr_monthly vs "
        "partner_metrics/recurring_revenue",
    ),
    InjectedDifference(
        name="whole_dollar_revenue",
        app="the second app",
        where="sales/transactions/{metric} revenue (every element of the app; totals are the sum "
        "of the apps as served)",
        what="Each element's revenue (one series value, one week or month) is the exact sum of "
        "vendorAmount rounded to whole dollars, half away from zero: at most $0.50 off per element.",
        exercises="revenue_monthly vs sales/transactions_by_hosting",
    ),
    InjectedDifference(
        name="per_item_mrr_rounding",
        app="the second app",
        where="partner-metrics recurring revenue (every month and hosting)",
        what="Each line item's monthly share vendorAmount / n is rounded to cents (half away from "
        "zero) before summing, instead of summing exactly and rounding once: at most $0.005 per line "
        "item contributing to the month, typically a few cents.",
        exercises="mrr_monthly vs partner_metrics/recurring_revenue",
    ),
)


def by_name(name: str) -> InjectedDifference:
    return next(d for d in INJECTED_DIFFERENCES if d.name == name)


def rounding_app(world: World) -> int:
    """The index of the app with the rounding differences."""
    return min(ROUNDING_APP, len(world.apps) - 1)


def round_half_away(value: Fraction) -> int:
    """The integer nearest to value, halves away from zero (money rounding)."""
    magnitude = int(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def whole_dollars(cents: int) -> int:
    """Cents rounded to whole dollars (half away from zero), still in cents."""
    return 100 * round_half_away(Fraction(cents, 100))


@lru_cache(maxsize=64)
def late_refund(world: World, as_of: date) -> Line | None:
    """The first app's latest refund line item sold on or before `as_of` (None: it has none)."""
    day = as_of
    while day >= DATA_START:
        if any(sale.k < 0 for sale in sales_on(world, LATE_REFUND_APP, day)):
            refunds = [
                line
                for line in day_lines(world, day)
                if line.app_index == LATE_REFUND_APP and line.sale_type == REFUND
            ]
            return max(refunds, key=lambda line: line.line_item_id)
        day -= timedelta(days=1)
    return None


def is_late(world: World, line: Line, as_of: date) -> bool:
    """Whether Atlassian's aggregates leave this line out (see `late_refund`)."""
    return line.app_index == LATE_REFUND_APP and line == late_refund(world, as_of)
