"""The export-only reports derived from the license cohorts: marketing attribution (one row per app,
day and channel) and the free starter tier (the active free starter tier entitlements on a day).

Marketing attribution has two record shapes (`exports.ATTRIBUTION_SHAPES`, chosen per sandbox with
`exports.configure_exports(attribution_shape=...)`): "daily", flat rows with a `date`, and
"evaluation", nested rows about the 30 days of page activity before the evaluations that started on a
day (`evaluation.startDate`, `app.key`, `channel.name`, `activityWindowStart`, `pageViews`, ...). Both
come from the same generator, so visits, evaluations and installs agree row for row."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from marketplace_assets.sandbox.data import DATA_START, World, daily_mean, draw_count, split, unit, units
from marketplace_assets.sandbox.exports import columns_of
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


ACTIVITY_WINDOW_DAYS = 30
EVALUATION_ATTRIBUTION_COLUMNS = columns_of({
    "evaluation": {"startDate": None, "licenseType": None},
    "app": {"key": None, "name": None, "productId": None},
    "channel": {"name": None, "source": None, "medium": None, "campaign": None},
    "activityWindowStart": None, "pageViews": None, "visits": None, "evaluations": None, "installs": None,
})  # fmt: skip


def evaluation_attribution_row(seed: int, row: dict[str, Any]) -> dict[str, Any]:
    """A daily attribution row in the "evaluation" shape: the day is the evaluations' start day and the
    activity counts cover the `ACTIVITY_WINDOW_DAYS` days before it (pageViews: 1.5 to 3.5 per visit)."""
    start = date.fromisoformat(row["date"])
    pages_per_visit = 1.5 + 2 * unit(seed, row["productId"], "attribution-pages", row["date"], row["channel"])
    return {
        "evaluation": {"startDate": row["date"], "licenseType": "evaluation"},
        "app": {"key": row["addonKey"], "name": row["addonName"], "productId": row["productId"]},
        "channel": {
            "name": row["channel"], "source": row["source"], "medium": row["medium"],
            "campaign": row["campaign"],
        },
        "activityWindowStart": (start - timedelta(days=ACTIVITY_WINDOW_DAYS)).isoformat(),
        "pageViews": round(row["visits"] * pages_per_visit),
        "visits": row["visits"],
        "evaluations": row["evaluations"],
        "installs": row["installs"],
    }  # fmt: skip


def attribution_columns(shape: str) -> tuple[str, ...]:
    """The CSV header of an attribution export in `shape` (one of `exports.ATTRIBUTION_SHAPES`)."""
    return ATTRIBUTION_COLUMNS if shape == "daily" else EVALUATION_ATTRIBUTION_COLUMNS


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
