"""Partition definitions by cadence, starting at MARKETPLACE_START_DATE.

Weekly partitions run Sunday to Saturday because the API dates weekly elements on the Sunday that starts
the week; monthly partitions start on the 1st, as monthly elements are dated (docs/api-notes.md, "Windows
and aggregation"). Only complete periods are
offered (Dagster's default end offset), since a period still in progress would be stored half-full.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from marketplace_assets.reports.fetch import Window
from marketplace_assets.reports.report import Cadence


def partitions_for(
    cadence: Cadence | None, start: date, *, weeks_start_monday: bool = False, end_offset: int = 0
) -> dg.TimeWindowPartitionsDefinition | None:
    """The one partition builder: a cadence's partitions from `start`; None for an unpartitioned report.

    Weeks start on Sunday, as the reporting API dates them, unless `weeks_start_monday` (partner metrics
    date weeks on Mondays). `end_offset=1` also offers the period in progress (the catalog snapshot of
    today)."""
    start_date = start.isoformat()
    match cadence:
        case Cadence.DAILY:
            return dg.DailyPartitionsDefinition(start_date=start_date, end_offset=end_offset)
        case Cadence.WEEKLY:
            day_offset = 1 if weeks_start_monday else 0
            return dg.WeeklyPartitionsDefinition(
                start_date=start_date, day_offset=day_offset, end_offset=end_offset
            )
        case Cadence.MONTHLY:
            return dg.MonthlyPartitionsDefinition(start_date=start_date, end_offset=end_offset)
        case None:
            return None


def describe_keys(partitions_def: dg.PartitionsDefinition | None) -> str:
    """The partition keys of an asset in words, with the first one: what the UI's partition picker and a
    backfill's range take. Empty for an unpartitioned asset or keys that are not dates."""
    time_def, cadence = time_dimension(partitions_def), cadence_of(partitions_def)
    if time_def is None or cadence is None:
        return ""
    first = time_def.get_first_partition_key()
    if cadence is Cadence.WEEKLY:
        key = f"the {'Monday' if time_def.day_offset == 1 else 'Sunday'} that starts the week"
    else:
        key = "the day" if cadence is Cadence.DAILY else "the 1st of the month"
    words = f"Partition key: {key} (YYYY-MM-DD); the first is {first}."
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        words += " Each key pairs it with an app (its product id)."
    return words


def time_dimension(
    partitions_def: dg.PartitionsDefinition | None,
) -> dg.TimeWindowPartitionsDefinition | None:
    """An asset's time partitions: its own, or the time dimension of a grid (month x app); else None."""
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return partitions_def
    if isinstance(partitions_def, dg.MultiPartitionsDefinition) and partitions_def.has_time_window_dimension:
        return partitions_def.time_window_partitions_def
    return None


def cadence_of(partitions_def: dg.PartitionsDefinition | None) -> Cadence | None:
    """The period of an asset's time partitions; None when it has none, or one that is not a day, a week
    (either convention) or a month."""
    time_def = time_dimension(partitions_def)
    if time_def is None or time_def.schedule_type is None:
        return None
    try:
        return Cadence(time_def.schedule_type.value.lower())
    except ValueError:
        return None


def to_window(time_window: dg.TimeWindow) -> Window:
    """Dagster's half-open time window as the API's inclusive startDate/endDate."""
    return Window(time_window.start.date(), (time_window.end - timedelta(days=1)).date())


def window_of(context: dg.AssetExecutionContext) -> Window:
    """The run's date range (one partition, or the whole range of a single-run backfill), inclusive."""
    return to_window(context.partition_time_window)


def period_windows(context: dg.AssetExecutionContext) -> list[Window]:
    """Each partition of the run as its own window, for reports that aggregate over their window."""
    partitions_def = context.assets_def.partitions_def
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    return [to_window(partitions_def.time_window_for_partition_key(k)) for k in context.partition_keys]


# The developer space's apps (product ids), kept in step with listings/apps by `marketplace_apps_sensor`.
# Apps are only ever added: an app that leaves the listing keeps its partitions and its history.
APPS = dg.DynamicPartitionsDefinition(name="marketplace_apps")

# The product catalog's snapshots, one partition per day a snapshot was actually taken (its ISO date),
# added by `catalog_snapshot_sensor` together with the run that fetches it. The API serves only its latest
# snapshot, so a calendar of days would show every day not taken as missing forever.
CATALOG_SNAPSHOTS = dg.DynamicPartitionsDefinition(name="catalog_snapshots")
