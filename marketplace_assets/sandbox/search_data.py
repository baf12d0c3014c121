"""Simulated Marketplace search: top keywords per source, zero-result searches, app appearances.

Everything is counted per day and summed over the requested window, so a month's answer is the sum of
its days. An app's appearances per keyword feed both search-keywords (per app: the sum over its
keywords, its leading keyword) and products/{productId}/search-keywords (per keyword).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from marketplace_assets.sandbox.data import (
    App,
    World,
    activity,
    bucket_of,
    clamp_window,
    daily_mean,
    days,
    digest,
    draw_count,
    units,
)

SOURCES = ("marketplace", "embedded-marketplace")
ZERO_RESULT_SOURCES = ("marketplace",)
TOP_KEYWORDS = 25  # the live service lists up to 500; the sandbox vocabulary is smaller
KEYWORDS = (
    "agile", "approval", "assets", "audit", "automation", "backup", "budget", "calendar", "charts",
    "checklist", "ci", "code review", "compliance", "confluence", "crm", "dashboard", "database",
    "diagram", "drawio", "email", "estimation", "excel", "export", "forms", "gantt", "github", "gitlab",
    "import", "incident", "jira", "kanban", "ldap", "macro", "okr", "pdf", "planning poker", "portfolio",
    "reports", "roadmap", "saml", "scriptrunner", "scrum", "security", "service desk", "slack", "sprint",
    "sso", "structure", "survey", "table", "teams", "tempo", "template", "test management", "time tracking",
    "timesheet", "translation", "workflow", "xray", "zephyr",
)  # fmt: skip
_ZERO_KEYWORDS = (
    "test", "ai assistant", "okr tracker", "sap connector", "invoice", "whatsapp", "figma sync",
    "hr onboarding", "carbon footprint", "salesforce cpq", "power bi", "notion import", "gdpr",
    "iso 27001", "risk register", "asset tracking", "meeting notes ai", "sbom", "fleet", "payroll",
)  # fmt: skip
_PRODUCT_FILTERS = ("jira", "confluence", "bitbucket", "jiraServiceManagement")
_HOSTING_FILTERS = ("cloud", "dataCenter", "server")
_CATEGORY_FILTERS = (
    "Utilities", "Time tracking", "Reporting", "Security", "Project management", "Integrations",
    "Admin tools",
)  # fmt: skip
_OTHER_FILTERS = ("Beta", "Cloud fortified apps", "Free", "Staff picks", "Rising stars")
_ZERO_COMBOS = 40
_APP_KEYWORDS = 6

# --- top keywords per source ---------------------------------------------------------------------


@lru_cache(maxsize=16)
def _ranked(seed: int, source: str) -> tuple[str, ...]:
    return tuple(sorted(KEYWORDS, key=lambda word: digest(seed, "search-rank", source, word)))


@lru_cache(maxsize=1 << 14)
def searches_day(world: World, source: str, day: date) -> tuple[int, ...]:
    """Searches per keyword (in `_ranked` order) on the source on a day, the whole Marketplace."""
    words = _ranked(world.seed, source)
    base = (150.0 if source == "marketplace" else 60.0) * world.volume * activity(day)
    u = units(world.seed, "searches", source, day.isoformat(), n=2 * len(words))
    return tuple(draw_count(base / (rank + 2), u[2 * rank], u[2 * rank + 1]) for rank in range(len(words)))


def top_keywords(world: World, source: str, start: date, end: date) -> list[dict[str, Any]]:
    """The most searched keywords of the window and their share of all searches (sum <= 100)."""
    window = clamp_window(start, end)
    if window is None:
        return []
    words = _ranked(world.seed, source)
    sums = [0] * len(words)
    for day in days(*window):
        for i, n in enumerate(searches_day(world, source, day)):
            sums[i] += n
    total = sum(sums)
    ranked = sorted((-n, word) for word, n in zip(words, sums, strict=True) if n > 0)[:TOP_KEYWORDS]
    return [{"searchKeyword": word, "percentage": round(-n / total * 100, 2)} for n, word in ranked]


# --- zero search results -------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _zero_combos(seed: int) -> tuple[tuple[str, str, str, str, str], ...]:
    combos = []
    for i in range(_ZERO_COMBOS):
        u = units(seed, "zero-combo", i, n=5)
        options = (_ZERO_KEYWORDS, _PRODUCT_FILTERS, _HOSTING_FILTERS, _CATEGORY_FILTERS, _OTHER_FILTERS)
        k, p, h, c, o = (values[int(x * len(values))] for values, x in zip(options, u, strict=True))
        combos.append((k, p, h, c, o))
    return tuple(combos)


@lru_cache(maxsize=1 << 14)
def zero_results_day(world: World, day: date) -> tuple[int, ...]:
    u = units(world.seed, "zero-results", day.isoformat(), n=2 * _ZERO_COMBOS)
    base = 0.8 * world.volume * activity(day)
    return tuple(draw_count(base / (1 + 0.25 * i), u[2 * i], u[2 * i + 1]) for i in range(_ZERO_COMBOS))


def zero_results(world: World, start: date, end: date) -> list[dict[str, Any]]:
    """Searches that found no app in the window, per keyword and filters, most frequent first."""
    window = clamp_window(start, end)
    if window is None:
        return []
    sums: dict[tuple[str, str, str, str, str], int] = {}
    combos = _zero_combos(world.seed)
    for day in days(*window):
        for combo, n in zip(combos, zero_results_day(world, day), strict=True):
            sums[combo] = sums.get(combo, 0) + n
    rows = sorted(((-n, combo) for combo, n in sums.items() if n > 0))
    keys = ("searchKeyword", "productFilter", "hostingFilter", "categoryFilter", "otherFilter")
    return [{**dict(zip(keys, combo, strict=True)), "count": -n} for n, combo in rows]


# --- appearances of the vendor's apps ------------------------------------------------------------


@lru_cache(maxsize=1024)
def app_keywords(world: World, app: App) -> tuple[str, ...]:
    """The keywords an app shows up for: its own name word first, then a few shared ones."""
    word = app.addon_key.rsplit(".", 1)[-1].rstrip("0123456789")
    shared = sorted(KEYWORDS, key=lambda kw: digest(world.seed, app.product_id, "search-keyword", kw))
    return (word, *shared[: _APP_KEYWORDS - 1])


@lru_cache(maxsize=1 << 16)
def appearances_day(world: World, app: App, day: date) -> tuple[int, ...]:
    """An app's search appearances per keyword (in `app_keywords` order) on a day."""
    u = units(world.seed, app.product_id, "appearances", day.isoformat(), n=2 * _APP_KEYWORDS)
    order = units(world.seed, app.product_id, "keyword-weights", n=_APP_KEYWORDS)
    return tuple(
        draw_count(daily_mean(world, app, 30.0 * (0.3 + order[i]) / (i + 1), day), u[2 * i], u[2 * i + 1])
        for i in range(_APP_KEYWORDS)
    )


def appearances(
    world: World, app: App, start: date, end: date, aggregation: str
) -> tuple[list[date], list[dict[date, int]]]:
    """(the buckets of the window, per keyword of the app: appearances per bucket, zeros included)."""
    window = clamp_window(start, end)
    if window is None:
        return [], []
    buckets = sorted({bucket_of(day, aggregation) for day in days(*window)})
    out: list[dict[date, int]] = [dict.fromkeys(buckets, 0) for _ in range(_APP_KEYWORDS)]
    for day in days(*window):
        bucket = bucket_of(day, aggregation)
        for i, n in enumerate(appearances_day(world, app, day)):
            out[i][bucket] += n
    return buckets, out


def _leading(counts: dict[str, int]) -> str | None:
    """The keyword with the most appearances (ties: alphabetically first); None without any."""
    best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]), default=None)
    return best[0] if best and best[1] > 0 else None


def elements(per_bucket: dict[date, int]) -> list[dict[str, Any]]:
    return [{"date": bucket.isoformat(), "count": n} for bucket, n in per_bucket.items()]


def appearances_by_app(
    world: World, start: date, end: date, aggregation: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`total` {searchAppearances, topSearchKeyword} and per app its appearances and leading keyword."""
    keyword_totals: dict[str, int] = {}
    addons = []
    for app in world.apps:
        buckets, per_keyword = appearances(world, app, start, end, aggregation)
        if not buckets:
            break
        counts = {kw: sum(b.values()) for kw, b in zip(app_keywords(world, app), per_keyword, strict=True)}
        for kw, n in counts.items():
            keyword_totals[kw] = keyword_totals.get(kw, 0) + n
        summed = {bucket: sum(b[bucket] for b in per_keyword) for bucket in buckets}
        addons.append(
            {
                "addonName": app.name,
                "addonKey": app.addon_key,
                "productId": app.product_id,
                "leadingSearchKeyword": _leading(counts),
                "searchAppearances": sum(summed.values()),
                "elements": elements(summed),
            }
        )
    total = {
        "searchAppearances": sum(a["searchAppearances"] for a in addons),
        "topSearchKeyword": _leading(keyword_totals),
    }
    return total, addons


def product_keywords(
    world: World, app: App, start: date, end: date, aggregation: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`summary` of one app and `details` per keyword it appeared for, most appearances first."""
    _, per_keyword = appearances(world, app, start, end, aggregation)
    details = [
        {"searchKeyword": kw, "keywordCount": sum(b.values()), "elements": elements(b)}
        for kw, b in zip(app_keywords(world, app), per_keyword, strict=False)
        if sum(b.values()) > 0
    ]
    details.sort(key=lambda d: (-d["keywordCount"], d["searchKeyword"]))
    summary = {
        "addonName": app.name,
        "addonKey": app.addon_key,
        "productId": app.product_id,
        "leadingSearchKeyword": details[0]["searchKeyword"] if details else None,
        "allSearchAppearances": sum(d["keywordCount"] for d in details),
    }
    return summary, details
