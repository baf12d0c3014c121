"""The product catalog snapshot CSV ("wide_public_apps_overview"): one row per public app version.

The catalog lists every vendor's public apps, so besides the sandbox's own apps (vendor
`SANDBOX_VENDOR`) it holds round(40 * scale) apps of other, generated vendors. Each app has one to three
hostings and a few versions per hosting; a snapshot dated D holds the versions released on or before D,
so an older snapshot has a subset of a newer one's rows (download counts grow with the date).
Everything is a hash of the seed: the same (seed, scale, day) gives the same bytes.

Size: about 350 rows and 130 kB at scale 1 (~380 bytes a row), growing linearly with scale: the real
file's ~150 MB is scale ~1150 (about 380,000 rows, produced in ~12 s as a stream). The scale is the sandbox's
volume unless `object_store.configure_catalog(world, scale=...)` sets it for the catalog alone.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from marketplace_assets.sandbox.data import SERVER_END_OF_SUPPORT, World, pick, stable_uuid, units
from marketplace_assets.sandbox.records import application_key, listing

# The documented columns (reference: "CSV Fields"), in a stable order.
COLUMNS = (
    "product_id",
    "marketplace_app_key",
    "marketplace_app_name",
    "vendor_name",
    "summary",
    "tag_line",
    "category_name_list",
    "version_number",
    "version_status",
    "released_at",
    "app_software_hosting",
    "parent_software_list",
    "supported_payment_model",
    "is_connect",
    "is_beta",
    "is_supported",
    "is_auto_update_strategy_available",
    "publicly_visible",
    "download_count",
    "number_of_reviews",
    "review_score",
    "average_stars",
)
SANDBOX_VENDOR = "Sandbox Software, Inc."
FOREIGN_APPS_PER_SCALE = 40
_EPOCH = date(2012, 1, 1)
_SPAN_DAYS = (date(2025, 6, 30) - _EPOCH).days

_VENDOR_WORDS = (
    "Acme", "Bright", "Clever", "Deep", "Easy", "Flux", "Green", "Hyper", "Iron", "Jolly", "Keen",
    "Lucid", "Mighty", "Nova", "Open", "Pixel", "Quick", "Rapid", "Solid", "True", "Ultra", "Vivid",
    "Wise", "Yellow", "Zen", "Alpine", "Boreal", "Cedar", "Dune", "Echo",
)  # fmt: skip
_VENDOR_SUFFIXES = (
    ("Software", 4.0), ("Labs", 3.0), ("Apps", 3.0), ("Solutions GmbH", 2.0), ("Software, Inc.", 2.0),
    ("Technologies, LLC", 1.5), ("Consulting Ltd", 1.0), ("Studio", 1.0), ("s.r.o.", 0.5), ("AG", 0.5),
)  # fmt: skip
_ADJECTIVES = (
    "Smart", "Advanced", "Simple", "Better", "Agile", "Instant", "Power", "Secure", "Visual", "Bulk",
    "Dynamic", "Easy", "Custom", "Automated", "Team", "Global", "Elegant", "Precise", "Quick", "Linked",
)  # fmt: skip
_NOUNS = (
    "Timesheets", "Checklists", "Charts", "Workflows", "Forms", "Dashboards", "Exporter", "Templates",
    "Approvals", "Roadmaps", "Backups", "Diagrams", "Reports", "Fields", "Notifications", "Translations",
    "Macros", "Sync", "Scheduler", "Planner", "Tables", "Automation", "Calendars", "Surveys",
)  # fmt: skip
_CATEGORY_NAMES = (
    "Project management", "Admin tools", "Reporting", "Workflow", "Utilities", "Integrations",
    "Documentation", "Security", "Time tracking", "Testing & QA", "IT & helpdesk",
    "Charts & diagramming", "Design tools", "Code quality", "Custom fields", "Dashboard gadgets",
)  # fmt: skip
_PHRASES = (
    "track work across projects", "automate repetitive steps", "share live reports",
    "keep audits simple", "plan releases", "collaborate with customers", "export data to Excel",
    "enforce naming conventions", "visualise dependencies", "stay compliant",
)  # fmt: skip
_PARENTS = {
    "jira": (("Jira",), ("Jira", "Jira Service Management")),
    "confluence": (("Confluence",),),
    "bitbucket": (("Bitbucket",),),
}
_PAYMENT_MODELS = (("PAID_VIA_ATLASSIAN", 65.0), ("FREE", 30.0), ("PAID_VIA_VENDOR", 5.0))
_HOSTS = (("jira", 60.0), ("confluence", 30.0), ("bitbucket", 10.0))


@dataclass(frozen=True)
class CatalogApp:
    """One catalog app (ours or another vendor's) with its per-app traits."""

    key: str
    product_id: str
    name: str
    vendor: str
    summary: str
    tag_line: str
    categories: tuple[str, ...]
    host: str
    created: date
    hostings: tuple[str, ...]
    payment_model: str
    connect: bool
    reviews: int
    stars: float


def _bool(value: bool) -> str:
    return "True" if value else "False"


def _slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _hostings(us: Sequence[float], created: date) -> tuple[str, ...]:
    hostings = []
    if us[0] < 0.85:
        hostings.append("CLOUD")
    if us[1] < 0.5 or not hostings:
        hostings.append("DATA_CENTER")
    if us[2] < 0.35 and created < SERVER_END_OF_SUPPORT:
        hostings.append("SERVER")
    return tuple(hostings)


def _foreign_app(seed: int, index: int) -> CatalogApp:
    u = units(seed, "catalog-app", index, n=16)
    vendor_index = index - int(u[0] ** 3 * min(index, 40))  # most vendors have one app, some several
    vu = units(seed, "catalog-vendor", vendor_index, n=2)
    base = _VENDOR_WORDS[vendor_index % len(_VENDOR_WORDS)]
    number = f" {vendor_index // len(_VENDOR_WORDS) + 1}" if vendor_index >= len(_VENDOR_WORDS) else ""
    vendor = f"{base}{number} {pick(_VENDOR_SUFFIXES, vu[0])}"
    tld = "de" if "GmbH" in vendor or vendor.endswith("AG") else "io" if vu[1] < 0.3 else "com"
    host = str(pick(_HOSTS, u[1]))
    adjective, noun = _ADJECTIVES[int(u[2] * len(_ADJECTIVES))], _NOUNS[int(u[3] * len(_NOUNS))]
    label = ' "Lite"' if u[4] < 0.04 else ""
    name = f"{adjective} {noun}{label} for {host.capitalize()}"
    first, second = _PHRASES[int(u[5] * len(_PHRASES))], _PHRASES[int(u[6] * len(_PHRASES))]
    summary = f"{adjective} {noun} helps teams {first}, {second}, and more."
    if u[7] < 0.03:
        summary += "\nNow with Cloud and Data Center support."
    created = _EPOCH + timedelta(days=int(u[8] * _SPAN_DAYS))
    order = units(seed, "catalog-cat", index, n=len(_CATEGORY_NAMES))
    chosen = sorted(range(len(_CATEGORY_NAMES)), key=lambda i: order[i])
    reviews = 0 if u[9] < 0.15 else 1 + int(u[10] ** 2 * 400)
    return CatalogApp(
        key=f"{tld}.{_slug(base + number)}.{host}.{adjective.lower()}-{noun.lower()}.{index}",
        product_id=stable_uuid(seed, "catalog-app", index),
        name=name,
        vendor=vendor,
        summary=summary,
        tag_line="" if u[11] < 0.2 else f"{noun} made {adjective.lower()}",
        categories=tuple(_CATEGORY_NAMES[i] for i in sorted(chosen[: 1 + int(u[12] * 3)])),
        host=host,
        created=created,
        hostings=_hostings(units(seed, "catalog-hosting", index, n=3), created),
        payment_model=str(pick(_PAYMENT_MODELS, u[13])),
        connect=u[14] < 0.6,
        reviews=reviews,
        stars=round(2.5 + 2.5 * u[15], 2),
    )


def _own_apps(world: World) -> list[CatalogApp]:
    apps = []
    for app in world.apps:
        item = listing(world, app)
        u = units(world.seed, app.product_id, "catalog", n=8)
        created = date(2018, 1, 1) + timedelta(days=int(u[0] * 1200))
        apps.append(
            CatalogApp(
                key=app.addon_key,
                product_id=app.product_id,
                name=app.name,
                vendor=SANDBOX_VENDOR,
                summary=item["summary"],
                tag_line=item["tagLine"],
                categories=tuple(tag["name"] for tag in item["tags"]["category"]),
                host=application_key(world, app),
                created=created,
                hostings=_hostings(u[1:4], created),
                payment_model="PAID_VIA_ATLASSIAN",
                connect=u[4] < 0.5,
                reviews=1 + int(u[5] * 120),
                stars=round(3.0 + 2.0 * u[6], 2),
            )
        )
    return apps


def catalog_apps(world: World, scale: float) -> list[CatalogApp]:
    """The sandbox's apps and round(40 * scale) other vendors' apps, sorted by app key."""
    foreign = [_foreign_app(world.seed, i) for i in range(max(1, round(FOREIGN_APPS_PER_SCALE * scale)))]
    return sorted([*_own_apps(world), *foreign], key=lambda app: app.key)


def _version_rows(seed: int, app: CatalogApp, hosting: str, day: date) -> Iterator[list[str]]:
    """The versions of one app for one hosting released on or before `day`."""
    head = units(seed, app.product_id, "catalog-versions", hosting, n=3)
    count = 1 + int(head[0] * (10 if hosting == "CLOUD" else 8))
    start = datetime.combine(app.created, datetime.min.time())
    released = start + timedelta(days=int(head[1] * 60), seconds=int(head[2] * 86400))
    major, minor, patch = 1, 0, 0
    parents = _PARENTS[app.host][int(head[1] * len(_PARENTS[app.host]))]
    for index in range(count):
        u = units(seed, app.product_id, "catalog-version", hosting, index, n=10)
        if index:
            released += timedelta(days=10 + int(u[0] * 150), seconds=int(u[1] * 86400))
            if u[2] < 0.1:
                major, minor, patch = major + 1, 0, 0
            elif u[2] < 0.4:
                minor, patch = minor + 1, 0
            else:
                patch += 1
        if released.date() > day or (hosting == "SERVER" and released.date() >= SERVER_END_OF_SUPPORT):
            return
        connect = hosting == "CLOUD" and app.connect
        age_days = (day - released.date()).days
        downloads = "" if hosting == "CLOUD" else str(int((5 + age_days) * (0.2 + u[3] * 3)))
        rated = app.reviews > 0
        yield [
            app.product_id,
            app.key,
            app.name,
            app.vendor,
            app.summary,
            app.tag_line,
            json.dumps(list(app.categories)),
            f"{major}.{minor}.{patch}{'-AC' if connect else ''}",
            "approved" if u[4] < 0.4 else "uninitiated",
            released.strftime("%Y-%m-%d %H:%M:%S"),
            hosting,
            json.dumps(list(parents)),
            app.payment_model,
            _bool(connect),
            _bool(u[5] < 0.05),
            _bool(index >= count - 3 or u[6] < 0.5),
            _bool(hosting == "CLOUD" or u[7] < 0.3),
            "True",
            downloads,
            str(app.reviews),
            f"{min(4.0, app.stars * 0.8):.2f}" if rated else "",
            f"{app.stars:.2f}" if rated else "",
        ]


def catalog_chunks(world: World, day: date, scale: float, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """The CSV of the snapshot dated `day` as UTF-8 chunks of about `chunk_size` bytes (header first),
    produced lazily: a 150 MB file is streamed, never held in memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for app in catalog_apps(world, scale):
        if app.created > day:
            continue
        for hosting in app.hostings:
            writer.writerows(_version_rows(world.seed, app, hosting, day))
        if buffer.tell() >= chunk_size:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")
