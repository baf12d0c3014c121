"""End to end: a real `dagster dev` in sandbox mode, one daily schedule switched on through GraphQL as the
UI's toggle does, ticking every minute (MARKETPLACE_CRON_DAILY="* * * * *"). Its tick must launch one run
for the whole group over the range the availability rule gives for the tick time, and fill the tables."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets_tests.dagster_dev import dagster_dev

pytestmark = pytest.mark.e2e

SCHEDULE = "sales_daily_refresh_schedule"
# The sales group's daily assets and the column each table is partitioned by.
TABLES = {
    "sales/churn_events": "event_date",
    "sales/conversion_events": "event_date",
    "sales/renewal_events": "event_date",
    "sales/free_starter_tier": "date",
}
START, END = RANGE_START_TAG, RANGE_END_TAG
LOOKBACK_DAYS = 3  # the default


def test_a_daily_schedule_switched_on_launches_one_run_over_the_available_days(tmp_path: Path) -> None:
    start_date = datetime.now(UTC).date() - timedelta(days=21)
    warehouse = tmp_path / "sandbox.duckdb"
    env = {
        "MARKETPLACE_SANDBOX": "1",
        "MARKETPLACE_WAREHOUSE": str(warehouse),
        "MARKETPLACE_START_DATE": start_date.isoformat(),
        "MARKETPLACE_CRON_DAILY": "* * * * *",
    }
    with dagster_dev(tmp_path / "dagster_home", env) as dev:
        state = dev.start_schedule(SCHEDULE)
        assert state["status"] == "RUNNING"
        try:
            # The next minute boundary is the first tick; allow for the daemon's loop on top.
            tick = dev.wait_for_tick(SCHEDULE, timeout=150)
        finally:
            # A tick a minute would launch the same range again: one tick is what is under test.
            assert dev.stop_schedule(state["id"]) == "STOPPED"
        assert tick["status"] == "SUCCESS" and len(tick["runIds"]) == 1, tick
        run_id = tick["runIds"][0]
        run = dev.wait_for_run(run_id, timeout=120)
        assert run["status"] == "SUCCESS", dev.run_errors(run_id) or dev.log_tail()
        [launched] = dev.runs({"dagster/schedule_name": SCHEDULE})  # the schedule was stopped after it
        assert launched["runId"] == run_id
        tags = {t["key"]: t["value"] for t in launched["tags"]}
        materialized = set(dev.run_materializations(run_id))

    # The availability rule, worked out here: day D is available from D + 2 days 00:00 UTC (it ends at
    # D + 1 and the reports lag up to 24 h), so a tick at T takes the date of T - 2 days as its newest.
    ticked_at = datetime.fromtimestamp(tick["timestamp"], UTC)
    newest = (ticked_at - timedelta(days=2)).date()
    first = max(newest - timedelta(days=LOOKBACK_DAYS), start_date)
    assert (tags[START], tags[END]) == (first.isoformat(), newest.isoformat())
    assert tags["dagster/run_key"] == f"sales_daily_refresh:{first}..{newest}"
    days = [first + timedelta(days=i) for i in range((newest - first).days + 1)]
    assert len(days) == LOOKBACK_DAYS + 1
    # One run for every asset of the group, every day of the range.
    assert materialized == {(asset, day.isoformat()) for asset in TABLES for day in days}

    with duckdb.connect(str(warehouse), read_only=True) as con:
        stored: dict[str, list[date]] = {}
        for asset, column in TABLES.items():
            table = asset.replace("/", ".")
            stored[asset] = [row[0] for row in con.sql(f"SELECT DISTINCT {column} FROM {table}").fetchall()]
    for asset, dates in stored.items():
        assert set(dates) <= set(days), asset  # nothing outside the range
    # The free starter tier export has rows every day; license events are sparser.
    assert set(stored["sales/free_starter_tier"]) == set(days)
    assert stored["sales/renewal_events"]
