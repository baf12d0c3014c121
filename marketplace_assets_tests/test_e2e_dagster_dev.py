"""End to end: the sandbox as a real HTTP server on loopback, a real `dagster dev` pointed at it in live
mode (as a user points it at another server that speaks the API), a backfill launched as the UI does."""

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
from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets.sandbox.exports import configure_exports
from marketplace_assets_tests.dagster_dev import (
    PROJECT_ROOT,
    DagsterDev,
    _selector,
    dagster_dev,
    live_settings,
)
from marketplace_assets_tests.test_definitions import EXPECTED

pytestmark = pytest.mark.e2e

DEV, EMAIL, TOKEN = "e2e-developer", "e2e@example.com", "e2e-Token-5f0c2b9a7d"
FEB_WEEKS = ["2025-02-02", "2025-02-09", "2025-02-16", "2025-02-23"]
EXPECTED_GROUPS = {path: group for path, (group, _) in EXPECTED.items()}


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN)


@pytest.fixture(scope="module")
def sandbox_url(sandbox: Sandbox):
    with serve(sandbox, port=0) as url:
        yield url


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("warehouse") / "marketplace.duckdb"


@pytest.fixture(scope="module")
def dev(sandbox_url: str, warehouse: Path, tmp_path_factory: pytest.TempPathFactory):
    env = live_settings(sandbox_url, warehouse, (DEV, EMAIL, TOKEN))
    with dagster_dev(tmp_path_factory.mktemp("dagster_home"), env) as running:
        yield running


def test_ui_lists_every_asset_in_its_group(dev: DagsterDev) -> None:
    assert dev.asset_keys() == EXPECTED_GROUPS


def test_month_backfill_is_one_run_with_one_request(
    dev: DagsterDev, sandbox: Sandbox, sandbox_url: str, warehouse: Path
) -> None:
    sandbox.reset_stats()
    backfill_id = dev.launch_backfill([["evaluations", "by_hosting"]], FEB_WEEKS)
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
    assert sandbox.stats()["by_path"] == {f"/rest/3/reporting/developer-space/{DEV}/evaluations/hosting": 1}

    with MarketplaceClient(sandbox_url, EMAIL, TOKEN) as client:
        body = client.get_json(
            f"reporting/developer-space/{DEV}/evaluations/hosting",
            {"aggregation": "week", "startDate": "2025-02-02", "endDate": "2025-03-01"},
        )
    expected = parse_time_series(body, "evaluations/by_hosting").sort(pl.all())
    with duckdb.connect(str(warehouse), read_only=True) as con:
        stored = con.sql("SELECT * FROM evaluations.by_hosting").pl().sort(pl.all())
    assert stored.height == 3 * (1 + len(sandbox.apps)) * 4
    assert stored.select(expected.columns).equals(expected)


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
    """Nothing but the toggles: each sensor starts its export, polls it, and launches the run."""
    configure_exports(sandbox, polls_to_complete=1)
    for sensor in EXPORT_SENSORS:
        assert dev.start_sensor(sensor) == "RUNNING"
    deadline = time.monotonic() + 300
    runs: dict[str, list[dict]] = {}
    while time.monotonic() < deadline:
        runs = {sensor: dev.runs({"dagster/sensor_name": sensor}) for sensor in EXPORT_SENSORS}
        if all(any(r["status"] in ("SUCCESS", "FAILURE") for r in found) for found in runs.values()):
            break
        time.sleep(2)
    yesterday = date.today() - timedelta(days=1)
    for sensor, (table, column) in EXPORT_SENSORS.items():
        found = runs.get(sensor, [])
        assert [r["status"] for r in found] == ["SUCCESS"], [
            dev.run_errors(r["runId"]) for r in found
        ] or dev.log_tail()
        tags = {t["key"]: t["value"] for t in found[0]["tags"]}
        assert tags[RANGE_END_TAG] == yesterday.isoformat()
        with duckdb.connect(str(warehouse), read_only=True) as con:
            dates = con.sql(f"SELECT DISTINCT {column} FROM {table}").pl().to_series()
        assert dates.len() > 0, table
        assert dates.max() <= yesterday and dates.min() >= date.fromisoformat(tags[RANGE_START_TAG])
    # licenses/current follows licenses/licenses through its automation sensor, on without a toggle.
    sensor = dev.graphql(AUTOMATION_SENSOR, {"selector": _selector(sensorName=CURRENT_AUTOMATION)})
    assert sensor["sensorOrError"]["sensorState"]["status"] == "RUNNING", sensor
    assert sensor["sensorOrError"]["sensorType"] == "AUTO_MATERIALIZE", (
        sensor
    )  # an automation condition sensor
    deadline, current = time.monotonic() + 180, 0
    while time.monotonic() < deadline and not current:
        time.sleep(2)
        try:
            with duckdb.connect(str(warehouse), read_only=True) as con:
                found = con.execute(
                    "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'licenses' "
                    "AND table_name = 'current'"
                ).fetchone()
                if found and found[0]:
                    current = con.execute("SELECT count(*) FROM licenses.current").fetchone()[0]
        except duckdb.IOException:  # a run holds the file for writing: look again
            continue
    assert current > 0, dev.log_tail()


def test_a_quarter_of_transactions_from_the_ui_is_one_run_with_one_export(
    dev: DagsterDev, sandbox: Sandbox
) -> None:
    sandbox.reset_stats()
    days = [(date(2025, 1, 1) + timedelta(days=i)).isoformat() for i in range(90)]
    backfill_id = dev.launch_backfill([["sales", "transactions"]], days)
    status = dev.wait_for_backfill(backfill_id)
    runs = dev.runs({"dagster/backfill": backfill_id})
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), [dev.run_errors(r["runId"]) for r in runs]
    assert len(runs) == 1
    starts = {p: n for p, n in sandbox.stats()["by_path"].items() if p.endswith("/async/export")}
    assert list(starts.values()) == [1], starts


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
