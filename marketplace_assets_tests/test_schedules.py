"""Schedule ticks evaluated at given times: the ranges, tags and run keys they ask for.

The rule under test: a partition is available when its end + 24 h <= the tick; a tick takes the newest
available partition plus the cadence's lookback, clipped to the first partition, as one run per group.
Expected ranges are worked out by hand in each test, not with the code under test.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

import dagster as dg
import pytest

from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets.definitions import build_assets, build_definitions
from marketplace_assets.sandbox import Sandbox
from marketplace_assets.schedules import build_schedules, plan_refreshes
from marketplace_assets.settings import ConfigurationError, MarketplaceSettings, load_settings

START, END = RANGE_START_TAG, RANGE_END_TAG
# Driven by a sensor (the export sensors; the catalog's snapshots) or by declarative automation.
SENSOR_DRIVEN = {
    "sales/transactions": "sales_transactions_export_sensor",
    "licenses/licenses": "licenses_licenses_export_sensor",
    "marketing/attribution": "marketing_attribution_export_sensor",
    "catalog/product_catalog": "catalog_snapshot_sensor",
}
# Driven by their automation conditions: licenses/current and the metrics (marketplace_assets/metrics/).
METRICS = {
    f"metrics/{name}"
    for name in ("revenue_monthly", "mrr_monthly", "active_licenses_daily", "trial_conversion_monthly")
}
EXCLUDED = {*SENSOR_DRIVEN, "licenses/current", *METRICS}


def _schedules(settings: MarketplaceSettings) -> dict[str, dg.ScheduleDefinition]:
    _, schedules = build_schedules(settings, build_assets(settings))
    return {s.name: s for s in schedules}


@pytest.fixture(scope="module")
def schedules() -> dict[str, dg.ScheduleDefinition]:
    return _schedules(MarketplaceSettings(sandbox=True, start_date=date(2024, 1, 1)))


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def tick(
    schedule: dg.ScheduleDefinition,
    when: datetime,
    instance: dg.DagsterInstance | None = None,
    repository_def: dg.RepositoryDefinition | None = None,
) -> tuple[list[dg.RunRequest], str | None]:
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=repository_def
    )
    data = schedule.evaluate_tick(context)
    return list(data.run_requests or []), data.skip_message


def only_range(schedule: dg.ScheduleDefinition, when: datetime) -> tuple[str, str]:
    requests, skipped = tick(schedule, when)
    assert skipped is None and len(requests) == 1, (requests, skipped)
    return requests[0].tags[START], requests[0].tags[END]


def test_daily_tick_at_three_takes_the_day_before_yesterday_plus_three_days(schedules) -> None:
    requests, skipped = tick(schedules["sales_daily_refresh_schedule"], _at(2025, 3, 10, 3))
    assert skipped is None
    # 2025-03-08 ended at 03-09 00:00 and is available from 03-10 00:00; 03-09 only from 03-11 00:00.
    [request] = requests
    assert request.tags == {
        START: "2025-03-05",
        END: "2025-03-08",
        "dagster/schedule_name": "sales_daily_refresh_schedule",
    }
    assert request.run_key == "sales_daily_refresh:2025-03-05..2025-03-08"
    assert request.partition_key is None  # a range, not one partition


def test_availability_boundary_is_exactly_end_plus_24_hours(schedules) -> None:
    daily = schedules["feedback_daily_refresh_schedule"]
    assert only_range(daily, _at(2025, 3, 10, 0, 0)) == ("2025-03-05", "2025-03-08")
    assert only_range(daily, _at(2025, 3, 9, 23, 59)) == ("2025-03-04", "2025-03-07")


def test_weekly_monday_tick_takes_the_week_that_ended_saturday(schedules) -> None:
    # Monday 2025-03-10: the week Sunday 03-02 .. Saturday 03-08 became available Sunday night.
    evaluations = schedules["evaluations_weekly_refresh_schedule"]
    assert evaluations.cron_schedule == "0 4 * * 1"
    requests, _ = tick(evaluations, _at(2025, 3, 10, 4))
    assert [(r.tags[START], r.tags[END], r.run_key) for r in requests] == [
        ("2025-02-23", "2025-03-02", "evaluations_weekly_refresh:2025-02-23..2025-03-02")
    ]


def test_monday_to_sunday_weeks_tick_on_tuesday(schedules) -> None:
    partner = schedules["partner_metrics_weekly_refresh_schedule"]
    assert partner.cron_schedule == "0 4 * * 2"
    # Tuesday 03-11: Monday 03-03 .. Sunday 03-09 is available since 00:00.
    assert only_range(partner, _at(2025, 3, 11, 4)) == ("2025-02-24", "2025-03-03")
    # On the Monday that week ended only 4 h before: not available yet, so one week older.
    assert only_range(partner, _at(2025, 3, 10, 4)) == ("2025-02-17", "2025-02-24")


def test_monthly_tick_on_the_second_takes_last_month(schedules) -> None:
    insights = schedules["customer_insights_monthly_refresh_schedule"]
    assert insights.cron_schedule == "0 5 2 * *"
    assert only_range(insights, _at(2025, 6, 2, 5)) == ("2025-04-01", "2025-05-01")


def test_benchmarks_reach_back_three_months(schedules) -> None:
    benchmarks = schedules["benchmarks_monthly_refresh_schedule"]
    assert only_range(benchmarks, _at(2025, 6, 2, 5)) == ("2025-02-01", "2025-05-01")
    assert "3-month lookback" in (benchmarks.description or "")


def test_a_tick_before_anything_is_available_skips_and_says_when(schedules) -> None:
    settings = MarketplaceSettings(sandbox=True, start_date=date(2025, 3, 1))
    fresh = _schedules(settings)
    requests, skipped = tick(fresh["sales_daily_refresh_schedule"], _at(2025, 3, 2, 3))
    assert requests == []
    assert skipped and "no day is available yet" in skipped
    assert "2025-03-01" in skipped and "2025-03-03 00:00" in skipped
    requests, skipped = tick(fresh["search_monthly_refresh_schedule"], _at(2025, 4, 1, 23))
    assert requests == [] and skipped and "2025-04-02 00:00" in skipped
    # Also before the start date itself.
    assert tick(fresh["evaluations_weekly_refresh_schedule"], _at(2025, 1, 6, 4))[0] == []


def test_the_range_is_clipped_to_the_start_date() -> None:
    fresh = _schedules(MarketplaceSettings(sandbox=True, start_date=date(2025, 3, 1)))
    # Newest 03-03, three days back would be 02-28: before the first partition.
    assert only_range(fresh["sales_daily_refresh_schedule"], _at(2025, 3, 5, 3)) == (
        "2025-03-01",
        "2025-03-03",
    )
    # The first Sunday-Saturday week starts 03-02 and is the only one available on 03-10.
    assert only_range(fresh["evaluations_weekly_refresh_schedule"], _at(2025, 3, 10, 4)) == (
        "2025-03-02",
        "2025-03-02",
    )


def test_product_catalog_is_fetched_daily_for_the_snapshot_the_api_serves() -> None:
    """No schedule guesses the catalog's date: its sensor asks the API which snapshot it serves, at least
    daily, and adds that date as a partition in the same tick as the run that fetches it."""
    defs = build_definitions(MarketplaceSettings(sandbox=True, start_date=date(2024, 1, 1)))
    sensor = defs.resolve_sensor_def("catalog_snapshot_sensor")
    assert sensor.minimum_interval_seconds is not None and sensor.minimum_interval_seconds <= 24 * 3600
    targeted = defs.resolve_job_def(sensor.job_name).asset_layer.selected_asset_keys
    assert targeted == {dg.AssetKey(["catalog", "product_catalog"])}
    with dg.instance_for_test() as instance:
        before = datetime.now(UTC).date().isoformat()
        # The definitions' own Marketplace resource: in sandbox mode, the built-in simulated one.
        resources = {"marketplace": defs.resources["marketplace"]}
        with dg.build_sensor_context(
            instance_ref=instance.get_ref(), definitions=defs, resources=resources
        ) as context:
            data = sensor.evaluate_tick(context)
        after = datetime.now(UTC).date().isoformat()
    # The sandbox serves the snapshot of the clock's UTC day.
    [request] = data.run_requests or []
    served = request.partition_key
    assert served in {before, after}
    assert request.run_key == f"catalog_snapshot:{served}" and request.tags["dagster/partition"] == served
    assert START not in request.tags  # one snapshot, never a range
    [added] = data.dynamic_partitions_requests or []
    assert isinstance(added, dg.AddDynamicPartitionsRequest)
    assert added.partitions_def_name == "catalog_snapshots" and list(added.partition_keys) == [served]


def test_partitions_that_include_the_period_in_progress_have_no_schedule_rule() -> None:
    @dg.asset(
        key=["catalog", "in_progress"],
        partitions_def=dg.DailyPartitionsDefinition("2025-01-01", end_offset=1),
    )
    def in_progress() -> None: ...

    with pytest.raises(ValueError, match=r"catalog/in_progress: .*period in progress"):
        plan_refreshes(MarketplaceSettings(sandbox=True), [in_progress])


def test_listings_refresh_daily_before_the_reports(schedules) -> None:
    listings = schedules["listings_daily_refresh_schedule"]
    assert listings.cron_schedule == "0 2 * * *"
    requests, _ = tick(listings, _at(2025, 3, 10, 2))
    assert [(r.run_key, r.tags.get(START)) for r in requests] == [("listings_daily_refresh:2025-03-10", None)]


def test_keywords_by_app_is_one_run_per_app_over_the_month_range(schedules) -> None:
    by_app = schedules["search_monthly_by_app_refresh_schedule"]
    with dg.instance_for_test() as instance:
        requests, skipped = tick(by_app, _at(2025, 3, 2, 5), instance=instance)
        assert requests == [] and skipped and "listings/apps" in skipped
        instance.add_dynamic_partitions("marketplace_apps", ["app-2", "app-1"])
        requests, skipped = tick(by_app, _at(2025, 3, 2, 5), instance=instance)
    assert skipped is None
    assert [(r.tags[START], r.tags[END], r.run_key) for r in requests] == [
        (
            "app-1|2025-01-01",
            "app-1|2025-02-01",
            "search_monthly_by_app_refresh:app-1|2025-01-01..app-1|2025-02-01",
        ),
        (
            "app-2|2025-01-01",
            "app-2|2025-02-01",
            "search_monthly_by_app_refresh:app-2|2025-01-01..app-2|2025-02-01",
        ),
    ]


def test_lookbacks_and_tick_times_come_from_the_environment(clean_env) -> None:
    clean_env.setenv("MARKETPLACE_LOOKBACK_DAYS", "0")
    clean_env.setenv("MARKETPLACE_LOOKBACK_WEEKS", "3")
    clean_env.setenv("MARKETPLACE_LOOKBACK_MONTHS", "5")
    clean_env.setenv("MARKETPLACE_CRON_DAILY", "30 7 * * *")
    clean_env.setenv("MARKETPLACE_CRON_WEEKLY", "0 9 * * 3")
    clean_env.setenv("MARKETPLACE_CRON_MONTHLY", "0 1 3 * *")
    found = _schedules(load_settings())
    assert only_range(found["feedback_daily_refresh_schedule"], _at(2025, 3, 10, 7, 30)) == (
        "2025-03-08",
        "2025-03-08",
    )
    assert "no lookback" in (found["feedback_daily_refresh_schedule"].description or "")
    assert only_range(found["feedback_weekly_refresh_schedule"], _at(2025, 3, 12, 9)) == (
        "2025-02-09",
        "2025-03-02",
    )
    assert only_range(found["app_requests_monthly_refresh_schedule"], _at(2025, 6, 3, 1)) == (
        "2024-12-01",
        "2025-05-01",
    )
    # More than the benchmarks' minimum: the larger wins.
    assert only_range(found["benchmarks_monthly_refresh_schedule"], _at(2025, 6, 3, 1))[0] == "2024-12-01"
    crons = Counter(s.cron_schedule for s in found.values())
    # Daily: listings, sales and feedback (the catalog's snapshots are taken by their sensor).
    assert crons == {"30 7 * * *": 3, "0 9 * * 3": 5, "0 1 3 * *": 6}


def test_an_invalid_cron_override_names_the_variable(clean_env) -> None:
    clean_env.setenv("MARKETPLACE_CRON_WEEKLY", "every monday")
    with pytest.raises(ConfigurationError, match=r"MARKETPLACE_CRON_WEEKLY='every monday'.*cron"):
        load_settings()


def test_an_override_tick_still_follows_the_availability_rule(clean_env) -> None:
    clean_env.setenv("MARKETPLACE_CRON_DAILY", "* * * * *")
    daily = _schedules(load_settings())["sales_daily_refresh_schedule"]
    assert daily.cron_schedule == "* * * * *"
    assert only_range(daily, _at(2025, 3, 10, 12, 17)) == ("2025-03-05", "2025-03-08")


@pytest.mark.parametrize("automation", [None, "running"])
def test_automation_sets_the_default_status_of_schedules_and_export_sensors(clean_env, automation) -> None:
    if automation:
        clean_env.setenv("MARKETPLACE_AUTOMATION", automation)
    defs = build_definitions(load_settings())
    expected = "RUNNING" if automation == "running" else "STOPPED"
    assert {s.default_status.value for s in defs.schedules} == {expected}
    sensors = {s.name: s.default_status.value for s in defs.sensors}
    assert sensors.pop("marketplace_apps_sensor") == "RUNNING"  # always on: it only adds app partitions
    # Always on: it only refreshes licenses/current after a licenses/licenses run.
    assert sensors.pop("current_licenses_after_license_history") == "RUNNING"
    # Always on: it only refreshes the metrics after runs of the raw assets they read.
    assert sensors.pop("metrics_after_raw_inputs") == "RUNNING"
    assert sensors == {
        name: expected
        for name in (
            "sales_transactions_export_sensor",
            "licenses_licenses_export_sensor",
            "marketing_attribution_export_sensor",
            "catalog_snapshot_sensor",  # it calls the API and launches runs, like the export sensors
        )
    }


def test_every_asset_is_on_exactly_one_schedule_except_those_driven_elsewhere() -> None:
    defs = build_definitions(MarketplaceSettings(sandbox=True))
    graph = defs.resolve_asset_graph()
    targeted: Counter[str] = Counter()
    for schedule in defs.schedules:
        job = defs.resolve_job_def(schedule.job_name)
        keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
        targeted.update(keys)
        # One group and one partitions definition per job: the range is one run.
        groups = {graph.get(dg.AssetKey.from_user_string(k)).group_name for k in keys}
        partitionings = {graph.get(dg.AssetKey.from_user_string(k)).partitions_def for k in keys}
        assert len(groups) == 1 and len(partitionings) == 1, schedule.name
        assert schedule.job_name.startswith(f"{groups.pop()}_") and schedule.job_name.endswith("_refresh")
        assert schedule.execution_timezone == "UTC"
    every = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(targeted) == every - EXCLUDED
    assert set(targeted.values()) == {1}
    # Each asset left out is driven elsewhere: by exactly its own sensor, or by its automation condition.
    by_sensor: dict[str, list[str]] = {}
    for sensor in defs.sensors:
        if sensor.has_jobs:
            for key in defs.resolve_job_def(sensor.job_name).asset_layer.selected_asset_keys:
                by_sensor.setdefault(key.to_user_string(), []).append(sensor.name)
    assert {asset: by_sensor.get(asset) for asset in SENSOR_DRIVEN} == {
        asset: [sensor] for asset, sensor in SENSOR_DRIVEN.items()
    }
    assert graph.get(dg.AssetKey(["licenses", "current"])).automation_condition is not None
    metrics = [graph.get(k) for k in graph.get_all_asset_keys() if k.path[0] == "metrics"]
    assert len(metrics) == 4 and all(m.automation_condition is not None for m in metrics)
    # The listing job is still there next to the refresh jobs.
    assert defs.resolve_job_def("update_app_listing") is not None


def test_a_per_app_request_runs_as_one_run_over_that_apps_months(clean_env, tmp_path) -> None:
    """The range tags of one app really are that app's months, and nothing of the other apps."""
    settings = MarketplaceSettings(
        sandbox=True, start_date=date(2025, 1, 1), warehouse=str(tmp_path / "sandbox.duckdb")
    )
    defs = build_definitions(settings)
    apps = sorted(app.product_id for app in Sandbox().apps)[:2]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("marketplace_apps", apps)
        requests, _ = tick(
            defs.resolve_schedule_def("search_monthly_by_app_refresh_schedule"), _at(2025, 4, 2, 5), instance
        )
        assert len(requests) == 2
        job = defs.resolve_job_def("search_monthly_by_app_refresh")
        result = job.execute_in_process(instance=instance, tags=requests[0].tags)
    assert result.success
    materialized = {
        (e.asset_key.to_user_string(), e.partition) for e in result.get_asset_materialization_events()
    }
    assert materialized == {
        ("search/keywords_by_app", f"{apps[0]}|{m}") for m in ("2025-02-01", "2025-03-01")
    }
