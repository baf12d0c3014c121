"""Atlassian's monthly recurring revenue (partner metrics RECURRING_REVENUE) from the transactions.

The MRR rule (the metrics layer implements the same rule on the warehouse independently):
- every line item of sales/transactions, refunds included as their negative amounts, contributes its
  `vendorAmount` to the MRR of its app x hosting, spread evenly over the whole months of its
  maintenance period: n = 12 * (end.year - start.year) + (end.month - start.month), at least 1, and
  vendorAmount / n in each of the n calendar months from the month of maintenanceStartDate;
- a month's MRR is the exact sum of the contributions, rounded to cents once (half away from zero);
  ARR = 12 x MRR.
Only line items sold on or before the sandbox clock exist. On a DAY, WEEK or YEAR period the MRR of a
day is the MRR of its calendar month: opening MRR is that of the month of the period's first day - 1,
closing MRR that of the month of its last day (in the window).

Movements compare each license (`appEntitlementId`) between the opening and the closing month:
zero -> positive is new, or reactivated when the license had MRR in any of the 12 months before the
opening month; positive -> zero is expired; otherwise a rise is expansion and a fall contraction.
Each movement is the exact sum over licenses rounded to cents once, so opening + new + expansion +
reactivated - contraction - expired can differ from closing by a cent or two of rounding.

Atlassian's side carries two `injected_differences`: `late_refund` (the first app's latest refund is
not in it yet) and `per_item_mrr_rounding` (the second app's monthly shares are rounded per item).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from marketplace_assets.sandbox.data import DATA_START, World
from marketplace_assets.sandbox.injected_differences import late_refund, round_half_away, rounding_app
from marketplace_assets.sandbox.sales_aggregates import Line, day_lines

# The sandbox's terms are 365 days, so a line item spreads over at most 12 months: a month's MRR reads
# the lines whose maintenance starts in it or the 11 months before (refunds are sold 14 days later).
SPREAD_MONTHS = 12
REFUND_LAG = timedelta(days=14)
REACTIVATION_LOOKBACK = 12
MOVEMENTS = ("NEW_MRR", "EXPANSION_MRR", "CONTRACTION_MRR", "REACTIVATED_MRR", "EXPIRED_MRR")
HOSTING_ATTRIBUTE = {"Cloud": "CLOUD", "Data Center": "DATA_CENTER", "Server": "SERVER"}

# Exact shares without Fractions (they are slow): an amount is counted in units of 1/UNITS of a cent,
# and UNITS = lcm(1..12) is divisible by every n of a sandbox line item (at most 12 months).
UNITS = 27720
LicenseMrr = dict[tuple[int, str], dict[str, int]]  # (app index, hosting) -> license -> MRR in units


def month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def first_of(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def months_of(start: date, end: date) -> int:
    """The n of the MRR rule: whole months from maintenance start to end, at least 1."""
    return max(1, 12 * (end.year - start.year) + (end.month - start.month))


def _share(world: World, line: Line, n: int) -> int:
    """A line's contribution to one month, in units, as Atlassian computes it."""
    if line.app_index == rounding_app(world):  # per_item_mrr_rounding: whole cents per item
        return round_half_away(Fraction(line.vendor_cents, n)) * UNITS
    if UNITS % n:
        raise ValueError(f"a maintenance period of {n} months: UNITS must be a multiple of it")
    return line.vendor_cents * (UNITS // n)


class Share(NamedTuple):
    """A line item's monthly contribution (as Atlassian computes it) and the months it covers."""

    key: tuple[int, str]  # (app index, hosting)
    license_id: str
    first_month: int
    months: int
    units: int
    line: Line


@lru_cache(maxsize=1024)
def _day_shares(world: World, day: date) -> tuple[Share, ...]:
    out = []
    for line in day_lines(world, day):
        n = months_of(line.maintenance_start, line.maintenance_end)
        key = (line.app_index, line.hosting)
        out.append(
            Share(
                key, line.entitlement_id, month_index(line.maintenance_start), n, _share(world, line, n), line
            )
        )
    return tuple(out)


@lru_cache(maxsize=128)
def license_mrr(world: World, month: int, as_of: date) -> LicenseMrr:
    """Each license's MRR (in units) in month `month` (a month_index), per (app index, hosting), as
    Atlassian serves it: the late refund left out, the second app's shares rounded per item."""
    out: LicenseMrr = defaultdict(lambda: defaultdict(int))
    late = late_refund(world, as_of)
    late_id = late.line_item_id if late is not None else None
    first = max(first_of(month - SPREAD_MONTHS + 1), DATA_START)
    last = min(first_of(month + 1) - timedelta(days=1) + REFUND_LAG, as_of)
    day = first
    while day <= last:
        for share in _day_shares(world, day):
            if 0 <= month - share.first_month < share.months and share.line.line_item_id != late_id:
                out[share.key][share.license_id] += share.units
        day += timedelta(days=1)
    return {key: dict(licenses) for key, licenses in out.items()}


def _dollars(units: int) -> float:
    """Units rounded to cents once (half away from zero), as dollars."""
    return round_half_away(Fraction(units, UNITS)) / 100


def recurring_revenue(
    world: World, index: int, first: date, last: date, as_of: date
) -> dict[str, dict[str, float]]:
    """The RECURRING_REVENUE fields of app `index` per hosting attribute value (CLOUD, DATA_CENTER,
    SERVER) for the window part [first, last] of one period."""
    opening_month, closing_month = month_index(first - timedelta(days=1)), month_index(last)
    opening, closing = license_mrr(world, opening_month, as_of), license_mrr(world, closing_month, as_of)
    earlier = [
        license_mrr(world, opening_month - back, as_of) for back in range(1, REACTIVATION_LOOKBACK + 1)
    ]
    out: dict[str, dict[str, float]] = {}
    for hosting, attribute in HOSTING_ATTRIBUTE.items():
        before, after = opening.get((index, hosting), {}), closing.get((index, hosting), {})
        moves = dict.fromkeys(MOVEMENTS, 0)
        for license_id in before.keys() | after.keys():
            a, b = before.get(license_id, 0), after.get(license_id, 0)
            if a == 0 and b > 0:
                seen = any(month.get((index, hosting), {}).get(license_id, 0) > 0 for month in earlier)
                moves["REACTIVATED_MRR" if seen else "NEW_MRR"] += b
            elif a > 0 and b == 0:
                moves["EXPIRED_MRR"] += a
            elif b > a:
                moves["EXPANSION_MRR"] += b - a
            else:
                moves["CONTRACTION_MRR"] += a - b
        closing_mrr = _dollars(sum(after.values()))
        out[attribute] = {
            "OPENING_MRR": _dollars(sum(before.values())),
            **{name: _dollars(value) for name, value in moves.items()},
            "CLOSING_MRR": closing_mrr,
            "ARR": round(closing_mrr * 12, 2),
        }
    return out
