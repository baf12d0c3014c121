"""End to end: a daily schedule switched on through GraphQL as the UI's toggle does, in the session's
shared `dagster dev` (conftest.py `shared_dev`), where daily schedules tick every minute
(MARKETPLACE_CRON_DAILY="* * * * *"). Its first tick must launch one run for the whole group over the range
the availability rule gives for the tick time, and fill the tables.

The schedule is switched on as the shared instance starts (the `shared_schedule` mark), and off again
right after its first tick that launched a run (`DagsterDev.first_launch`): that tick, at a minute
boundary, falls while the tests before this one run, and this test waits only for what is left of it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets_tests.dagster_dev import read_duckdb

SCHEDULE = "sales_daily_refresh_schedule"
pytestmark = [pytest.mark.e2e, pytest.mark.shared_schedule(SCHEDULE)]

# The sales group's daily assets and the column each table is partitioned by.
TABLES = {
    "sales/churn_events": "event_date",
    "sales/conversion_events": "event_date",
    "sales/renewal_events": "event_date",
    "sales/free_starter_tier": "date",
}
START, END = RANGE_START_TAG, RANGE_END_TAG
LOOKBACK_DAYS = 3  # the default


def test_a_daily_schedule_switched_on_launches_one_run_over_the_available_days(shared_dev) -> None:
    dev = shared_dev.dev
    # A minute at most after the switch, plus the daemon's loop; normally long past.
    tick = shared_dev.first_launches[SCHEDULE].result(timeout=150)
    assert tick["status"] == "SUCCESS" and len(tick["runIds"]) == 1, tick
    run_id = tick["runIds"][0]
    run = dev.wait_for_run(run_id, timeout=180)
    assert run["status"] == "SUCCESS", dev.run_errors(run_id) or dev.log_tail()
    # Switched off after that tick, the schedule launched nothing else.
    [launched] = dev.runs({"dagster/schedule_name": SCHEDULE})
    assert launched["runId"] == run_id
    tags = {t["key"]: t["value"] for t in launched["tags"]}
    materialized = set(dev.run_materializations(run_id))

    # The availability rule, worked out here: day D is available from D + 2 days 00:00 UTC (it ends at
    # D + 1 and the reports lag up to 24 h), so a tick at T takes the date of T - 2 days as its newest.
    ticked_at = datetime.fromtimestamp(tick["timestamp"], UTC)
    newest = (ticked_at - timedelta(days=2)).date()
    start_date = date.fromisoformat(dev.env["MARKETPLACE_START_DATE"])
    first = max(newest - timedelta(days=LOOKBACK_DAYS), start_date)
    assert (tags[START], tags[END]) == (first.isoformat(), newest.isoformat())
    assert tags["dagster/run_key"] == f"sales_daily_refresh:{first}..{newest}"
    days = [first + timedelta(days=i) for i in range((newest - first).days + 1)]
    assert len(days) == LOOKBACK_DAYS + 1
    # One run for every asset of the group, every day of the range, and nothing else.
    assert materialized == {(asset, day.isoformat()) for asset in TABLES for day in days}

    def stored_dates(con, column: str, table: str) -> set[date]:
        # The range only: the shared warehouse may hold other tests' days of the same tables.
        query = f"SELECT DISTINCT {column} FROM {table} WHERE {column} BETWEEN ? AND ?"
        return {row[0] for row in con.execute(query, [days[0], days[-1]]).fetchall()}

    stored = read_duckdb(
        shared_dev.warehouse,
        lambda con: {a: stored_dates(con, c, a.replace("/", ".")) for a, c in TABLES.items()},
    )
    # The free starter tier export has rows every day; license events are sparser.
    assert stored["sales/free_starter_tier"] == set(days)
    assert stored["sales/renewal_events"]
