"""Licenses of the simulated Marketplace, with their history, seen through a settable clock.

Licenses are born in cohorts: cohort (app, day) holds the licenses whose maintenance starts that day,
in three groups: `paid` (bought outright), `eval` (an evaluation; the first `termed` ranks convert
to a paid term 30 days later) and `free` (community, open source, demonstration and free starter tier
licenses). Each group is ordered by rank, and every fate is a prefix of the ranks: ranks [0, termed)
start a term, the last `refunds` of those are refunded after 14 days, and ranks [0, survivors[k-1])
renew for a k-th year. Hosting is a block of ranks too (Cloud, then Data Center, then Server, so
Server licenses churn first; none renews after Server end of support). Because fates are prefixes,
"which licenses have a sale on day D" is a few cohort-level numbers (`Group.renewed`), never a scan,
which is what lets `sales_data` stream a million transactions.

A license's history is a tuple of `Version`s, each dated (its `lastUpdated`). The API shows the
version current at the sandbox clock (`clock(world)`, default today); nothing after the clock exists.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property, lru_cache
from typing import Any, NamedTuple

from marketplace_assets.sandbox.customers import (
    Choice,
    customer,
    customer_count,
    entitlement_number,
    fast_digest,
    fast_units,
    uniforms16,
    uuid_text,
)
from marketplace_assets.sandbox.data import (
    DATA_START,
    SERVER_END_OF_SUPPORT,
    App,
    World,
    activity,
    draw_count,
    hosting_weights,
    popularity,
    today,
)
from marketplace_assets.sandbox.records import application_key

LICENSE_RATE = 1.0  # new licenses per app per day at volume 1 (before popularity and calendar shape)
TERM = timedelta(days=365)
EVAL_DAYS = timedelta(days=30)
REFUND_AFTER = timedelta(days=14)
MAX_RENEWALS = 12
SERVER_NEW_SALES_END = date(2021, 2, 2)
DATA_INSIGHTS_FROM = date(2018, 7, 1)
HOSTINGS = ("Cloud", "Data Center", "Server")
GROUPS = ("paid", "eval", "free")
_SHARES = (0.35, 0.45, 0.20)  # of new licenses: bought outright, evaluations, free
DUPLICATE_SHARE = 0.02  # the Marketplace bug: this share of license rows is answered twice
# Answered only with withDataInsights=true.
DATA_INSIGHTS_FIELDS = (
    "evaluationOpportunitySize", "evaluationLicense", "daysToConvertEval", "evaluationStartDate",
    "evaluationEndDate", "parentProductBillingCycle", "parentProductName", "installedOnSandbox",
    "parentProductEdition",
)  # fmt: skip
TIERS = {
    "Cloud": (10, 15, 25, 50, 100, 250, 500, 1000, 2000, 5000),
    "Data Center": (50, 100, 250, 500, 1000, 2000, 5000, 10000),
    "Server": (10, 25, 50, 100, 250, 500, 2000, 10000),
}
_DAY = timedelta(days=1)
_ZERO = timedelta(0)
_NONE_SURVIVE = (0,) * MAX_RENEWALS


_FREE_TYPES_CLOUD = Choice((("starter", 70.0), ("COMMUNITY", 15.0), ("OPEN_SOURCE", 15.0)))
_FREE_TYPES_ONPREM = Choice((("COMMUNITY", 45.0), ("OPEN_SOURCE", 35.0), ("DEMONSTRATION", 20.0)))
_EVAL_TYPES_CLOUD = Choice((("net_new_evaluation", 70.0), ("upgrade_evaluation", 15.0), ("EVALUATION", 15.0)))
_PARENT_EDITIONS = Choice((("Free", 2.0), ("Standard", 5.0), ("Premium", 2.5), ("Enterprise", 0.5)))


# --- the clock -----------------------------------------------------------------------------------


def _world(target: Any) -> World:
    return target if isinstance(target, World) else target.world


def clock(world: World) -> date:
    """The sandbox's "today" for licenses, sales and exports (default: the real UTC date)."""
    with world.lock:
        stored = world.state.get("licensing", {}).get("as_of")
    return stored or today()


def set_clock(target: Any, day: date | str | None) -> date:
    """Set the clock of a Sandbox (or its World) to `day`; None follows the real date again."""
    world = _world(target)
    value = date.fromisoformat(day) if isinstance(day, str) else day
    if value is not None and not isinstance(value, date):
        raise TypeError(f"the clock takes a date or 'YYYY-MM-DD', got {day!r}")
    with world.lock:
        world.state.setdefault("licensing", {})["as_of"] = value
    return clock(world)


# --- cohorts -------------------------------------------------------------------------------------


class Group(NamedTuple):
    """One group of a cohort; see the module docstring for what the rank prefixes mean."""

    kind: str
    size: int
    hosting: tuple[int, int, int]  # Cloud, Data Center, Server block sizes, in rank order
    termed: int
    refunds: int
    survivors: tuple[int, ...]  # survivors[k - 1]: ranks renewed for a k-th year
    line_key: int = 0  # which sales are invoiced on two lines (see sales_data.lines_of)

    @property
    def anchor(self) -> timedelta:
        """From the cohort day to the start of the first term."""
        return EVAL_DAYS if self.kind == "eval" else _ZERO

    def hosting_of(self, rank: int) -> str:
        cloud, dc, _ = self.hosting
        return HOSTINGS[0] if rank < cloud else HOSTINGS[1] if rank < cloud + dc else HOSTINGS[2]

    def renewed(self, k: int, day: date) -> int:
        """How many ranks renew for a k-th year (on `day`): Server stops at Server end of support."""
        if not 1 <= k <= MAX_RENEWALS:
            return 0
        count = self.survivors[k - 1]
        return min(count, self.hosting[0] + self.hosting[1]) if day >= SERVER_END_OF_SUPPORT else count


def _survivors(start: int, retention: float, us: Sequence[float]) -> tuple[int, ...]:
    out, alive = [], start
    for k in range(MAX_RENEWALS):
        if alive:
            alive = min(alive, draw_count(alive * retention, us[2 * k], us[2 * k + 1]))
        out.append(alive)
    return tuple(out)


@lru_cache(maxsize=4096)
def _popularity(world: World, app: App) -> float:
    return popularity(world, app)


@lru_cache(maxsize=4096)
def _parent(world: World, app: App) -> str:
    return application_key(world, app).capitalize()


@lru_cache(maxsize=65536)
def _sizes(world: World, app_index: int, day: date) -> tuple[int, ...]:
    """How many licenses start on `day` for the app, per group (paid, eval, free)."""
    app = world.apps[app_index]
    u = fast_units(world.seed, app.product_id, "cohort", day.isoformat())
    mean = LICENSE_RATE * world.volume * _popularity(world, app) * activity(day)  # == data.daily_mean
    # One unbiased draw per group (`split` would give every small cohort to the biggest group).
    return tuple(draw_count(mean * share, u[2 * i], u[2 * i + 1]) for i, share in enumerate(_SHARES))


@lru_cache(maxsize=16384)
def group(world: World, app_index: int, day: date, kind: str) -> Group:
    """One group of the cohort (app, day). Cached: a sale's New and Refund look it up 14 days apart;
    the renewals of old cohorts are one-off lookups, hence groups rather than whole cohorts."""
    size = _sizes(world, app_index, day)[GROUPS.index(kind)]
    if size == 0:
        return Group(kind, 0, (0, 0, 0), 0, 0, _NONE_SURVIVE)
    app = world.apps[app_index]
    v = uniforms16(fast_digest(world.seed, app.product_id, "cohort", day.isoformat(), kind))
    server = 6.0 if day < SERVER_NEW_SALES_END else 0.0
    weights = [w for _, w in hosting_weights(day)] if kind == "eval" else [70.0, 24.0, server]
    total = sum(weights)
    d = min(size, draw_count(size * weights[1] / total, v[0], v[1]))
    s = min(size - d, draw_count(size * weights[2] / total, v[2], v[30]))
    c = size - d - s
    termed = min(size, draw_count(size * 0.3, v[3], v[4])) if kind == "eval" else size
    refunds = 0 if kind == "free" else min(termed, draw_count(termed * 0.04, v[5], v[6]))
    survivors = _survivors(termed - refunds, 0.85 if kind == "free" else 0.82, v[7:31])
    return Group(kind, size, (c, d, s), termed, refunds, survivors, int(v[31] * 10))


def cohort(world: World, app_index: int, day: date) -> tuple[Group, Group, Group]:
    """The three groups of licenses that start on `day` for world.apps[app_index]."""
    paid, evals, free = (group(world, app_index, day, kind) for kind in GROUPS)
    return paid, evals, free


# --- licenses ------------------------------------------------------------------------------------


class Version(NamedTuple):
    """What a license looks like from `day` (its lastUpdated) until the next version."""

    day: date
    status: str
    license_type: str
    tier: int
    edition: str
    maintenance_end: date
    sale_type: str | None  # the sale this version records (None: no sale)


@dataclass(eq=False)
class License:
    """One license: where it sits in its cohort, its fixed API fields, and (lazily) its history."""

    seed: int
    app: App
    day: date  # the cohort day: maintenanceStartDate
    group: Group
    rank: int
    hosting: str
    license_type: str  # of its paid or free terms (an evaluation converts to COMMERCIAL)
    eval_type: str  # the licenseType while it is an evaluation
    tier0: int  # index into the hosting's tiers
    edition: str
    duplicated: bool  # the Marketplace bug: its rows are answered twice
    parent: str  # the host product (Jira, Confluence, Bitbucket)
    partner: int  # 0: sold direct, else "Partner {n}"
    customer: dict[str, Any]  # see `customer`
    ids: bytes  # raw bytes of its identifiers
    u: list[float]  # its own uniforms (see `identity`)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.app.product_id, self.day.isoformat(), self.group.kind, self.rank)

    @cached_property
    def entitlements(self) -> tuple[str, str, str, str]:
        """appEntitlementId, appEntitlementNumber, hostEntitlementId, hostEntitlementNumber."""
        ids = self.ids
        return (
            uuid_text(ids[0:16]),
            entitlement_number(ids[16:29]),
            uuid_text(ids[29:45]),
            entitlement_number(ids[45:58]),
        )

    @property
    def cloud_id(self) -> str | None:
        return self.customer["cloudId"] if self.hosting == "Cloud" else None

    @property
    def parent_edition(self) -> str:
        return _PARENT_EDITIONS(self.u[6]) if self.hosting == "Cloud" else "NA"

    @property
    def compliance(self) -> list[str]:
        return [("fedramp_moderate" if self.u[7] < 0.03 else "commercial")] if self.hosting == "Cloud" else []

    @cached_property
    def identity(self) -> dict[str, Any]:
        """The API fields that never change (treat as read-only)."""
        u, app, day, grp, hosting = self.u, self.app, self.day, self.group, self.hosting
        cloud = hosting == "Cloud"
        insights = day >= DATA_INSIGHTS_FROM
        evaluated = grp.kind == "eval" and insights
        start = day.isoformat()
        app_id, app_number, host_id, host_number = self.entitlements
        return {
            "appEntitlementId": app_id,
            "appEntitlementNumber": app_number,
            "hostEntitlementId": host_id,
            "hostEntitlementNumber": host_number,
            "cloudId": self.cloud_id,
            "cloudSiteHostname": self.customer["cloudSiteHostname"] if cloud else None,
            "addonKey": app.addon_key,
            "productId": app.product_id,
            "addonName": app.name,
            "hosting": hosting,
            "newBillingSystem": "Yes" if cloud else "No",
            "maintenanceStartDate": start,
            "contactDetails": self.customer["contactDetails"],
            "extendedServerSupport": "NA" if hosting != "Server" else ("Yes" if u[3] < 0.2 else "No"),
            "evaluationOpportunitySize": str(TIERS[hosting][self.tier0]) if evaluated else "NA",
            "evaluationLicense": app_id if evaluated else None,
            "daysToConvertEval": str(EVAL_DAYS.days) if evaluated and self.rank < grp.termed else "NA",
            "evaluationStartDate": start if evaluated else None,
            "evaluationEndDate": self.term_start.isoformat() if evaluated else None,
            "parentProductBillingCycle": ("Annual" if u[4] < 0.3 else "Monthly") if cloud else "NA",
            "parentProductName": self.parent if insights else None,
            "installedOnSandbox": "Yes" if u[5] < 0.05 else "No",
            "parentProductEdition": self.parent_edition,
            "licenseSourceType": "Non-Atlassian",
            "transactionAccountId": uuid_text(self.ids[64:80]),
            "cloudComplianceBoundaries": self.compliance,
        }

    @property
    def term_start(self) -> date:
        return self.day + self.group.anchor

    @property
    def sells(self) -> bool:
        return self.group.kind != "free"

    def tiers(self, k: int) -> list[int]:
        """The tier index of terms 0..k: each renewal may move one tier up or down (sales only)."""
        out = [self.tier0]
        if k >= 1 and self.sells:
            rolls = fast_units(self.seed, *self.key, "terms")
            top = len(TIERS[self.hosting]) - 1
            for j in range(1, k + 1):
                out.append(min(top, max(0, out[-1] + _step(rolls[j]))))
        else:
            out.extend([self.tier0] * max(0, k))
        return out

    @cached_property
    def versions(self) -> tuple[Version, ...]:
        """Every version, oldest first: creation, conversion or expiry, renewals, refund, churn."""
        day, group, rank, edition = self.day, self.group, self.rank, self.edition
        t0 = self.term_start
        out: list[Version] = []
        if group.kind == "eval":
            out.append(Version(day, "active", self.eval_type, self.tier0, edition, t0, None))
            if rank >= group.termed:
                out.append(Version(t0 + _DAY, "inactive", self.eval_type, self.tier0, edition, t0, None))
        if rank >= group.termed:
            return tuple(out)
        lt, new = self.license_type, "New" if self.sells else None
        out.append(Version(t0, "active", lt, self.tier0, edition, t0 + TERM, new))
        if rank >= group.termed - group.refunds:
            end = t0 + REFUND_AFTER
            return (*out, Version(end, "cancelled", lt, self.tier0, edition, end, "Refund"))
        k = 1
        while rank < group.renewed(k, t0 + k * TERM):
            k += 1
        tiers = self.tiers(k - 1)
        for j in range(1, k):
            start = t0 + j * TERM
            out.append(
                Version(start, "active", lt, tiers[j], edition, start + TERM, self.sale_type(tiers, j))
            )
        end = t0 + k * TERM
        return (*out, Version(end + _DAY, "inactive", lt, tiers[-1], edition, end, None))

    def sale_type(self, tiers: Sequence[int], k: int) -> str | None:
        """The sale recorded by term k >= 1 (None for free licenses)."""
        if not self.sells:
            return None
        return "Upgrade" if tiers[k] > tiers[k - 1] else "downgrade" if tiers[k] < tiers[k - 1] else "Renewal"

    def version(self, as_of: date) -> Version | None:
        """The version current on `as_of` (None: the license does not exist yet)."""
        versions = self.versions
        index = bisect_right([v.day for v in versions], as_of)
        return versions[index - 1] if index else None


def make_license(world: World, app_index: int, day: date, kind: str, rank: int) -> License:
    """A license from its cohort position: the few decisions now, its fields and history on first use."""
    grp, app = group(world, app_index, day, kind), world.apps[app_index]
    ids = fast_digest(world.seed, app.product_id, day.isoformat(), kind, rank)
    more = fast_digest(world.seed, app.product_id, day.isoformat(), kind, rank, "more")
    u = uniforms16(more)[16:]  # the first 32 bytes are ids too
    hosting = grp.hosting_of(rank)
    cloud = hosting == "Cloud"
    if kind == "free":
        license_type = (_FREE_TYPES_CLOUD if cloud else _FREE_TYPES_ONPREM)(u[0])
    else:
        license_type = "ACADEMIC" if kind == "paid" and u[0] < 0.12 else "COMMERCIAL"
    starter = license_type == "starter"
    n_tiers = len(TIERS[hosting])
    return License(
        seed=world.seed,
        app=app,
        day=day,
        group=grp,
        rank=rank,
        hosting=hosting,
        license_type=license_type,
        eval_type=_EVAL_TYPES_CLOUD(u[8]) if cloud and kind == "eval" else "EVALUATION",
        tier0=0 if starter else min(n_tiers - 1, int(u[1] ** 1.6 * n_tiers)),
        edition="Standard" if not cloud else "Free" if starter else "Advanced" if u[2] < 0.25 else "Standard",
        duplicated=u[10] < DUPLICATE_SHARE,
        parent=_parent(world, app),
        partner=0 if u[9] >= 0.2 else 1 + int(u[9] * 30),
        customer=customer(world, int.from_bytes(ids[58:64], "big") % customer_count(world)),
        ids=ids + more[:16],
        u=u,
    )


def _step(u: float) -> int:
    return 1 if u < 0.12 else -1 if u < 0.17 else 0


def tier_label(lic: License, index: int) -> str:
    return f"{TIERS[lic.hosting][index]} Users"


def first_day(start: date) -> date:
    return max(start, DATA_START)
