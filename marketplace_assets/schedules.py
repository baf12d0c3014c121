"""Schedules: every report refreshed on its cadence once its data is available, with a lookback window.

The availability rule (docs/api-notes.md, "Freshness": reports lag real time by up to 24 h): a partition is
*available* at a tick when its end plus 24 h is at or before the tick time. Each tick materializes the
newest available partition plus a lookback of the partitions before it (late corrections), clipped to
the first partition (MARKETPLACE_START_DATE), as ONE run per asset group and partitions definition over
the range: the range tags plus the assets' single-run backfill policy make it one run, not one per
partition. Before anything is available, the tick skips and says when the first period will be.

Jobs and schedules are derived from the assets (a factory, no hand list), one per group x partitions
definition, named `<group>_<cadence>_refresh` (schedule: `<job>_schedule`):
- daily, weekly (either week convention) and monthly partitions: the range rule above;
- a month x app grid (search/keywords_by_app): one run per app over its months, as multi-partition
  keys order app-major, so one app's months are one contiguous key range;
- unpartitioned assets (listings/apps): refreshed daily, first of all;
- left out, because something else drives them: assets with an automation condition (licenses/current),
  the assets of the export sensors (sales/transactions, licenses/licenses, marketing/attribution), and
  the snapshots of catalog/product_catalog (`CATALOG_SNAPSHOTS`): the API serves only its latest
  snapshot, so `catalog_snapshot_sensor` (catalog_sensor.py) asks it which one it serves, adds that
  date as a partition and launches its run, for each new snapshot, at least daily.
Partitions that include the period in progress (end_offset >= 1) have no rule and fail at load: a range
tick would store the period half-full.

Default ticks (UTC) are staggered an hour apart so that groups do not all call the API at once, and
each lands a few hours after its newest period became available:
- 02:00 daily: listings/apps, first, so `marketplace_apps_sensor` has added new apps before any
  per-app run;
- 03:00 daily: daily reports; day D-1 ends at 00:00 on D and is available from 00:00 on D+1, so the
  03:00 tick on D takes D-2 as its newest day (D-1 comes with the next tick);
- 04:00 on the day after a week is available: Monday for Sunday-Saturday weeks (the week ended Saturday
  night, available Sunday night), Tuesday for the Monday-Sunday weeks of partner metrics;
- 05:00 on the 2nd: monthly reports (last month is available from 00:00 on the 2nd).
MARKETPLACE_CRON_DAILY / _WEEKLY / _MONTHLY replace the tick times per cadence; the range is still
decided by the availability rule at the tick time, so an early tick simply finds an older newest period.
Every schedule and export sensor ships with MARKETPLACE_AUTOMATION's status (default stopped).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

import dagster as dg

from marketplace_assets.dagster_conventions import range_tags
from marketplace_assets.partitions import CATALOG_SNAPSHOTS, cadence_of, time_dimension
from marketplace_assets.reports.catalog import EXPORT_REPORTS
from marketplace_assets.reports.report import Cadence
from marketplace_assets.settings import MarketplaceSettings

# Reports lag real time by up to 24 h: a period is complete in the API only this long after it ends.
AVAILABILITY_LAG = timedelta(hours=24)

UNPARTITIONED_CRON = "0 2 * * *"
DAILY_CRON = "0 3 * * *"
WEEKLY_HOUR = 4
MONTHLY_HOUR = 5

# Groups whose data is revised long after the period: the churn benchmark lags 2-3 months and the sales
# benchmark is republished quarterly (Feb, May, Aug, Nov), so a month is re-read for 3 more months.
MINIMUM_LOOKBACK_MONTHS = {"benchmarks": 3}

# The export sensors start, poll and launch these assets' runs themselves.
SENSOR_DRIVEN: frozenset[dg.AssetKey] = frozenset(r.key for r in EXPORT_REPORTS)
# Partitions a sensor adds together with the run that fills each (catalog_snapshot_sensor).
SENSOR_DRIVEN_PARTITIONS: frozenset[str] = frozenset({CATALOG_SNAPSHOTS.name or "catalog_snapshots"})

WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


class Kind(Enum):
    RANGE = "range"  # newest available period + lookback, one run
    PER_APP = "per_app"  # the same month range, one run per app of the dynamic dimension
    UNPARTITIONED = "unpartitioned"  # the current state, once a day


@dataclass(frozen=True)
class Refresh:
    """One job and its schedule: which assets, how they are partitioned, when to tick, how far back."""

    group: str
    keys: tuple[dg.AssetKey, ...]
    partitions_def: dg.PartitionsDefinition | None
    kind: Kind
    cadence: Cadence
    cron: str
    lookback: int  # partitions before the newest available one

    @property
    def job_name(self) -> str:
        suffix = "_by_app" if self.kind is Kind.PER_APP else ""
        return f"{self.group}_{self.cadence}{suffix}_refresh"

    @property
    def time_partitions(self) -> dg.TimeWindowPartitionsDefinition:
        """The time dimension: the partitions definition itself, or the month of a month x app grid."""
        time_partitions = time_dimension(self.partitions_def)
        assert time_partitions is not None
        return time_partitions

    @property
    def unit(self) -> str:
        return {Cadence.DAILY: "day", Cadence.WEEKLY: "week", Cadence.MONTHLY: "month"}[self.cadence]

    @property
    def period(self) -> str:
        """The period in words, with the week convention where it matters."""
        if self.cadence != Cadence.WEEKLY:
            return self.unit
        first = self.time_partitions.day_offset
        return f"week ({WEEKDAYS[first]}-{WEEKDAYS[(first + 6) % 7]})"

    def description(self) -> str:
        assets = ", ".join(k.to_user_string() for k in self.keys)
        when = f"Ticks on `{self.cron}` (UTC)."
        if self.kind is Kind.UNPARTITIONED:
            return (
                f"Refreshes the current state of {assets}, daily and early, so the marketplace_apps_sensor "
                f"adds new apps before any per-app report runs. {when}"
            )
        lookback = f"a {self.lookback}-{self.unit} lookback" if self.lookback else "no lookback"
        why = ""
        if self.group in MINIMUM_LOOKBACK_MONTHS:
            why = (
                f" (at least {MINIMUM_LOOKBACK_MONTHS[self.group]} months here: the churn benchmark lags "
                "2-3 months and the sales benchmark is republished quarterly)"
            )
        runs = (
            "one run per app (search/keywords_by_app's app partitions)"
            if self.kind is Kind.PER_APP
            else ("in one run")
        )
        return (
            f"Materializes the newest available {self.period} plus {lookback}{why}, {runs}, for {assets}. "
            f"A {self.unit} is available 24 h after it ends (the API's reports lag up to 24 h); a tick "
            f"before the first {self.unit} is available skips and says why. {when}"
        )


# -- the rule ------------------------------------------------------------------------------------------
def available_range(
    partitions_def: dg.TimeWindowPartitionsDefinition, tick: datetime, lookback: int
) -> dg.PartitionKeyRange | None:
    """The newest partition whose end + 24 h is at or before `tick`, back `lookback` partitions (clipped
    to the first partition); None when no partition is available yet."""
    # Dagster's last partition at time T is the last one that has ended by T (end offset 0), so asking at
    # tick - 24 h gives exactly the partitions with end + 24 h <= tick.
    keys = partitions_def.get_partition_keys(current_time=tick - AVAILABILITY_LAG)
    if not keys:
        return None
    return dg.PartitionKeyRange(keys[max(0, len(keys) - 1 - lookback)], keys[-1])


def _first_available_at(partitions_def: dg.TimeWindowPartitionsDefinition) -> tuple[str, datetime]:
    """The first partition and the time it becomes available, for a skip message."""
    # 70 days past the start always contains a complete first day, week or month.
    first = partitions_def.get_partition_keys(current_time=partitions_def.start + timedelta(days=70))[0]
    return first, partitions_def.time_window_for_partition_key(first).end + AVAILABILITY_LAG


def _range_tags(start: str, end: str) -> dict[str, str]:
    return range_tags(start, end)


def _tick_time(context: dg.ScheduleEvaluationContext) -> datetime:
    tick = context.scheduled_execution_time or datetime.now(UTC)
    # Schedules run in UTC; a naive time (only from tests or manual evaluation) is read as UTC.
    return tick.replace(tzinfo=UTC) if tick.tzinfo is None else tick.astimezone(UTC)


def run_requests(
    refresh: Refresh, tick: datetime, context: dg.ScheduleEvaluationContext
) -> list[dg.RunRequest] | dg.SkipReason:
    """What one tick of `refresh`'s schedule asks for at `tick` (UTC)."""
    job = refresh.job_name
    if refresh.kind is Kind.UNPARTITIONED:
        return [dg.RunRequest(run_key=f"{job}:{tick.date().isoformat()}")]
    window = available_range(refresh.time_partitions, tick, refresh.lookback)
    if window is None:
        first, at = _first_available_at(refresh.time_partitions)
        return dg.SkipReason(
            f"{job}: no {refresh.unit} is available yet at {tick:%Y-%m-%d %H:%M} UTC. The first, {first}, "
            f"is available from {at:%Y-%m-%d %H:%M} UTC (24 h after it ends: the API's reports lag up to "
            "24 h)."
        )
    if refresh.kind is Kind.RANGE:
        return [
            dg.RunRequest(
                run_key=f"{job}:{window.start}..{window.end}", tags=_range_tags(window.start, window.end)
            )
        ]
    return _per_app_requests(refresh, window, context)


def _per_app_requests(
    refresh: Refresh, window: dg.PartitionKeyRange, context: dg.ScheduleEvaluationContext
) -> list[dg.RunRequest] | dg.SkipReason:
    grid = refresh.partitions_def
    assert isinstance(grid, dg.MultiPartitionsDefinition)
    time_dim = grid.time_window_dimension.name
    app_dim = next(d for d in grid.partitions_defs if d.name != time_dim)
    dynamic_name = getattr(app_dim.partitions_def, "name", None) or app_dim.name
    apps = sorted(context.instance.get_dynamic_partitions(dynamic_name))
    if not apps:
        return dg.SkipReason(
            f"{refresh.job_name}: no apps in the '{dynamic_name}' partitions yet. Materialize listings/apps; "
            "the marketplace_apps_sensor then adds the apps."
        )
    requests = []
    for app in apps:
        # Multi-partition keys order app-major, so this range is exactly this app's months.
        start = str(dg.MultiPartitionKey({time_dim: window.start, app_dim.name: app}))
        end = str(dg.MultiPartitionKey({time_dim: window.end, app_dim.name: app}))
        requests.append(
            dg.RunRequest(run_key=f"{refresh.job_name}:{start}..{end}", tags=_range_tags(start, end))
        )
    return requests


# -- the factory ---------------------------------------------------------------------------------------
def _cadence(partitions_def: dg.TimeWindowPartitionsDefinition, label: str) -> Cadence:
    cadence = cadence_of(partitions_def)
    if cadence is None:
        raise ValueError(
            f"{label}: no schedule rule for partitions on {partitions_def.cron_schedule!r}; add one to "
            "marketplace_assets/schedules.py (daily, weekly and monthly are known)."
        )
    return cadence


def _default_cron(cadence: Cadence, partitions_def: dg.TimeWindowPartitionsDefinition) -> str:
    if cadence == Cadence.DAILY:
        return DAILY_CRON
    if cadence == Cadence.WEEKLY:
        # A week starting on day_offset ends as that weekday begins; it is available a day later.
        return f"0 {WEEKLY_HOUR} * * {(partitions_def.day_offset + 1) % 7}"
    # A month ends as the day_offset-th begins (the 1st); available a day later.
    return f"0 {MONTHLY_HOUR} {partitions_def.day_offset + 1} * *"


def _refresh_for(
    group: str,
    keys: tuple[dg.AssetKey, ...],
    partitions_def: dg.PartitionsDefinition | None,
    settings: MarketplaceSettings,
) -> Refresh:
    """The kind, cadence, tick time and lookback for one group's assets that share `partitions_def`.
    An unknown partitioning fails at load, so a new asset is never silently left unscheduled."""
    label = keys[0].to_user_string()
    if partitions_def is None:
        return Refresh(
            group, keys, None, Kind.UNPARTITIONED, Cadence.DAILY, settings.cron_daily or UNPARTITIONED_CRON, 0
        )
    kind = Kind.RANGE
    time_partitions = time_dimension(partitions_def)
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        kind = Kind.PER_APP
        others = [
            d.partitions_def
            for d in partitions_def.partitions_defs
            if d.partitions_def is not time_partitions
        ]
        if not all(isinstance(d, dg.DynamicPartitionsDefinition) for d in others):
            raise ValueError(f"{label}: only a time x dynamic grid can be scheduled")
    if time_partitions is None:
        raise ValueError(f"{label}: no schedule rule for {type(partitions_def).__name__}")
    cadence = _cadence(time_partitions, label)
    if time_partitions.end_offset > 0:
        # The period in progress: a range tick would store it half-full. (The product catalog, which
        # the API serves only as its latest snapshot, is partitioned by the snapshots taken instead.)
        raise ValueError(
            f"{label}: no schedule rule for partitions that include the period in progress "
            f"(end_offset={time_partitions.end_offset})"
        )
    override = {
        Cadence.DAILY: settings.cron_daily,
        Cadence.WEEKLY: settings.cron_weekly,
        Cadence.MONTHLY: settings.cron_monthly,
    }
    lookback = {
        Cadence.DAILY: settings.lookback_days,
        Cadence.WEEKLY: settings.lookback_weeks,
        Cadence.MONTHLY: max(settings.lookback_months, MINIMUM_LOOKBACK_MONTHS.get(group, 0)),
    }[cadence]
    cron = override[cadence] or _default_cron(cadence, time_partitions)
    return Refresh(group, keys, partitions_def, kind, cadence, cron, lookback)


def _sensor_driven_partitions(partitions_def: dg.PartitionsDefinition | None) -> bool:
    """Whether a sensor adds these partitions with the runs that fill them (the catalog's snapshots)."""
    return (
        isinstance(partitions_def, dg.DynamicPartitionsDefinition)
        and partitions_def.name in SENSOR_DRIVEN_PARTITIONS
    )


def plan_refreshes(
    settings: MarketplaceSettings,
    assets: Sequence[dg.AssetsDefinition],
    sensor_driven: Collection[dg.AssetKey] = SENSOR_DRIVEN,
) -> list[Refresh]:
    """One Refresh per (group, partitions definition) of the assets nothing else drives."""
    grouped: dict[tuple[str, dg.PartitionsDefinition | None], list[dg.AssetKey]] = {}
    for asset in assets:
        for key in asset.keys:
            if (
                key in sensor_driven
                or asset.automation_conditions_by_key.get(key) is not None
                or _sensor_driven_partitions(asset.partitions_def)
            ):
                continue  # a sensor or declarative automation materializes it
            grouped.setdefault((asset.group_names_by_key[key], asset.partitions_def), []).append(key)
    refreshes = [_refresh_for(group, tuple(keys), p, settings) for (group, p), keys in grouped.items()]
    names = [r.job_name for r in refreshes]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"two partitionings of one group map to the same job name: {duplicates}")
    return refreshes


def schedule_status(settings: MarketplaceSettings) -> dg.DefaultScheduleStatus:
    """MARKETPLACE_AUTOMATION as the status a schedule ships with (the UI toggle can change it)."""
    running = settings.automation == "running"
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


def sensor_status(settings: MarketplaceSettings) -> dg.DefaultSensorStatus:
    """MARKETPLACE_AUTOMATION as the status the export sensors ship with."""
    running = settings.automation == "running"
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED


def _schedule(
    refresh: Refresh, job: dg.UnresolvedAssetJobDefinition, status: dg.DefaultScheduleStatus
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{refresh.job_name}_schedule",
        job=job,
        cron_schedule=refresh.cron,
        execution_timezone="UTC",
        default_status=status,
        description=refresh.description(),
    )
    def _refresh_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        return run_requests(refresh, _tick_time(context), context)

    return _refresh_schedule


def build_schedules(
    settings: MarketplaceSettings, assets: Sequence[dg.AssetsDefinition]
) -> tuple[list[dg.UnresolvedAssetJobDefinition], list[dg.ScheduleDefinition]]:
    """A refresh job and its schedule for every group x partitions definition (see the module doc)."""
    jobs, schedules = [], []
    status = schedule_status(settings)
    for refresh in plan_refreshes(settings, assets):
        job = dg.define_asset_job(
            name=refresh.job_name,
            # One group x partitions definition: Dagster infers the job's partitioning from the assets
            # (passing partitions_def is deprecated in 1.13).
            selection=dg.AssetSelection.assets(*refresh.keys),
            description=refresh.description(),
        )
        jobs.append(job)
        schedules.append(_schedule(refresh, job, status))
    return jobs, schedules
