"""Async exports: runs that drive their own export (UI backfills), the export sensors' ticks with a real
instance, and license history, all against the sandbox served over loopback."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.exports import Lifecycle
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.exports import build_current_licenses_asset, build_export_asset
from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets.export_sensors import ExportSensorSettings, build_export_sensor
from marketplace_assets.reports.catalog import EXPORT_REPORTS
from marketplace_assets.sandbox import FaultRule, Sandbox, serve
from marketplace_assets.sandbox.exports import configure_exports
from marketplace_assets.sandbox.licensing_data import set_clock
from marketplace_assets_tests.resources import asset_resources

DEV, EMAIL, TOKEN = "export-dev", "export@example.com", "export-Token-1234567890"
START = date(2024, 1, 1)
DAILY = dg.DailyPartitionsDefinition(start_date=START.isoformat())
REPORTS = {r.label: r for r in EXPORT_REPORTS}
ASSETS = {label: build_export_asset(r, start_date=START, sandbox=False) for label, r in REPORTS.items()}
CURRENT = build_current_licenses_asset(sandbox=False)
FAST = ExportSensorSettings(restart_backoff_seconds=0, deadline_seconds=3600, max_attempts=2)


@pytest.fixture
def sandbox() -> Sandbox:
    sandbox = Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN)
    configure_exports(sandbox, polls_to_complete=3)
    return sandbox


@pytest.fixture
def base_url(sandbox: Sandbox):
    with serve(sandbox, port=0) as url:
        yield url


def marketplace(base_url: str) -> MarketplaceResource:
    return MarketplaceResource(
        developer_id=DEV, email=EMAIL, api_token=TOKEN, base_url=base_url, export_poll_interval=0.05
    )


def materialize(assets: list, base_url: str, warehouse: Path, **kw) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        resources=asset_resources(marketplace(base_url), warehouse, kw.pop("pii", None)),
        instance=kw.pop("instance", None) or dg.DagsterInstance.ephemeral(),
        **kw,
    )


def table(warehouse: Path, name: str) -> pl.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(f"SELECT * FROM {name}").pl()


def range_tags(start: str, end: str) -> dict[str, str]:
    return {RANGE_START_TAG: start, RANGE_END_TAG: end}


def export_starts(sandbox: Sandbox) -> int:
    return sum(n for path, n in sandbox.stats()["by_path"].items() if path.endswith("/async/export"))


def test_a_backfill_range_is_one_run_with_one_export(sandbox: Sandbox, base_url: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    result = materialize(
        [ASSETS["sales/transactions"]], base_url, warehouse, tags=range_tags("2025-02-01", "2025-02-28")
    )
    assert result.success
    assert export_starts(sandbox) == 1, "a range of 28 days is one export, not 28"
    rows = table(warehouse, "sales.transactions")
    assert rows.height > 0
    assert rows["purchase_details_sale_date"].min() >= date(2025, 2, 1)
    assert rows["purchase_details_sale_date"].max() <= date(2025, 2, 28)
    assert rows["transaction_line_item_id"].n_unique() == rows.height
    assert rows.schema["purchase_details_purchase_price"] in (pl.Float64, pl.Int64)
    # The same rows as the synchronous list endpoint: one pipeline, no drift.
    with MarketplaceClient(base_url, EMAIL, TOKEN) as client:
        listed = client.get_offset_paged(
            f"reporting/developer-space/{DEV}/sales/transactions",
            {"startDate": "2025-02-01", "endDate": "2025-02-28"},
            "transactions",
        )
    assert sorted(r["transactionLineItemId"] for r in listed) == sorted(rows["transaction_line_item_id"])


def test_marketing_attribution_backfill(sandbox: Sandbox, base_url: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    assert materialize(
        [ASSETS["marketing/attribution"]], base_url, warehouse, tags=range_tags("2025-02-01", "2025-02-07")
    ).success
    rows = table(warehouse, "marketing.attribution")
    assert rows.height > 0 and set(rows["date"].unique().to_list()) <= {date(2025, 2, d) for d in range(1, 8)}


def test_a_failed_export_is_restarted_inside_the_run(
    sandbox: Sandbox, base_url: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(
        "marketplace_assets.assets.exports._lifecycle",
        lambda marketplace: Lifecycle(poll_interval=marketplace.export_poll_interval, restart_backoff=0.0),
    )
    configure_exports(sandbox, fail_next=1)
    # (Transactions: identical attribution parameters would answer the same, failed, export id.)
    result = materialize(
        [ASSETS["sales/transactions"]], base_url, tmp_path / "w.duckdb", partition_key="2025-02-03"
    )
    assert result.success
    assert export_starts(sandbox) == 2


def tick(sensor: dg.SensorDefinition, base_url: str, cursor: str | None, instance: dg.DagsterInstance):
    resources = {"marketplace": marketplace(base_url)}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = sensor(context)
    return result, result.cursor


def ticks_until_done(sensor: dg.SensorDefinition, base_url: str, ticks: int = 6) -> list[dg.RunRequest]:
    """The run requests of `ticks` ticks of a fresh sensor on a fresh instance."""
    instance, requests, cursor = dg.DagsterInstance.ephemeral(), [], None
    for _ in range(ticks):
        result, cursor = tick(sensor, base_url, cursor, instance)
        requests += result.run_requests
    return requests


def test_sensor_starts_polls_and_requests_exactly_one_run(
    sandbox: Sandbox, base_url: str, tmp_path: Path
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    sensor = build_export_sensor(REPORTS["sales/transactions"], DAILY, FAST)
    requests, cursor = [], None
    for _ in range(6):
        result, cursor = tick(sensor, base_url, cursor, instance)
        requests += result.run_requests
        assert len(cursor) < 2000, "the cursor stays small"
    assert export_starts(sandbox) == 1
    [request] = requests
    yesterday = date.today() - timedelta(days=1)
    assert request.tags[RANGE_END_TAG] == yesterday.isoformat()
    assert request.tags[RANGE_START_TAG] == (yesterday - timedelta(days=2)).isoformat()
    config = request.run_config["ops"]["sales__transactions"]["config"]
    assert request.run_key.endswith(config["export_id"])
    # The list's count for the export's filters, taken before the export started, travels with the run.
    with MarketplaceClient(base_url, EMAIL, TOKEN) as client:
        listed = client.count(
            f"reporting/developer-space/{DEV}/sales/transactions",
            {
                "startDate": request.tags[RANGE_START_TAG],
                "endDate": yesterday.isoformat(),
            },
        )
    assert config["expected_records"] == listed
    # A restarted sensor (a new definition, the stored cursor) carries on without starting again.
    again = build_export_sensor(REPORTS["sales/transactions"], DAILY, FAST)
    result, _ = tick(again, base_url, cursor, instance)
    assert result.run_requests == [] and export_starts(sandbox) == 1
    # The requested run downloads that export; it does not start another.
    warehouse = tmp_path / "w.duckdb"
    run = materialize(
        [ASSETS["sales/transactions"]], base_url, warehouse, tags=request.tags, run_config=request.run_config
    )
    assert run.success and export_starts(sandbox) == 1
    assert table(warehouse, "sales.transactions")["purchase_details_sale_date"].max() <= yesterday


def test_sensor_restarts_a_failed_export_then_gives_up_visibly(sandbox: Sandbox, base_url: str) -> None:
    instance = dg.DagsterInstance.ephemeral()
    sensor = build_export_sensor(REPORTS["marketing/attribution"], DAILY, FAST)
    configure_exports(sandbox, fail_next=5)
    requests, cursor = [], None
    for _ in range(12):
        result, cursor = tick(sensor, base_url, cursor, instance)
        requests += result.run_requests
    assert export_starts(sandbox) == FAST.max_attempts
    [request] = requests
    assert request.run_key.endswith(":failed")
    message = request.run_config["ops"]["marketing__attribution"]["config"]["failure"]
    assert "FAILED 2 times" in message and "gave up" in message
    assert json.loads(cursor)["in_flight"] == []


def test_sensor_treats_unknown_status_as_running_until_the_deadline(sandbox: Sandbox, base_url: str) -> None:
    instance = dg.DagsterInstance.ephemeral()
    configure_exports(sandbox, unknown_status="PAUSED", unknown_polls=2)
    sensor = build_export_sensor(REPORTS["licenses/licenses"], DAILY, FAST)
    requests, cursor = [], None
    for _ in range(8):
        result, cursor = tick(sensor, base_url, cursor, instance)
        requests += result.run_requests
    assert len(requests) == 1 and not requests[0].run_key.endswith(":failed")
    # An export that never completes is given up once the deadline (restarts included) has passed: it is
    # not started again, and the failure run names the export and the time waited.
    configure_exports(sandbox, unknown_polls=0, never_complete=True)
    stuck = build_export_sensor(
        REPORTS["licenses/licenses"],
        DAILY,
        ExportSensorSettings(deadline_seconds=0, restart_backoff_seconds=0, max_attempts=2),
    )
    before = export_starts(sandbox)
    requests, cursor = [], None
    for _ in range(6):
        result, cursor = tick(stuck, base_url, cursor, instance)
        requests += result.run_requests
    assert export_starts(sandbox) - before == 1
    assert [r.run_key.endswith(":failed") for r in requests] == [True]
    failure = requests[0].run_config["ops"]["licenses__licenses"]["config"]["failure"]
    assert "was not finished after waiting" in failure and "MARKETPLACE_EXPORT_DEADLINE" in failure


def test_license_history_keeps_every_version(sandbox: Sandbox, base_url: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    day1 = date(2025, 3, 3)
    set_clock(sandbox, day1)
    assert materialize(
        [ASSETS["licenses/licenses"]], base_url, warehouse, partition_key=day1.isoformat()
    ).success
    version1 = table(warehouse, "licenses.licenses")
    assert version1.height > 0 and version1["last_updated"].unique().to_list() == [day1]
    # A year on, some of those licenses have changed (renewed, upgraded, lapsed).
    set_clock(sandbox, date(2026, 3, 10))
    with MarketplaceClient(base_url, EMAIL, TOKEN) as client:
        now = client.get_offset_paged(
            f"reporting/developer-space/{DEV}/licenses", {"lastUpdated": "2025-03-04"}, "licenses"
        )
    changed = [r for r in now if r["appEntitlementNumber"] in set(version1["app_entitlement_number"])]
    assert changed, "some license of day 1 changed later"
    license_, day2 = changed[0]["appEntitlementNumber"], date.fromisoformat(changed[0]["lastUpdated"])
    assert materialize(
        [ASSETS["licenses/licenses"]], base_url, warehouse, partition_key=day2.isoformat()
    ).success
    assert materialize(
        [ASSETS["licenses/licenses"]], base_url, warehouse, partition_key=day1.isoformat()
    ).success
    versions = table(warehouse, "licenses.licenses").filter(pl.col("app_entitlement_number") == license_)
    assert sorted(versions["last_updated"].to_list()) == [day1, day2], (
        "version 1 survives re-materializing day 1"
    )
    stored = table(warehouse, "licenses.licenses")
    assert stored.select("app_entitlement_number", "last_updated").is_duplicated().sum() == 0
    assert materialize([CURRENT], base_url, warehouse).success
    current = table(warehouse, "licenses.current")
    assert current.filter(pl.col("app_entitlement_number") == license_)["last_updated"].to_list() == [day2]
    assert current["app_entitlement_number"].n_unique() == current.height
    # Every license of the account, including those last changed long before the start date.
    assert current["last_updated"].min() < date(2024, 1, 1)


def test_a_tick_does_bounded_work_with_hundreds_of_exports_in_flight(sandbox: Sandbox, base_url: str) -> None:
    report = REPORTS["sales/transactions"]
    last = DAILY.get_last_partition_key()
    handle = {"status_href": "/rest/3/x/status", "download_href": "/rest/3/x", "accept": "csv"}
    jobs = [
        {
            "start": last,
            "end": last,
            "attempt": 1,
            "started": time.time(),
            "handle": {**handle, "export_id": f"lost-{i}"},
        }
        for i in range(300)
    ]
    cursor = json.dumps({"last_started": last, "in_flight": jobs})
    sandbox.reset_stats()
    result, new_cursor = tick(
        build_export_sensor(report, DAILY, FAST), base_url, cursor, dg.DagsterInstance.ephemeral()
    )
    assert sandbox.stats()["requests"] == FAST.max_polls, "one status poll per job, at most max_polls a tick"
    assert result.run_requests == []
    state = json.loads(new_cursor)
    assert len(state["in_flight"]) == 300
    # The exports the service no longer knows (404) are restarted, not crashed on.
    assert sum(job["attempt"] == 2 for job in state["in_flight"]) == FAST.max_polls


def test_a_sensor_run_whose_file_is_short_of_the_sensors_count_fails_and_writes_nothing(
    sandbox: Sandbox, base_url: str, tmp_path: Path
) -> None:
    [request] = ticks_until_done(build_export_sensor(REPORTS["sales/transactions"], DAILY, FAST), base_url)
    expected = request.run_config["ops"]["sales__transactions"]["config"]["expected_records"]
    assert expected > 1
    sandbox.faults.add(FaultRule(path=r"/async/export/[^/]+$", kind="short_file", fraction=0.5))
    warehouse = tmp_path / "w.duckdb"
    run = materialize(
        [ASSETS["sales/transactions"]], base_url, warehouse, tags=request.tags,
        run_config=request.run_config, raise_on_error=False,
    )  # fmt: skip
    assert not run.success
    failure = run.failure_data_for_node("sales__transactions")
    message = str(failure.error) if failure and failure.error else ""
    assert f"Expected {expected} record(s), received {expected // 2}" in message
    assert not warehouse.exists() or "transactions" not in str(
        duckdb.connect(str(warehouse), read_only=True).execute("SHOW ALL TABLES").fetchall()
    )
