"""The export-only reports derived from the license cohorts: marketing attribution (one row per app,
day and channel) and the free starter tier (the active free starter tier entitlements on a day)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from marketplace_assets.sandbox.data import DATA_START, World, daily_mean, draw_count, split, units
from marketplace_assets.sandbox.licensing_data import cohort, group, make_license, tier_label

# --- marketing attribution -------------------------------------------------------------------------

CHANNELS = (
    ("Marketplace search", "marketplace", "search", 30.0), ("Organic search", "google", "organic", 25.0),
    ("Direct", "(direct)", "(none)", 15.0), ("Referral", "partner-blog", "referral", 10.0),
    ("Paid search", "google", "cpc", 10.0), ("Email", "newsletter", "email", 5.0),
    ("Social", "linkedin", "social", 5.0),
)  # fmt: skip
ATTRIBUTION_COLUMNS = (
    "date", "addonKey", "addonName", "productId", "channel", "source", "medium", "campaign",
    "referrerDomain", "visits", "uniqueVisitors", "evaluations", "installs",
)  # fmt: skip


def attribution_rows(world: World, day: date, product_ids: frozenset[str] | None) -> list[dict[str, Any]]:
    """One row per app and channel for a day: the activity before evaluations started that day.

    `evaluations` splits the cohort's evaluation licenses over the channels; `installs` adds the free
    licenses, so both agree with the licenses report."""
    rows = []
    weights = [c[3] for c in CHANNELS]
    for index, app in enumerate(world.apps):
        if product_ids is not None and app.product_id not in product_ids:
            continue
        groups = cohort(world, index, day)
        u = units(world.seed, app.product_id, "attribution", day.isoformat(), n=3 * len(CHANNELS) + 2)
        evaluations = split(groups[1].size, weights, u[: len(CHANNELS)])
        free = split(groups[2].size, weights, u[len(CHANNELS) : 2 * len(CHANNELS)])
        installs = [e + f for e, f in zip(evaluations, free, strict=True)]
        for i, (channel, source, medium, _) in enumerate(CHANNELS):
            mean = daily_mean(world, app, 60.0 * weights[i] / 100, day) + 8 * evaluations[i]
            visits = draw_count(mean, u[2 * len(CHANNELS) + i], u[-1])
            campaign = f"{app.addon_key.rsplit('.', 1)[-1]}-{day.year}" if medium in ("cpc", "email") else ""
            referrer = {"Referral": "partner-blog.example.com", "Social": "linkedin.com"}.get(channel, "")
            rows.append({
                "date": day.isoformat(), "addonKey": app.addon_key, "addonName": app.name,
                "productId": app.product_id, "channel": channel, "source": source, "medium": medium,
                "campaign": campaign, "referrerDomain": referrer, "visits": visits + installs[i],
                "uniqueVisitors": max(installs[i], (visits * 3) // 4), "evaluations": evaluations[i],
                "installs": installs[i],
            })  # fmt: skip
    return rows


# --- free starter tier -----------------------------------------------------------------------------

FREE_STARTER_COLUMNS = (
    "date", "addonKey", "addonName", "hosting", "appEntitlementId", "appEntitlementNumber",
    "hostEntitlementNumber", "cloudId", "cloudSiteHostname", "appEdition", "tier", "licenseType", "status",
    "company", "country", "region", "maintenanceStartDate", "maintenanceEndDate",
)  # fmt: skip


def free_starter_rows(
    world: World, day: date, product_ids: frozenset[str] | None
) -> Iterator[dict[str, Any]]:
    """The entitlements on the free starter tier on `day` (active `starter` licenses); no productId."""
    start = DATA_START
    while start <= day:
        for index, app in enumerate(world.apps):
            if product_ids is not None and app.product_id not in product_ids:
                continue
            free = group(world, index, start, "free")
            for rank in range(free.hosting[0]):  # the Cloud block: only Cloud has a free starter tier
                lic = make_license(world, index, start, "free", rank)
                version = lic.version(day)
                if version is None or version.license_type != "starter" or version.status != "active":
                    continue
                ident = lic.identity
                yield {
                    "date": day.isoformat(),
                    **{k: ident[k] for k in FREE_STARTER_COLUMNS[1:9] if k in ident},
                    "appEdition": lic.edition,
                    "tier": tier_label(lic, version.tier),
                    "licenseType": lic.license_type,
                    "status": version.status,
                    **{k: ident["contactDetails"][k] for k in ("company", "country", "region")},
                    "maintenanceStartDate": ident["maintenanceStartDate"],
                    "maintenanceEndDate": version.maintenance_end.isoformat(),
                }
        start += timedelta(days=1)
