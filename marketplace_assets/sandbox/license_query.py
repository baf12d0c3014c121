"""License rows, filters, pages and lazy iteration over the licenses of `licensing_data`, as of a clock.

Counts are cached per (world, start day, filter, clock), so paging through a long history builds only
the days of the requested page once the first page has counted everything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from marketplace_assets.sandbox.data import DATA_START, World
from marketplace_assets.sandbox.licensing_data import (
    DATA_INSIGHTS_FIELDS,
    License,
    Version,
    cohort,
    first_day,
    make_license,
    tier_label,
)

# --- rows ----------------------------------------------------------------------------------------

LICENSE_FIELDS = (
    "appEntitlementId", "appEntitlementNumber", "hostEntitlementId", "hostEntitlementNumber", "cloudId",
    "cloudSiteHostname", "addonKey", "productId", "addonName", "hosting", "appEdition", "newBillingSystem",
    "lastUpdated", "licenseType", "maintenanceStartDate", "maintenanceEndDate", "status", "tier",
    "contactDetails", "extendedServerSupport", *DATA_INSIGHTS_FIELDS, "licenseSourceType",
    "transactionAccountId", "cloudComplianceBoundaries",
)  # fmt: skip
_PLAIN_FIELDS = tuple(k for k in LICENSE_FIELDS if k not in DATA_INSIGHTS_FIELDS)
_CONTACT = ("email", "name", "address1", "city", "postcode", "phone")
SMALL_VOLUME = 2.0  # up to here every day's licenses may stay cached (~10k licenses per unit of volume)


def license_row(lic: License, version: Version, insights: bool) -> dict[str, Any]:
    """The API row of a license at one of its versions (key order as in the reference sample)."""
    row = {
        **lic.identity,
        "appEdition": version.edition,
        "lastUpdated": version.day.isoformat(),
        "licenseType": version.license_type,
        "maintenanceEndDate": version.maintenance_end.isoformat(),
        "status": version.status,
        "tier": tier_label(lic, version.tier),
    }
    return {k: row[k] for k in (LICENSE_FIELDS if insights else _PLAIN_FIELDS)}


def license_columns(insights: bool) -> tuple[str, ...]:
    """The CSV header of the licenses export (dotted paths of the JSON fields)."""
    out: list[str] = []
    for key in LICENSE_FIELDS if insights else _PLAIN_FIELDS:
        if key == "contactDetails":
            for who in ("technicalContact", "billingContact"):
                out.extend(f"contactDetails.{who}.{k}" for k in _CONTACT)
            out.extend(f"contactDetails.{k}" for k in ("company", "country", "region"))
        else:
            out.append(key)
    return tuple(out)


def cohort_licenses(world: World, day: date) -> list[License]:
    """Every license of every app starting on `day`, sorted by (addonKey, appEntitlementId)."""
    out = []
    for index in range(len(world.apps)):
        for grp in cohort(world, index, day):
            out.extend(make_license(world, index, day, grp.kind, rank) for rank in range(grp.size))
    out.sort(key=lambda lic: (lic.app.addon_key, lic.entitlements[0]))
    return out


@lru_cache(maxsize=4096)
def _cached_day(world: World, day: date) -> tuple[License, ...]:
    return tuple(cohort_licenses(world, day))


def day_licenses(world: World, day: date) -> Sequence[License]:
    """`cohort_licenses`, cached for small volumes (a few MB in all); large volumes build them anew."""
    return _cached_day(world, day) if world.volume <= SMALL_VOLUME else cohort_licenses(world, day)


# --- filters and pages ---------------------------------------------------------------------------


def norm(value: str) -> str:
    """Loose comparison of enum-like values: case, spaces, `_` and `-` do not matter."""
    return value.lower().replace(" ", "").replace("_", "").replace("-", "")


def loose(values: Sequence[str]) -> frozenset[str] | None:
    return frozenset(norm(v) for v in values) if values else None


def tier_numbers(values: Sequence[str]) -> frozenset[int] | None:
    """`tier` values as user counts: "25", "25 Users" and "25users" all mean 25."""
    out = {int(digits) for v in values if (digits := "".join(ch for ch in v if ch.isdigit()))}
    return frozenset(out) if values else None


def _users(tier: str) -> int:
    return int(tier.split(" ", 1)[0])


@dataclass(frozen=True)
class LicenseFilter:
    """The licenses list filters. None means "not filtered"; enum values compare loosely."""

    start: date
    end: date
    date_type: str = "start"  # start: maintenanceStartDate in the window; end: the period overlaps it
    last_updated: date | None = None
    product_ids: frozenset[str] | None = None
    hosting: frozenset[str] | None = None
    license_types: frozenset[str] | None = None
    tiers: frozenset[int] | None = None
    statuses: frozenset[str] | None = None
    text: str | None = None

    def days(self, as_of: date) -> tuple[date, date] | None:
        """The cohort days that can match, up to the clock (None: nothing can)."""
        lo = first_day(self.start if self.date_type == "start" else DATA_START)
        hi = min(self.end, as_of)
        return (lo, hi) if lo <= hi and self.start <= self.end else None

    def accepts(self, row: dict[str, Any]) -> bool:
        if self.date_type == "end" and row["maintenanceEndDate"] < self.start.isoformat():
            return False
        if self.last_updated is not None and row["lastUpdated"] < self.last_updated.isoformat():
            return False
        checks = (
            (self.product_ids, row["productId"]),
            (self.hosting, norm(row["hosting"])),
            (self.license_types, norm(row["licenseType"])),
            (self.tiers, _users(row["tier"])),
            (self.statuses, norm(row["status"])),
        )
        if any(allowed is not None and value not in allowed for allowed, value in checks):
            return False
        if self.text:
            needle = self.text.lower()
            haystack = (
                row["contactDetails"]["company"], row["addonName"], row["addonKey"],
                row["appEntitlementNumber"], row["cloudSiteHostname"] or "",
            )  # fmt: skip
            return any(needle in value.lower() for value in haystack)
        return True


def license_rows(
    licenses: Sequence[License], where: LicenseFilter, as_of: date, insights: bool
) -> list[dict[str, Any]]:
    """The rows of these licenses as of the clock that pass the filter, duplicated rows included."""
    out = []
    for lic in licenses:
        version = lic.version(as_of)
        if version is None:
            continue
        row = license_row(lic, version, insights)
        if where.product_ids is not None and row["productId"] not in where.product_ids:
            continue
        if where.accepts(row):
            out.append(row)
            if lic.duplicated:  # the service's duplicate-row bug: an identical second row
                out.append(dict(row))
    return out


@lru_cache(maxsize=16384)
def _license_count(world: World, day: date, where: LicenseFilter, as_of: date) -> int:
    return len(license_rows(day_licenses(world, day), where, as_of, False))


def license_page(
    world: World, where: LicenseFilter, as_of: date, offset: int, limit: int, insights: bool
) -> tuple[int, list[dict[str, Any]]]:
    """(totalCount, the rows at [offset, offset + limit)), ordered by start day, addonKey, id."""
    total, page = 0, []
    window = where.days(as_of)
    day = window[0] if window else date.max
    while window and day <= window[1]:
        count = _license_count(world, day, where, as_of)
        if count and len(page) < limit and total + count > offset:
            rows = license_rows(day_licenses(world, day), where, as_of, insights)
            skip = max(0, offset - total)
            page.extend(rows[skip : skip + limit - len(page)])
        total += count
        day += timedelta(days=1)
    return total, page


def iter_licenses(
    world: World, where: LicenseFilter, as_of: date, insights: bool
) -> Iterator[dict[str, Any]]:
    """Every matching row, lazily, day by day (for exports: nothing is cached or held)."""
    window = where.days(as_of)
    day = window[0] if window else date.max
    while window and day <= window[1]:
        yield from license_rows(day_licenses(world, day), where, as_of, insights)
        day += timedelta(days=1)
