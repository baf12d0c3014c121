"""Evaluations counted from the license history: the evaluation licenses of each cohort.

An evaluation starts on its license's cohort day (its `maintenanceStartDate` and, with data insights,
its `evaluationStartDate`), so the evaluations of (app, day) are the `eval` group of that cohort
(`licensing_data.group`). The split by hosting is the group's hosting blocks; by country and region
the license's customer (`contactDetails.country` / `.region`); by partner the license's channel
partner (sold direct: the `_direct` share, never output). Marketing attribution splits the same
groups, so every report that counts evaluations counts the same licenses.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from marketplace_assets.sandbox.data import App, World, dimension_weights
from marketplace_assets.sandbox.licensing_data import HOSTINGS, group, make_license


@lru_cache(maxsize=4096)
def app_index(world: World, app: App) -> int:
    """The app's position in `world.apps` (cohorts are keyed by it)."""
    return world.apps.index(app)


def evaluations_on(world: World, app: App, day: date) -> int:
    """Evaluation licenses of the app whose evaluation starts on `day`."""
    return group(world, app_index(world, app), day, "eval").size


@lru_cache(maxsize=1 << 15)
def _split(world: World, app: App, day: date, metric: str) -> tuple[tuple[str, int], ...]:
    index = app_index(world, app)
    grp = group(world, index, day, "eval")
    counts = dict.fromkeys((name for name, _ in dimension_weights(metric, day)), 0)
    if metric == "hosting":
        counts |= dict(zip(HOSTINGS, grp.hosting, strict=True))
        return tuple(counts.items())
    for rank in range(grp.size):
        lic = make_license(world, index, day, "eval", rank)
        if metric == "partner":
            key = f"Partner {lic.partner}" if lic.partner else "_direct"
        else:
            key = lic.customer["contactDetails"][metric]
        counts[key] = counts.get(key, 0) + 1
    return tuple(counts.items())


def evaluation_split(world: World, app: App, day: date, metric: str) -> dict[str, int]:
    """The day's evaluations of an app per value of the metric (country, hosting, partner, region);
    every metric sums to `evaluations_on` (partner through its never-output `_direct` value)."""
    return dict(_split(world, app, day, metric))
