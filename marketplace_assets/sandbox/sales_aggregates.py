"""Aggregated sales (sales/transactions/{metric}) computed from the sandbox's own transaction rows.

`day_lines` reduces the line items of one sale day (exactly the rows `sales_data.day_transactions`
serves) to the few fields the aggregates read; it is cached per day, so the weekly/monthly reports,
the sales benchmark and the partner-metrics MRR (`recurring_revenue`) all read the same lines.

Definitions (per app, per sale day, then summed into the requested week/month buckets):
- the series value of a line: `customerDetails.country` (country), `.region` (region),
  `purchaseDetails.hosting` (hosting), `purchaseDetails.tier` (tier), `purchaseDetails.saleType`
  (type), `partnerDetails.partnerName` (partner; a line without partnerDetails is in no series);
- `count`: line items (`transactionLineItemId`), refunds included;
- `netCount`: `count` minus the refund line items (`saleType` Refund);
- `revenue`: the sum of `vendorAmount` (USD, refunds negative), summed in integer cents.
Atlassian's served figures then differ by the documented `injected_differences`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple

from marketplace_assets.sandbox.data import App, World
from marketplace_assets.sandbox.evaluation_data import app_index
from marketplace_assets.sandbox.licensing_data import HOSTINGS, TIERS
from marketplace_assets.sandbox.sales_data import TransactionFilter, day_transactions

SALES_METRICS = ("country", "hosting", "partner", "region", "tier", "type")
REFUND = "Refund"
SALE_TYPES = ("New", "Renewal", "Upgrade", "downgrade", REFUND)
_COUNTRIES = (
    "United States", "Germany", "United Kingdom", "India", "France", "Japan", "Australia", "Canada",
    "Brazil", "Netherlands", "Poland", "Spain",
)  # fmt: skip
_REGIONS = ("Americas", "EMEA", "APAC")
_PARTNERS = tuple(f"Partner {n}" for n in range(1, 7))
_TIER_LABELS = tuple(f"{users} Users" for users in sorted({u for tiers in TIERS.values() for u in tiers}))
SERIES: dict[str, tuple[str, ...]] = {
    "country": _COUNTRIES,
    "hosting": HOSTINGS,
    "partner": _PARTNERS,
    "region": _REGIONS,
    "tier": _TIER_LABELS,
    "type": SALE_TYPES,
}


class Line(NamedTuple):
    """What the aggregates read of one transaction line item."""

    app_index: int
    line_item_id: str
    entitlement_id: str
    sale_day: date
    sale_type: str
    hosting: str
    country: str
    region: str
    partner: str | None
    tier: str
    vendor_cents: int
    maintenance_start: date
    maintenance_end: date

    def value(self, metric: str) -> str | None:
        """The series this line counts in for a metric (None: in no series)."""
        return {
            "country": self.country,
            "hosting": self.hosting,
            "partner": self.partner,
            "region": self.region,
            "tier": self.tier,
            "type": self.sale_type,
        }[metric]


def cents(amount: float) -> int:
    """An API money amount (two decimals) as integer cents."""
    return round(amount * 100)


def line_of(index: int, row: dict[str, Any]) -> Line:
    p = row["purchaseDetails"]
    return Line(
        app_index=index,
        line_item_id=row["transactionLineItemId"],
        entitlement_id=row["appEntitlementId"],
        sale_day=date.fromisoformat(p["saleDate"]),
        sale_type=p["saleType"],
        hosting=p["hosting"],
        country=row["customerDetails"]["country"],
        region=row["customerDetails"]["region"],
        partner=row.get("partnerDetails", {}).get("partnerName"),
        tier=p["tier"],
        vendor_cents=cents(p["vendorAmount"]),
        maintenance_start=date.fromisoformat(p["maintenanceStartDate"]),
        maintenance_end=date.fromisoformat(p["maintenanceEndDate"]),
    )


# A day's lines at volume 1 are a handful of tuples; two years of days cover what MRR reads.
@lru_cache(maxsize=1024)
def day_lines(world: World, day: date) -> tuple[Line, ...]:
    """Every line item sold on `day`, all apps (the clock only moves payment status, not these)."""
    index = {app.addon_key: i for i, app in enumerate(world.apps)}
    rows = day_transactions(world, day, TransactionFilter(day, day), day)
    return tuple(line_of(index[row["addonKey"]], row) for row in rows)


@dataclass(frozen=True)
class SalesCell:
    """Sales of one series value: line items, line items net of refunds, vendor revenue in cents."""

    count: int
    net: int
    cents: int


def cell_of(lines: list[Line]) -> SalesCell:
    refunds = sum(1 for line in lines if line.sale_type == REFUND)
    return SalesCell(len(lines), len(lines) - refunds, sum(line.vendor_cents for line in lines))


def app_lines(world: World, app: App, day: date) -> list[Line]:
    index = app_index(world, app)
    return [line for line in day_lines(world, day) if line.app_index == index]


def sales_split(
    world: World, app: App, day: date, metric: str, lines: list[Line] | None = None
) -> dict[str, SalesCell]:
    """The day's sales of an app per series value of the metric (every series present, zeros too)."""
    chosen = app_lines(world, app, day) if lines is None else lines
    return {name: cell_of([ln for ln in chosen if ln.value(metric) == name]) for name in SERIES[metric]}


def sales_by_hosting(world: World, app: App, day: date) -> tuple[tuple[str, SalesCell], ...]:
    """The day's sales of an app per hosting, exactly as the raw rows say (the sales benchmark's base)."""
    return tuple(sales_split(world, app, day, "hosting").items())
