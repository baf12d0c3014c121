"""Deterministic building blocks of the simulated Marketplace.

Every number is a pure function of (seed, app, endpoint dimension, series value, day), computed with a
keyed blake2b hash: no `random` state, no `hash()`, so two processes with the same seed serve the same
bytes. Per-day quantities are generated first and only then summed into weekly/monthly buckets, which
is what makes "four one-week requests == one four-week request" hold exactly.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

DATA_START = date(2018, 1, 1)
SERVER_END_OF_SUPPORT = date(2024, 2, 15)
_NAMESPACE = uuid.UUID("6f1c4a52-3b7e-5d0a-9c1e-5a4d2b8e7f10")

_WORDS = (
    "aurora",
    "basalt",
    "cobalt",
    "delta",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "iris",
    "juniper",
    "kestrel",
    "lumen",
    "meridian",
    "nimbus",
    "orchid",
    "prism",
    "quartz",
    "raven",
    "sierra",
    "tundra",
    "umber",
    "vertex",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
)


# --- hashing primitives -------------------------------------------------------------------------


def digest(seed: int, *parts: object, size: int = 8) -> bytes:
    """A stable digest of the seed and parts (size <= 64 bytes)."""
    text = "\x1f".join(str(part) for part in (seed, *parts))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).digest()


def unit(seed: int, *parts: object) -> float:
    """A stable uniform number in [0, 1)."""
    return int.from_bytes(digest(seed, *parts), "big") / 2**64


def units(seed: int, *parts: object, n: int = 16) -> list[float]:
    """`n` stable uniform numbers in [0, 1) from as few hashes as possible (16 per hash)."""
    out: list[float] = []
    block = 0
    while len(out) < n:
        raw = digest(seed, *parts, block, size=64)
        out.extend(int.from_bytes(raw[i : i + 4], "big") / 2**32 for i in range(0, 64, 4))
        block += 1
    return out[:n]


def stable_uuid(seed: int, *parts: object) -> str:
    return str(uuid.UUID(bytes=digest(seed, *parts, size=16), version=4))


def pick(options: Sequence[tuple[Any, float]], u: float) -> Any:
    """The option whose cumulative weight bracket contains u (weights need not sum to 1)."""
    total = sum(weight for _, weight in options)
    threshold = u * total
    for value, weight in options:
        threshold -= weight
        if threshold < 0:
            return value
    return options[-1][0]


def draw_count(mean: float, u: float, v: float) -> int:
    """An integer with expectation `mean`, spread +-40%, rounded up with probability = the fraction."""
    x = mean * (0.6 + 0.8 * u)
    base = int(x)
    return base + (1 if v < x - base else 0)


def split(n: int, weights: Sequence[float], jitter: Sequence[float]) -> list[int]:
    """Split n into parts proportional to jittered weights, summing to exactly n (largest remainder)."""
    if n <= 0:
        return [0] * len(weights)
    shares = [w * (0.5 + j) for w, j in zip(weights, jitter, strict=False)]
    scale = n / (sum(shares) or 1.0)
    exact = [s * scale for s in shares]
    parts = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (parts[i] - exact[i], i))
    for i in order[: n - sum(parts)]:
        parts[i] += 1
    return parts


# --- apps and the world -------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    """One simulated app, the same in listings and in every report."""

    product_id: str
    addon_key: str
    name: str


def make_apps(seed: int, volume: float) -> tuple[App, ...]:
    """round(3 * volume) apps (at least one), sorted by addonKey, names drawn from the seed."""
    count = max(1, round(3 * volume))
    words = sorted(_WORDS, key=lambda word: digest(seed, "app-word", word))
    apps = []
    for index in range(count):
        word = words[index % len(words)]
        suffix = "" if index < len(words) else str(index // len(words) + 1)
        apps.append(
            App(
                product_id=str(uuid.uuid5(_NAMESPACE, f"sandbox:{seed}:app:{index}")),
                addon_key=f"com.sandbox.{word}{suffix}",
                name=f"Sandbox {word.capitalize()}{' ' + suffix if suffix else ''}",
            )
        )
    return tuple(sorted(apps, key=lambda app: app.addon_key))


@dataclass(frozen=True)
class World:
    """The configuration every handler sees. Hashable on its settings so generators can be cached."""

    seed: int
    volume: float
    developer_id: str
    href_style: str
    apps: tuple[App, ...] = field(compare=False)
    # Mutable per-sandbox state (export lifecycles, edited listings, ...), one key per endpoint area.
    # Excluded from equality so generator caches keyed on the settings still hit; guard it with `lock`.
    state: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    lock: threading.RLock = field(default_factory=threading.RLock, compare=False, repr=False)

    @classmethod
    def create(cls, seed: int, volume: float, developer_id: str, href_style: str) -> World:
        return cls(seed, volume, developer_id, href_style, make_apps(seed, volume))

    def app(self, product_id: str) -> App | None:
        return next((app for app in self.apps if app.product_id == product_id), None)


def today() -> date:
    return datetime.now(UTC).date()


def popularity(world: World, app: App) -> float:
    """A per-app multiplier in [0.4, 1.6): some apps are simply bigger than others."""
    return 0.4 + 1.2 * unit(world.seed, app.product_id, "popularity")


def activity(day: date) -> float:
    """Calendar shape shared by all apps: growth since 2018, quiet weekends, a December dip."""
    years = (day - DATA_START).days / 365.25
    growth = min(1.0, 0.45 + 0.08 * years)
    weekday = 0.55 if day.weekday() >= 5 else 1.0
    season = 0.75 if (day.month == 12 and day.day >= 20) else 1.0
    return growth * weekday * season


def daily_mean(world: World, app: App, rate: float, day: date) -> float:
    return rate * world.volume * popularity(world, app) * activity(day)


# --- date windows and buckets -------------------------------------------------------------------


def clamp_window(start: date, end: date) -> tuple[date, date] | None:
    """The part of [start, end] that has data (2018-01-01 .. today UTC), or None when empty/reversed."""
    lo, hi = max(start, DATA_START), min(end, today())
    return (lo, hi) if lo <= hi else None


def days(start: date, end: date) -> Iterator[date]:
    for offset in range((end - start).days + 1):
        yield start + timedelta(days=offset)


def bucket_of(day: date, aggregation: str) -> date:
    """Weekly buckets start on Sunday; monthly buckets on the 1st."""
    if aggregation == "month":
        return day.replace(day=1)
    return day - timedelta(days=(day.weekday() + 1) % 7)


# --- time series ("total" / "addons" / "series" / "elements") ------------------------------------


@dataclass(frozen=True)
class SeriesSpec:
    """One output series: its name and extra attributes written before `elements`."""

    name: str
    attrs: Mapping[str, Any] = field(default_factory=dict)


DailyValues = Callable[[App, date], Mapping[str, Mapping[str, float]]]


def time_series(
    world: World,
    start: date,
    end: date,
    aggregation: str,
    series: Sequence[SeriesSpec],
    daily: DailyValues,
    fields: Sequence[str] = ("count",),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Build `total` and `addons` by summing `daily(app, day)[series][field]` into buckets.

    Every series gets an element for every bucket in the window (zeros included); the total is the
    exact sum over apps. An empty or reversed window gives no series and no addons, silently.
    """
    window = clamp_window(start, end)
    if window is None:
        return {"name": "All apps", "series": []}, []
    buckets = sorted({bucket_of(day, aggregation) for day in days(*window)})
    names = [spec.name for spec in series]

    def empty() -> dict[str, dict[date, dict[str, float]]]:
        return {name: {b: dict.fromkeys(fields, 0) for b in buckets} for name in names}

    total_acc = empty()
    addons = []
    for app in world.apps:
        acc = empty()
        for day in days(*window):
            bucket = bucket_of(day, aggregation)
            for name, values in daily(app, day).items():
                if name in acc:
                    cell, total_cell = acc[name][bucket], total_acc[name][bucket]
                    for key in fields:
                        cell[key] += values.get(key, 0)
                        total_cell[key] += values.get(key, 0)
        addons.append(
            {
                "addonKey": app.addon_key,
                "productId": app.product_id,
                "name": app.name,
                "series": _render(series, acc),
            }
        )
    return {"name": "All apps", "series": _render(series, total_acc)}, addons


def _render(series: Sequence[SeriesSpec], acc: Mapping[str, Mapping[date, Mapping[str, float]]]) -> list[Any]:
    out = []
    for spec in series:
        elements = [
            {"date": bucket.isoformat(), **{k: _clean(v) for k, v in values.items()}}
            for bucket, values in acc[spec.name].items()
        ]
        out.append({"name": spec.name, **spec.attrs, "elements": elements})
    return out


def _clean(value: float) -> float:
    return round(value, 2) if isinstance(value, float) else value


# --- evaluations ---------------------------------------------------------------------------------

_COUNTRIES = (
    ("United States", 25.0),
    ("Germany", 12.0),
    ("United Kingdom", 9.0),
    ("India", 8.0),
    ("France", 6.0),
    ("Japan", 5.0),
    ("Australia", 5.0),
    ("Canada", 5.0),
    ("Brazil", 4.0),
    ("Netherlands", 4.0),
    ("Poland", 3.0),
    ("Spain", 3.0),
)
_REGIONS = (("Americas", 35.0), ("EMEA", 40.0), ("APAC", 20.0), ("Unknown", 5.0))
# Most evaluations come without a channel partner: "_direct" takes that share and is never output.
_PARTNERS = (
    ("_direct", 80.0),
    *((f"Partner {i}", w) for i, w in enumerate((7.0, 5.0, 3.5, 2.5, 1.5, 1.0), start=1)),
)
EVALUATION_METRICS = ("country", "hosting", "partner", "region")


def hosting_weights(day: date) -> tuple[tuple[str, float], ...]:
    """Cloud dominates; Server evaluations stop with Server end of support."""
    server = 6.0 if day < SERVER_END_OF_SUPPORT else 0.0
    return (("Cloud", 72.0), ("Data Center", 22.0), ("Server", server))


def dimension_weights(metric: str, day: date) -> tuple[tuple[str, float], ...]:
    if metric == "hosting":
        return hosting_weights(day)
    return {"country": _COUNTRIES, "region": _REGIONS, "partner": _PARTNERS}[metric]


def evaluation_series(metric: str) -> list[SeriesSpec]:
    if metric == "hosting":
        attrs = {"evaluationType": "Net new evaluation"}
        return [SeriesSpec(name, attrs) for name, _ in hosting_weights(DATA_START)]
    return [SeriesSpec(name) for name, _ in dimension_weights(metric, DATA_START) if not name.startswith("_")]
