"""Record-shaped simulated data: feedback items and app listings.

Feedback is generated day by day (all apps of a day at once, sorted the way the service pages them)
and cached per (world, day), so paging through a large range does not regenerate earlier days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from marketplace_assets.sandbox.data import (
    SERVER_END_OF_SUPPORT,
    App,
    World,
    clamp_window,
    daily_mean,
    days,
    digest,
    draw_count,
    pick,
    stable_uuid,
    unit,
    units,
)

# --- feedback ------------------------------------------------------------------------------------

FEEDBACK_TYPES = (("uninstall", 45.0), ("unsubscribe", 35.0), ("disable", 20.0))
FEEDBACK_REASONS = (
    ("expectations", "The app did not meet my expectations", 20.0),
    ("alternative", "I found a better alternative", 15.0),
    ("appFunctionality", "The app is missing functionality I need", 15.0),
    ("cost", "The app is too expensive", 14.0),
    ("noLongerNeeded", "I no longer need the app", 18.0),
    ("technicalIssues", "The app had technical issues", 8.0),
    ("evaluationOnly", "I was only evaluating the app", 6.0),
    ("other", "Other", 4.0),
)
_MESSAGES = (
    ("", 60.0),
    ("Too expensive for our team size.", 5.0),
    ("We moved to a different tool.", 5.0),
    ("Missing the export option we need.", 4.0),
    ("Great app, but the project ended.", 4.0),
    ("Performance was slow on large projects.", 3.0),
    ("Hard to configure for our workflow.", 3.0),
    ("Only needed it for a one-off migration.", 3.0),
)
_APPLICATIONS = (("jira", 60.0), ("confluence", 30.0), ("bitbucket", 10.0))
_CLOUD_EDITIONS = (("Free", 30.0), ("Standard", 55.0), ("Advanced", 15.0))


def application_key(world: World, app: App) -> str:
    """The host product an app extends (fixed per app)."""
    return str(pick(_APPLICATIONS, unit(world.seed, app.product_id, "application")))


def feedback_count(world: World, app: App, day: date) -> int:
    u, v = units(world.seed, app.product_id, "feedback", day.isoformat(), n=2)
    return draw_count(daily_mean(world, app, 0.8, day), u, v)


def _entitlement_number(raw: bytes) -> str:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    d = [str(b % 10) for b in raw[:6]]
    a = [letters[b % len(letters)] for b in raw[6:13]]
    return f"E-{''.join(d[:3])}-{''.join(a[:3])}-{''.join(a[3:6])}-{''.join(d[3:5])}{a[6]}"


def feedback_item(world: World, app: App, day: date, index: int) -> dict[str, Any]:
    seed, key = world.seed, (app.product_id, "feedback", day.isoformat(), index)
    u = units(seed, *key, "fields", n=8)
    server = 3.0 if day < SERVER_END_OF_SUPPORT else 0.0
    hosting = pick((("Cloud", 80.0), ("Data Center", 17.0), ("Server", server)), u[0])
    cloud = hosting == "Cloud"
    reason_key, reason, _ = FEEDBACK_REASONS[pick([(i, r[2]) for i, r in enumerate(FEEDBACK_REASONS)], u[3])]
    major = 1 + (day.year - 2018) // 2
    return {
        "addonKey": app.addon_key,
        "productId": app.product_id,
        "addonVersion": f"{major}.{int(u[4] * 12)}.{int(u[5] * 6)}",
        "applicationKey": application_key(world, app),
        "hosting": hosting,
        "appEdition": pick(_CLOUD_EDITIONS, u[1]) if cloud else "Standard",
        "date": day.isoformat(),
        "feedbackType": pick(FEEDBACK_TYPES, u[2]),
        "reasonKey": reason_key,
        "reason": reason,
        "message": pick(_MESSAGES, u[6]),
        "appEntitlementId": stable_uuid(seed, *key, "entitlement"),
        "appEntitlementNumber": _entitlement_number(digest(seed, *key, "number", size=16)),
        "cloudId": stable_uuid(seed, app.product_id, "cloud", int(u[7] * 5000)) if cloud else None,
    }


# Memory bounds: a day of feedback at volume=50 is ~5,000 dicts, so only a few dozen days are kept;
# counts are small tuples and can be kept for the whole data window.
@lru_cache(maxsize=64)
def feedback_day(world: World, day: date) -> tuple[dict[str, Any], ...]:
    """Every app's feedback of one day, sorted by (addonKey, appEntitlementId). Treat as read-only."""
    items = [
        feedback_item(world, app, day, index)
        for app in world.apps
        for index in range(feedback_count(world, app, day))
    ]
    return tuple(sorted(items, key=lambda item: (item["addonKey"], item["appEntitlementId"])))


@lru_cache(maxsize=8192)
def feedback_day_counts(world: World, day: date) -> tuple[int, ...]:
    """Feedback items per app (in world.apps order) on the day. Cheap: no items are built."""
    return tuple(feedback_count(world, app, day) for app in world.apps)


def _norm(value: str) -> str:
    return value.lower().replace(" ", "").replace("_", "").replace("-", "")


@dataclass(frozen=True)
class FeedbackFilter:
    """The list filters of feedback/details. None means "not filtered"; values compare loosely."""

    product_ids: frozenset[str] | None = None
    hosting: frozenset[str] | None = None
    types: frozenset[str] | None = None
    reasons: frozenset[str] | None = None
    editions: frozenset[str] | None = None
    text: str | None = None

    @staticmethod
    def loose(values: Sequence[str]) -> frozenset[str] | None:
        return frozenset(_norm(v) for v in values) if values else None

    @property
    def by_item_fields(self) -> bool:
        return any(f is not None for f in (self.hosting, self.types, self.reasons, self.editions, self.text))

    def accepts(self, item: dict[str, Any]) -> bool:
        checks = (
            (self.product_ids, item["productId"], False),
            (self.hosting, item["hosting"], True),
            (self.types, item["feedbackType"], True),
            (self.reasons, item["reasonKey"], True),
            (self.editions, item["appEdition"], True),
        )
        for allowed, value, loose in checks:
            if allowed is not None and (_norm(value) if loose else value) not in allowed:
                return False
        if self.text:
            needle = self.text.lower()
            return needle in item["message"].lower() or needle in item["reason"].lower()
        return True


def feedback_page(
    world: World, start: date, end: date, where: FeedbackFilter, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """(totalCount, the items at [offset, offset + limit)) of the matching feedback in [start, end]."""
    total = 0
    page: list[dict[str, Any]] = []
    window = clamp_window(start, end)
    if window is None:
        return 0, page
    for day in days(*window):
        count = _matching_count(world, day, where)
        if count and len(page) < limit and total + count > offset:
            items = [item for item in feedback_day(world, day) if where.accepts(item)]
            skip = max(0, offset - total)
            page.extend(items[skip : skip + limit - len(page)])
        total += count
    return total, page


@lru_cache(maxsize=8192)
def _matching_count(world: World, day: date, where: FeedbackFilter) -> int:
    """How many of the day's items pass the filter; builds items only for item-field filters."""
    if where.by_item_fields:
        return sum(1 for item in feedback_day(world, day) if where.accepts(item))
    counts = feedback_day_counts(world, day)
    ids = where.product_ids
    return sum(n for app, n in zip(world.apps, counts, strict=True) if ids is None or app.product_id in ids)


# --- listings ------------------------------------------------------------------------------------

_CATEGORIES = (
    ("productivity", "Productivity"),
    ("workflow", "Workflow Management"),
    ("utilities", "Utilities"),
    ("reporting", "Reporting"),
    ("project-management", "Project Management"),
    ("integrations", "Integrations"),
    ("security", "Security"),
    ("admin-tools", "Admin Tools"),
)
_KEYWORDS = (
    ("automation", "Automation"),
    ("efficiency", "Efficiency"),
    ("dashboards", "Dashboards"),
    ("time-tracking", "Time Tracking"),
    ("compliance", "Compliance"),
    ("teamwork", "Teamwork"),
    ("templates", "Templates"),
    ("charts", "Charts"),
)


def _subset(options: Sequence[tuple[str, str]], us: Sequence[float], size: int) -> list[dict[str, str]]:
    chosen = sorted(range(len(options)), key=lambda i: us[i])[:size]
    return [{"id": options[i][0], "name": options[i][1]} for i in sorted(chosen)]


def listing(world: World, app: App) -> dict[str, Any]:
    """The product-listing item of an app (shape of GET /rest/3/product-listing/{productId})."""
    seed, pid = world.seed, app.product_id
    u = units(seed, pid, "listing", n=16)
    slug = app.name.lower().replace(" ", "-")
    word = app.addon_key.rsplit(".", 1)[-1]
    site = f"https://{word}.sandbox.example.com"
    programs = [
        {"id": "bugBountyParticipant", "name": "Bug Bounty Participant Program", "hostingType": "CLOUD",
         "status": "APPROVED" if u[0] < 0.6 else "NON_PARTICIPANT"},
        {"id": "cloudFortified", "name": "Cloud Fortified Program", "hostingType": "CLOUD",
         "status": "APPROVED" if u[1] < 0.4 else "NON_PARTICIPANT"},
    ]  # fmt: skip
    if u[2] < 0.5:
        programs.insert(0, {**programs[0], "hostingType": "SERVER"})
    links = {
        "issueTracker": f"{site}/issues",
        "supportTicketSystem": f"{site}/support",
        "privacy": f"{site}/privacy",
    }
    if u[3] < 0.5:
        links |= {
            "appStatusPage": f"https://status.{word}.sandbox.example.com",
            "forums": f"{site}/community",
        }
    integrations: dict[str, str] = {
        "googleAnalytics4Id": f"G-{digest(seed, pid, 'ga4', size=5).hex().upper()}"
    }
    if u[4] < 0.5:
        integrations["segmentWriteKey"] = digest(seed, pid, "segment", size=10).hex()
    submitted = f"{2018 + int(u[5] * 6)}-{1 + int(u[6] * 12):02d}-{1 + int(u[7] * 27):02d}"
    item: dict[str, Any] = {
        "productId": pid,
        "appKey": app.addon_key,
        "developerId": world.developer_id,
        "appName": app.name,
        "summary": f"{app.name} is a simulated Marketplace app served by the marketplace_assets sandbox.",
        "tagLine": f"Deterministic sample data for {word.capitalize()}",
        "images": {
            "iconFileId": stable_uuid(seed, pid, "icon"),
            "titleLogoFileId": stable_uuid(seed, pid, "logo"),
            "bannerFileId": stable_uuid(seed, pid, "banner"),
        },
        "tags": {
            "category": _subset(_CATEGORIES, units(seed, pid, "categories", n=8), 1 + int(u[8] * 2)),
            "keywords": _subset(_KEYWORDS, units(seed, pid, "keywords", n=8), 1 + int(u[9] * 3)),
        },
        "communityEnabled": u[10] < 0.6,
        "developerLinks": links,
        "thirdPartyIntegrations": integrations,
        "enrolledPrograms": programs,
        "state": "PUBLIC",
        "approvalStatus": "APPROVED",
        "approvalDetails": {
            "issueKey": f"MKPLHELP-{10000 + int(u[11] * 89999)}",
            "approvalDate": f"{submitted}T14:30:00.000Z",
            "submittedDate": f"{submitted}T09:15:30.000Z",
            "approvedBy": "marketplace-review@example.com",
        },
        "slug": slug,
        "revision": 1 + int(u[12] * 40),
        "cloudComplianceBoundary": u[13] < 0.5,
        "dataCenterReviewIssueKey": f"DCHELP-{100 + int(u[14] * 900)}",
        "hostingVisibility": {"cloud": "site", "server": None, "dataCenter": "app" if u[15] < 0.7 else None},
        "stateAfterApproval": "PUBLIC",
    }
    if u[0] < 0.3:
        item["marketingLabels"] = ["jira-servicedesk"]
    return item
