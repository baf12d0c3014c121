"""Transactions (sales line items) derived from the license cohorts of `licensing_data`.

A transaction is a sale recorded by a license version (`Version.sale_type`): New when a term starts
(a purchase, or an evaluation converting), Renewal/Upgrade/downgrade at each anniversary, Refund 14
days into a refunded term. The sales of a day are found from cohort-level prefix counts (see
`licensing_data`), so a day costs a few cached cohort lookups per app plus the rows themselves, and a
year of any volume can be streamed day by day. Every transaction references its license's
appEntitlementId/Number, host entitlement, cloudId, company, tier and license type.

Some sales are invoiced on two lines (same transactionId, two transactionLineItemIds). Payment status
moves from Open to Paid 0-44 days after the sale; that revision moves lastUpdated (as of the clock).
Refunds have negative amounts. Every billing period is Annual (no monthly Cloud invoices).

Volume: sales grow with apps (3 x volume) times sales per app (x volume), so about volume squared;
the year up to 2025-06-30 holds ~2,000 line items at volume 1, ~160,000 at 10, ~660,000 at 20,
~1,030,000 at 25 and ~1,530,000 at 30 (`transactions_per_year`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from marketplace_assets.sandbox.customers import fast_digest
from marketplace_assets.sandbox.data import DATA_START, World
from marketplace_assets.sandbox.license_query import norm
from marketplace_assets.sandbox.licensing_data import (
    EVAL_DAYS,
    MAX_RENEWALS,
    REFUND_AFTER,
    TERM,
    TIERS,
    Group,
    License,
    first_day,
    group,
    make_license,
    tier_label,
)

_SHARE = {"Cloud": 0.85, "Data Center": 0.75, "Server": 0.75}
_PRICE = {"Cloud": 30.0, "Data Center": 45.0, "Server": 40.0}
_PARTNER_TYPES = ("Expert", "Gold", "Platinum", "Expert", "Silver", "Expert")
_TIER_USERS = TIERS
_DIGIT_BYTES = bytes(48 + b % 10 for b in range(256))
_PARTNER_DETAILS = {
    n: {
        "partnerName": f"Partner {n}",
        "partnerType": kind,
        "billingContact": {"email": f"billing@partner{n}.example.com", "name": f"Partner {n}"},
    }
    for n, kind in enumerate(_PARTNER_TYPES, start=1)
}
_EIGHT_WORDS = struct.Struct(">8H")
_INV16 = 1 / 2**16


class Sale(NamedTuple):
    """One sale: license (app index, cohort day, group, rank) and its term number k (0: New, -1: Refund)."""

    app_index: int
    cohort_day: date
    kind: str
    rank: int
    k: int


def _sale_ranges(world: World, app_index: int, day: date) -> Iterator[tuple[Group, date, int, range]]:
    """(group, cohort day, k, ranks) of every sale of one app on one day, from prefix counts alone."""
    for kind in ("paid", "eval"):
        anchor = EVAL_DAYS if kind == "eval" else timedelta(0)
        lookups = [(0, day - anchor), (-1, day - anchor - REFUND_AFTER)]
        lookups += [(k, day - anchor - k * TERM) for k in range(1, MAX_RENEWALS + 1)]
        for k, start in lookups:
            if start < DATA_START:
                continue
            grp = group(world, app_index, start, kind)
            if k == 0:
                ranks = range(grp.termed)
            elif k == -1:
                ranks = range(grp.termed - grp.refunds, grp.termed)
            else:
                ranks = range(grp.renewed(k, day))
            if ranks:
                yield grp, start, k, ranks


def sales_on(world: World, app_index: int, day: date) -> list[Sale]:
    """Every sale of one app on one day (no license is built)."""
    return [
        Sale(app_index, start, grp.kind, rank, k)
        for grp, start, k, ranks in _sale_ranges(world, app_index, day)
        for rank in ranks
    ]


def lines_of(grp: Group, rank: int, k: int) -> int:
    """Every tenth sale (by rank, shifted per group and term) is invoiced on two lines."""
    return 2 if (rank + 3 * k + grp.line_key) % 10 == 0 else 1


@lru_cache(maxsize=16384)
def sales_count(world: World, day: date, product_ids: frozenset[str] | None) -> int:
    """Transaction rows (line items) on a day, by arithmetic on the rank ranges: builds nothing."""
    total = 0
    for index, app in enumerate(world.apps):
        if product_ids is not None and app.product_id not in product_ids:
            continue
        for grp, _, k, ranks in _sale_ranges(world, index, day):
            t = -(3 * k + grp.line_key) % 10  # ranks r with r % 10 == t have two lines
            total += len(ranks) + (ranks.stop - t + 9) // 10 - (ranks.start - t + 9) // 10
    return total


def _sale_bits(world: World, sale: Sale) -> tuple[list[float], bytes]:
    """One hash per sale: 8 uniforms (payment delay, discounts, terms) and raw id bytes."""
    app = world.apps[sale.app_index]
    raw = fast_digest(world.seed, app.product_id, sale.cohort_day.isoformat(), sale.kind, sale.rank, sale.k)
    return [x * _INV16 for x in _EIGHT_WORDS.unpack(raw[:16])], raw


def _money(x: float) -> float:
    return round(x + 0.0, 2)


def transaction_rows(world: World, sale: Sale, day: date, as_of: date) -> list[dict[str, Any]]:
    """The line items of one sale as the API answers them (key order as in the reference sample)."""
    lic = make_license(world, sale.app_index, sale.cohort_day, sale.kind, sale.rank)
    tiers = lic.tiers(max(0, sale.k))
    tier, old_tier = tiers[-1], tiers[-2] if len(tiers) > 1 else tiers[-1]
    sale_type = "New" if sale.k == 0 else "Refund" if sale.k < 0 else lic.sale_type(tiers, sale.k)
    u, raw = _sale_bits(world, sale)
    hosting, app, parent_edition = lic.hosting, lic.app, lic.parent_edition
    app_id, app_number, host_id, host_number = lic.entitlements
    refund = sale_type == "Refund"
    users = _TIER_USERS[hosting][tier]
    price = _PRICE[hosting] * users**0.75 * (0.5 if lic.license_type == "ACADEMIC" else 1.0)
    discounts = []
    if sale.k > 0 and hosting != "Cloud" and u[2] < 0.5:
        discounts.append({"type": "LOYALTY_DISCOUNT", "amount": _money(price * 0.1)})
    if u[3] < 0.08:
        discounts.append({"type": "MARKETPLACE_PROMOTION", "amount": _money(price * 0.15)})
    partner_discount = _money(price * 0.2) if lic.partner else 0.0
    purchase = price - sum(d["amount"] for d in discounts) - partner_discount
    sign = -1.0 if refund else 1.0
    paid = day + timedelta(days=int(u[1] * 45))
    from_eval = sale.kind == "eval" and sale.k == 0
    term_start = day - REFUND_AFTER if refund else day
    customer = lic.customer["customerDetails"]
    sale_day = day.isoformat()
    shares = (0.7, 0.3) if lines_of(lic.group, sale.rank, sale.k) == 2 else (1.0,)
    rows = []
    for line, share in enumerate(shares):
        line_purchase = _money(sign * purchase * share)
        row: dict[str, Any] = {
            "transactionId": _transaction_id(raw, customer["region"]),
            "addonKey": app.addon_key,
            "productId": app.product_id,
            "addonName": app.name,
            "lastUpdated": paid.isoformat() if paid <= as_of else sale_day,
            "appEdition": lic.edition,
            "paymentStatus": "Paid" if paid <= as_of else "Open",
            "customerDetails": customer,
            "purchaseDetails": {
                "saleDate": sale_day,
                "licenseType": lic.license_type,
                "hosting": hosting,
                "changeInBillingPeriod": "No",
                "oldBillingPeriod": "Annual",
                "billingPeriod": "Annual",
                "changeInTier": "Not Applicable" if sale.k <= 0 else ("Yes" if old_tier != tier else "No"),
                "oldTier": "Evaluation" if from_eval else tier_label(lic, old_tier),
                "tier": tier_label(lic, tier),
                "parentProductName": lic.parent,
                "changeInParentProductEdition": "No",
                "oldParentProductEdition": parent_edition,
                "parentProductEdition": parent_edition,
                "purchasePrice": line_purchase,
                "vendorAmount": _money(line_purchase * _SHARE[hosting]),
                "partnerDiscountAmount": _money(sign * partner_discount * share),
                "discounts": [{**d, "amount": _money(sign * d["amount"] * share)} for d in discounts],
                "saleType": sale_type,
                "maintenanceStartDate": term_start.isoformat(),
                "maintenanceEndDate": (term_start + TERM).isoformat(),
                "paymentTerms": "Net30" if u[4] < 0.7 else "Upfront",
            },
        }
        if lic.partner:
            row["partnerDetails"] = _PARTNER_DETAILS[lic.partner]
        row["appEntitlementId"], row["appEntitlementNumber"] = app_id, app_number
        row["hostEntitlementId"], row["hostEntitlementNumber"] = host_id, host_number
        row["cloudId"] = lic.cloud_id
        row["transactionLineItemId"] = _line_id(raw[16:32], line)
        if hosting == "Cloud":
            row["cloudComplianceBoundaries"] = lic.compliance
        rows.append(row)
    return rows


def _transaction_id(raw: bytes, region: str) -> str:
    digits = raw[32:41].translate(_DIGIT_BYTES).decode()
    return f"IN-{'EU-' if region == 'EMEA' else ''}{digits[:3]}-{digits[3:6]}-{digits[6:9]}"


def transaction_id(world: World, sale: Sale, lic: License) -> str:
    """The transactionId of a sale's line items, without building them (license events cite it)."""
    return _transaction_id(_sale_bits(world, sale)[1], lic.customer["customerDetails"]["region"])


def _line_id(raw: bytes, line: int) -> str:
    h = bytearray(raw)
    h[15] ^= line + 1
    s = h.hex()
    return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"


_PURCHASE = (
    "saleDate", "licenseType", "hosting", "changeInBillingPeriod", "oldBillingPeriod", "billingPeriod",
    "changeInTier", "oldTier", "tier", "parentProductName", "changeInParentProductEdition",
    "oldParentProductEdition", "parentProductEdition", "purchasePrice", "vendorAmount",
    "partnerDiscountAmount", "discounts", "saleType", "maintenanceStartDate", "maintenanceEndDate",
    "paymentTerms",
)  # fmt: skip
_PERSON = ("email", "name")
TRANSACTION_COLUMNS = (
    "transactionId", "addonKey", "productId", "addonName", "lastUpdated", "appEdition", "paymentStatus",
    "customerDetails.company", "customerDetails.country", "customerDetails.region",
    *(f"customerDetails.{who}.{k}" for who in ("technicalContact", "billingContact") for k in _PERSON),
    *(f"purchaseDetails.{k}" for k in _PURCHASE),
    "partnerDetails.partnerName", "partnerDetails.partnerType",
    *(f"partnerDetails.billingContact.{k}" for k in _PERSON),
    "appEntitlementId", "appEntitlementNumber", "hostEntitlementId", "hostEntitlementNumber", "cloudId",
    "transactionLineItemId", "cloudComplianceBoundaries",
)  # fmt: skip


# --- filters and pages ---------------------------------------------------------------------------


def _users(tier: str) -> int:
    return int(tier.split(" ", 1)[0])


@dataclass(frozen=True)
class TransactionFilter:
    """The transactions list filters (saleDate window, inclusive). None means "not filtered"."""

    start: date
    end: date
    last_updated: date | None = None
    product_ids: frozenset[str] | None = None
    sale_types: frozenset[str] | None = None
    hosting: frozenset[str] | None = None
    tiers: frozenset[int] | None = None
    partner_types: frozenset[str] | None = None
    billing_periods: frozenset[str] | None = None
    payment_statuses: frozenset[str] | None = None
    editions: frozenset[str] | None = None
    text: str | None = None
    exclude_zero: bool = False

    @property
    def by_row_fields(self) -> bool:
        return any(
            value not in (None, False)
            for name, value in vars(self).items()
            if name not in ("start", "end", "product_ids")
        )

    def accepts(self, row: dict[str, Any]) -> bool:
        p = row["purchaseDetails"]
        if self.last_updated is not None and row["lastUpdated"] < self.last_updated.isoformat():
            return False
        partner = row.get("partnerDetails", {}).get("partnerType")
        checks = (
            (self.sale_types, norm(p["saleType"])),
            (self.hosting, norm(p["hosting"])),
            (self.tiers, _users(p["tier"])),
            (self.partner_types, norm(partner) if partner else None),
            (self.billing_periods, norm(p["billingPeriod"])),
            (self.payment_statuses, norm(row["paymentStatus"])),
            (self.editions, norm(row["appEdition"])),
        )
        if any(allowed is not None and value not in allowed for allowed, value in checks):
            return False
        if self.exclude_zero and p["purchasePrice"] == 0:
            return False
        if self.text:
            needle = self.text.lower()
            haystack = (row["customerDetails"]["company"], row["addonName"], row["transactionId"])
            return any(needle in value.lower() for value in haystack)
        return True

    def window(self, as_of: date) -> tuple[date, date] | None:
        lo, hi = first_day(self.start), min(self.end, as_of)
        return (lo, hi) if lo <= hi else None


def day_transactions(world: World, day: date, where: TransactionFilter, as_of: date) -> list[dict[str, Any]]:
    """The matching rows of one day, sorted by (addonKey, transactionId, transactionLineItemId)."""
    rows: list[dict[str, Any]] = []
    row_filter = where.by_row_fields
    for index, app in enumerate(world.apps):
        if where.product_ids is not None and app.product_id not in where.product_ids:
            continue
        for sale in sales_on(world, index, day):
            found = transaction_rows(world, sale, day, as_of)
            rows.extend([row for row in found if where.accepts(row)] if row_filter else found)
    rows.sort(key=lambda r: (r["addonKey"], r["transactionId"], r["transactionLineItemId"]))
    return rows


@lru_cache(maxsize=8)
def _cached_day(world: World, day: date, where: TransactionFilter, as_of: date) -> tuple[dict[str, Any], ...]:
    return tuple(day_transactions(world, day, where, as_of))


@lru_cache(maxsize=16384)
def _count(world: World, day: date, where: TransactionFilter, as_of: date) -> int:
    if not where.by_row_fields:
        return sales_count(world, day, where.product_ids)
    return len(_cached_day(world, day, where, as_of))


def transaction_page(
    world: World, where: TransactionFilter, as_of: date, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """(totalCount, the rows at [offset, offset + limit)), ordered by saleDate then addonKey."""
    total, page = 0, []
    window = where.window(as_of)
    day = window[0] if window else date.max
    while window and day <= window[1]:
        count = _count(world, day, where, as_of)
        if count and len(page) < limit and total + count > offset:
            rows = _cached_day(world, day, where, as_of)
            skip = max(0, offset - total)
            page.extend(rows[skip : skip + limit - len(page)])
        total += count
        day += timedelta(days=1)
    return total, page


def iter_transactions(world: World, where: TransactionFilter, as_of: date) -> Iterator[dict[str, Any]]:
    """Every matching row, lazily, one day at a time (nothing cached: exports can be huge)."""
    window = where.window(as_of)
    day = window[0] if window else date.max
    while window and day <= window[1]:
        yield from day_transactions(world, day, where, as_of)
        day += timedelta(days=1)


def transactions_per_year(world: World, end: date) -> int:
    """Line items in the 365 days up to `end` (cheap: counts only)."""
    return sum(sales_count(world, end - timedelta(days=i), None) for i in range(365))
