"""End to end: the sandbox as a real HTTP server on loopback, a real `dagster dev` pointed at it in live
mode (as a user points it at another server that speaks the API), a backfill launched as the UI does.

All but the restart test use the session's shared `dagster dev` (conftest.py `shared_dev`), so each
asserts on its own runs, backfills, API paths and partitions: other tests' runs go on beside them."""

from __future__ import annotations

import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets.reports.parsers import parse_time_series
from marketplace_assets.sandbox import Sandbox
from marketplace_assets_tests.dagster_dev import (
    PROJECT_ROOT,
    SHARED_CREDENTIALS,
    DagsterDev,
    _selector,
    dagster_dev,
    read_duckdb,
)
from marketplace_assets_tests.test_definitions import EXPECTED

pytestmark = pytest.mark.e2e

DEV, EMAIL, TOKEN = SHARED_CREDENTIALS
REPORTING = f"/rest/3/reporting/developer-space/{DEV}/"
FEB_WEEKS = ["2025-02-02", "2025-02-09", "2025-02-16", "2025-02-23"]
EXPECTED_GROUPS = {path: group for path, (group, _) in EXPECTED.items()}


# The shared instance's parts, under the names these tests have always used.
@pytest.fixture
def dev(shared_dev) -> DagsterDev:
    return shared_dev.dev


@pytest.fixture
def sandbox(shared_dev) -> Sandbox:
    return shared_dev.sandbox


@pytest.fixture
def sandbox_url(shared_dev) -> str:
    return shared_dev.sandbox_url


@pytest.fixture
def warehouse(shared_dev) -> Path:
    return shared_dev.warehouse


def requests_under(sandbox: Sandbox, prefix: str) -> dict[str, int]:
    """The sandbox's request counts since its last reset, for the API paths under `prefix` only (other
    tests' runs call other reports meanwhile)."""
    return {p: n for p, n in sandbox.stats()["by_path"].items() if p.startswith(REPORTING + prefix)}


QUARTER = [(date(2025, 1, 1) + timedelta(days=i)).isoformat() for i in range(90)]


@pytest.fixture(scope="module")
def backfills(shared_dev) -> dict[str, str]:
    """The module's two UI backfills, launched at once (after a reset of the sandbox's request counts), so
    that their waits on the backfill daemon (a 30 s loop) overlap; each test waits for its own."""
    shared_dev.sandbox.reset_stats()
    return {
        "month": shared_dev.dev.launch_backfill([["evaluations", "by_hosting"]], FEB_WEEKS),
        "quarter": shared_dev.dev.launch_backfill([["sales", "transactions"]], QUARTER),
    }


def test_ui_lists_every_asset_in_its_group(dev: DagsterDev) -> None:
    assert dev.asset_keys() == EXPECTED_GROUPS


def test_month_backfill_is_one_run_with_one_request(
    dev: DagsterDev, sandbox: Sandbox, sandbox_url: str, warehouse: Path, backfills: dict[str, str]
) -> None:
    backfill_id = backfills["month"]
    status = dev.wait_for_backfill(backfill_id)
    runs = dev.runs({"dagster/backfill": backfill_id})
    errors = [m for r in runs for m in dev.run_errors(r["runId"])]
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), errors or dev.log_tail()
    assert [r["status"] for r in runs] == ["SUCCESS"]
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert (tags[RANGE_START_TAG], tags[RANGE_END_TAG]) == (
        FEB_WEEKS[0],
        FEB_WEEKS[-1],
    )
    # One ranged request for the whole month, not one per week.
    assert requests_under(sandbox, "evaluations/") == {REPORTING + "evaluations/hosting": 1}

    with MarketplaceClient(sandbox_url, EMAIL, TOKEN) as client:
        body = client.get_json(
            f"reporting/developer-space/{DEV}/evaluations/hosting",
            {"aggregation": "week", "startDate": "2025-02-02", "endDate": "2025-03-01"},
        )
    expected = parse_time_series(body, "evaluations/by_hosting").sort(pl.all())
    stored = read_duckdb(
        warehouse,
        lambda con: con.sql(
            "SELECT * FROM evaluations.by_hosting WHERE date BETWEEN ? AND ?",
            params=[date.fromisoformat(FEB_WEEKS[0]), date.fromisoformat(FEB_WEEKS[-1])],
        ).pl(),
    ).sort(pl.all())
    assert stored.height == 3 * (1 + len(sandbox.apps)) * 4
    assert stored.select(expected.columns).equals(expected)


def test_a_quarter_of_transactions_from_the_ui_is_one_run_with_one_export(
    dev: DagsterDev, sandbox: Sandbox, backfills: dict[str, str]
) -> None:
    status = dev.wait_for_backfill(backfills["quarter"])
    runs = dev.runs({"dagster/backfill": backfills["quarter"]})
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), [dev.run_errors(r["runId"]) for r in runs]
    assert len(runs) == 1
    # Before the export sensors below are switched on, this backfill is the only one starting exports.
    starts = {p: n for p, n in requests_under(sandbox, "sales/").items() if p.endswith("/async/export")}
    assert list(starts.values()) == [1], starts


def test_dagster_dev_keeps_its_state_across_restarts_without_dagster_home(tmp_path: Path) -> None:
    """`uv run dagster dev` with nothing set: the project's dagster.yaml is read and its storage persists."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", project / "dagster.yaml")
    (project / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: marketplace_assets.definitions\n"
        f"      working_directory: {PROJECT_ROOT}\n      location_name: marketplace_assets\n"
    )
    env = {"MARKETPLACE_SANDBOX": "1", "MARKETPLACE_WAREHOUSE": str(tmp_path / "sandbox.duckdb")}
    with dagster_dev(tmp_path / "logs", env, project_dir=project) as dev:
        run_id = dev.launch_run(["listings", "apps"])
        assert dev.wait_for_run(run_id)["status"] == "SUCCESS", dev.run_errors(run_id)
    assert (project / ".dagster" / "storage").is_dir()
    with dagster_dev(tmp_path / "logs", env, project_dir=project) as dev:
        assert run_id in [r["runId"] for r in dev.runs({})]
        # The project's pool limit reached the instance too.
        assert "default_limit" in (project / "dagster.yaml").read_text()


EXPORT_SENSORS = {
    "sales_transactions_export_sensor": ("sales.transactions", "purchase_details_sale_date"),
    "licenses_licenses_export_sensor": ("licenses.licenses", "last_updated"),
    "marketing_attribution_export_sensor": ("marketing.attribution", "date"),
}


CURRENT_AUTOMATION = "current_licenses_after_license_history"
AUTOMATION_SENSOR = """query ($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorType sensorState { status } } } }"""


def test_switching_the_export_sensors_on_fills_the_tables(
    dev: DagsterDev, sandbox: Sandbox, warehouse: Path
) -> None:
    """Nothing but the toggles: each sensor starts its export, polls it, and launches the run. (The
    shared instance's sensors tick every 5 s and its exports are ready on their first status read.)"""
    for sensor in EXPORT_SENSORS:
        assert dev.start_sensor(sensor) == "RUNNING"
    try:
        deadline = time.monotonic() + 300
        runs: dict[str, list[dict]] = {}
        while time.monotonic() < deadline:
            runs = {sensor: dev.runs({"dagster/sensor_name": sensor}) for sensor in EXPORT_SENSORS}
            if all(any(r["status"] in ("SUCCESS", "FAILURE") for r in found) for found in runs.values()):
                break
            time.sleep(1)
    finally:
        # Their runs are what is under test; switched off, they start no export into the tests that follow.
        for sensor in EXPORT_SENSORS:
            assert dev.stop_sensor(dev.sensor_state(sensor)["id"]) == "STOPPED"
    yesterday = date.today() - timedelta(days=1)
    for sensor, (table, column) in EXPORT_SENSORS.items():
        found = runs.get(sensor, [])
        assert [r["status"] for r in found] == ["SUCCESS"], [
            dev.run_errors(r["runId"]) for r in found
        ] or dev.log_tail()
        tags = {t["key"]: t["value"] for t in found[0]["tags"]}
        assert tags[RANGE_END_TAG] == yesterday.isoformat()
        first = date.fromisoformat(tags[RANGE_START_TAG])
        partitions = {p for _, p in dev.run_materializations(found[0]["runId"])}
        assert partitions and all(first.isoformat() <= str(p) <= tags[RANGE_END_TAG] for p in partitions)
        # The rows of the run's range (the backfills here are of 2025, long before it).
        [(rows, earliest, latest)] = read_duckdb(
            warehouse,
            lambda con, t=table, c=column, f=first: con.execute(
                f"SELECT count(*), min({c}), max({c}) FROM {t} WHERE {c} >= ?", [f]
            ).fetchall(),
        )
        assert rows > 0, table
        assert first <= earliest <= latest <= yesterday, (table, earliest, latest)
    # licenses/current follows licenses/licenses through its automation sensor, on without a toggle.
    sensor = dev.graphql(AUTOMATION_SENSOR, {"selector": _selector(sensorName=CURRENT_AUTOMATION)})
    assert sensor["sensorOrError"]["sensorState"]["status"] == "RUNNING", sensor
    # An automation condition sensor.
    assert sensor["sensorOrError"]["sensorType"] == "AUTO_MATERIALIZE", sensor
    deadline, current = time.monotonic() + 180, 0
    while time.monotonic() < deadline and not current:
        current = read_duckdb(warehouse, _current_licenses)
        if not current:
            time.sleep(1)
    assert current > 0, dev.log_tail()


def _current_licenses(con: duckdb.DuckDBPyConnection) -> int:
    """The rows of licenses.current; 0 before its table exists."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'licenses' AND table_name = 'current'"
    ).fetchone()
    if not (found and found[0]):
        return 0
    counted = con.execute("SELECT count(*) FROM licenses.current").fetchone()
    return counted[0] if counted else 0


UI_TOUR = """{ assetNodes {
    assetKey { path }
    targetingInstigators { __typename ... on Schedule { name } ... on Sensor { name } }
    assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
    internalFreshnessPolicy { __typename }
} }"""
PARTITION_FIGURES = """query ($path: [String!]!, $partitions: [String!]) {
  assetNodes(assetKeys: [{path: $path}]) {
    assetMaterializations(partitions: $partitions) {
      partition
      metadataEntries { label ... on IntMetadataEntry { intValue } }
    }
  }
}"""


def test_ui_shows_each_assets_automation_checks_freshness_and_partition_figures(
    dev: DagsterDev, sandbox: Sandbox
) -> None:
    """What a new user sees: every asset names the schedule or sensor that keeps it fresh, has checks and
    a freshness policy; and after the month backfill above (one run), each week has its own row count."""
    nodes = dev.graphql(UI_TOUR)["assetNodes"]
    assert len(nodes) == len(EXPECTED)
    for node in nodes:
        path = "/".join(node["assetKey"]["path"])
        assert node["targetingInstigators"], f"{path} has no schedule or sensor"
        assert node["assetChecksOrError"]["__typename"] == "AssetChecks", path
        assert node["assetChecksOrError"]["checks"], f"{path} has no checks"
        assert node["internalFreshnessPolicy"] is not None, f"{path} has no freshness policy"
    by_path = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert any(
        i["__typename"] == "Schedule" for i in by_path["evaluations/by_hosting"]["targetingInstigators"]
    )
    events = dev.graphql(PARTITION_FIGURES, {"path": ["evaluations", "by_hosting"], "partitions": FEB_WEEKS})
    rows = {
        e["partition"]: next(m["intValue"] for m in e["metadataEntries"] if m["label"] == "dagster/row_count")
        for e in events["assetNodes"][0]["assetMaterializations"]
    }
    # 3 hosting series for the total and each app: one week's rows, not the month's 4 weeks.
    assert rows == {week: 3 * (1 + len(sandbox.apps)) for week in FEB_WEEKS}
