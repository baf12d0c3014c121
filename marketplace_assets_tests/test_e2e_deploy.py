"""End to end: the production deployment as three processes (`dagster code-server start`,
`dagster-webserver`, `dagster-daemon run`, with the command lines of deploy_processes.py) on one instance
(deploy/dagster.yaml) kept in a real PostgreSQL database, pointed at the sandbox served over HTTP.

Only the code server gets the MARKETPLACE_* settings: the webserver and the daemon reach the code through
deploy/workspace.yaml, and share runs, ticks and daemon heartbeats through PostgreSQL alone."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import yaml
from psycopg import sql

from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets_tests.dagster_dev import PROJECT_ROOT, DagsterDev, free_port, live_settings
from marketplace_assets_tests.deploy_processes import Service, code_server, daemon, wait_for_port, webserver
from marketplace_assets_tests.postgres_server import PostgresServer

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
DEV, EMAIL, TOKEN = "deploy-developer", "deploy@example.com", "deploy-Token-3c9e1f7a"
INSTANCE_DB = INSTANCE_ROLE = "dagster_instance"
# Characters a URL must escape: the URL carries it percent-encoded, and neither form may reach a log.
INSTANCE_PASSWORD = "dagster-Instance:p@ss/w0rd 7c1"
ASSET = ["evaluations", "by_hosting"]
FEB_WEEKS = ["2025-02-02", "2025-02-09", "2025-02-16", "2025-02-23"]
SENSOR = "marketing_attribution_export_sensor"  # stopped by default (MARKETPLACE_AUTOMATION unset)
APPS_SENSOR = "marketplace_apps_sensor"  # running by default
SETTINGS_MIRRORED = ("concurrency", "run_monitoring", "run_retries", "telemetry")


def password_forms() -> tuple[str, str]:
    """The instance's password as given, and as it is written inside DAGSTER_POSTGRES_URL."""
    return INSTANCE_PASSWORD, quote(INSTANCE_PASSWORD, safe="")


@dataclass(frozen=True)
class InstanceDatabase:
    server: PostgresServer

    @property
    def url(self) -> str:
        """DAGSTER_POSTGRES_URL as documented: the psycopg2 driver named (a bare postgresql:// means psycopg 3
        with SQLAlchemy 2.1, which dagster-postgres fails on), the password inside, percent-encoded."""
        s, password = self.server, quote(INSTANCE_PASSWORD, safe="")
        return f"postgresql+psycopg2://{INSTANCE_ROLE}:{password}@{s.host}:{s.port}/{INSTANCE_DB}"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(
            host=self.server.host,
            port=self.server.port,
            dbname=INSTANCE_DB,
            user=INSTANCE_ROLE,
            password=INSTANCE_PASSWORD,
            autocommit=True,
        )


@dataclass
class Deployment(DagsterDev):
    """The GraphQL helpers of DagsterDev (sensors, schedules, runs), talking to the deployment's webserver."""

    services: dict[str, Service] = field(default_factory=dict)

    def start_webserver(self, timeout: float = 120.0) -> None:
        self.services["webserver"].start()
        self.process = self.services["webserver"].process
        self._wait_until_loaded(timeout)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(service.log_tail(lines) for service in self.services.values())

    def backfill_status(self, backfill_id: str) -> str:
        query = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
            __typename ... on PartitionBackfill { status } ... on PythonError { message } } }"""
        return self.graphql(query, {"id": backfill_id})["partitionBackfillOrError"]["status"]


def finished_ticks(sensor_state: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in sensor_state["ticks"] if t["status"] != "STARTED"]


@dataclass(frozen=True)
class Backfill:
    backfill_id: str
    status: str
    runs: list[dict[str, Any]]

    @property
    def run_ids(self) -> set[str]:
        return {r["runId"] for r in self.runs}


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with serve(Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN), port=0) as url:
        yield url


@pytest.fixture(scope="module")
def instance_db(postgres_server: PostgresServer) -> InstanceDatabase:
    """A database of its own for the instance (not the warehouse tests'), owned by a role of its own."""
    with postgres_server.admin_connect() as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(INSTANCE_ROLE), sql.Literal(INSTANCE_PASSWORD)
            )
        )
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(INSTANCE_DB), sql.Identifier(INSTANCE_ROLE)
            )
        )
    return InstanceDatabase(postgres_server)


@pytest.fixture(scope="module")
def deployment(
    instance_db: InstanceDatabase, sandbox_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    logs = tmp_path_factory.mktemp("deploy_logs")
    code_port, web_port = free_port(), free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MARKETPLACE_", "DAGSTER_"))}
    env = inherited | {
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": instance_db.url,
        "DAGSTER_COMPUTE_LOGS_DIR": str(home / "compute_logs"),
        "DAGSTER_CODE_SERVER_HOST": HOST,
        "DAGSTER_CODE_SERVER_PORT": str(code_port),
    }
    warehouse = tmp_path_factory.mktemp("warehouse") / "marketplace.duckdb"
    code_env = env | live_settings(sandbox_url, warehouse, (DEV, EMAIL, TOKEN))
    services = {
        "code_server": Service("code_server", code_server(code_port, HOST), code_env, PROJECT_ROOT, logs),
        "webserver": Service("webserver", webserver(web_port, HOST), env, PROJECT_ROOT, logs),
        "daemon": Service("daemon", daemon(), env, PROJECT_ROOT, logs),
    }
    deployed = Deployment(home=home, env=env, port=web_port, services=services)
    try:
        # The code server listens once its code has loaded; the other two then find it at once.
        services["code_server"].start()
        wait_for_port(services["code_server"], HOST, code_port, timeout=120)
        services["daemon"].start()
        deployed.start_webserver()
        yield deployed
    finally:
        for name in ("webserver", "daemon", "code_server"):
            services[name].stop()


@pytest.fixture(autouse=True)
def _show_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """On a failed test, the tail of the three processes' logs (pytest shows it with the failure)."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed and "deployment" in request.fixturenames:
        print(request.getfixturevalue("deployment").log_tail(80))


@pytest.fixture(scope="module")
def backfill(deployment: Deployment) -> Backfill:
    """A month of a weekly asset, launched as the UI's Launch backfill does."""
    backfill_id = deployment.launch_backfill([ASSET], FEB_WEEKS)
    status = deployment.wait_for_backfill(backfill_id, timeout=150)
    return Backfill(backfill_id, status, deployment.runs({"dagster/backfill": backfill_id}))


def test_the_deploy_instance_has_the_projects_limits_monitoring_and_retries() -> None:
    local = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    deploy = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    for key in SETTINGS_MIRRORED:
        assert deploy[key] == local[key], key
    assert deploy["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}}
    assert deploy["run_coordinator"]["class"] == "QueuedRunCoordinator"
    workspace = yaml.safe_load((PROJECT_ROOT / "deploy" / "workspace.yaml").read_text())
    assert workspace["load_from"] == [
        {
            "grpc_server": {
                "host": {"env": "DAGSTER_CODE_SERVER_HOST"},
                "port": {"env": "DAGSTER_CODE_SERVER_PORT"},
                "location_name": "marketplace_assets",
            }
        }
    ]


def test_the_webserver_runs_on_the_postgres_instance_with_a_healthy_daemon(deployment: Deployment) -> None:
    query = """{ instance { info runQueuingSupported runQueueConfig { maxConcurrentRuns }
        poolConfig { defaultPoolLimit }
        daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"""
    local = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    deadline = time.monotonic() + 90
    while True:
        instance = deployment.graphql(query)["instance"]
        unhealthy = [
            d["daemonType"]
            for d in instance["daemonHealth"]["allDaemonStatuses"]
            if d["required"] and not d["healthy"]
        ]
        if not unhealthy or time.monotonic() > deadline:
            break
        time.sleep(2)
    # The daemon's heartbeats reach the webserver through PostgreSQL only.
    assert unhealthy == [], deployment.log_tail()
    # The UI's Configuration page shows the storage classes, never the URL or its password.
    info = instance["info"]
    for storage in ("PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"):
        assert storage in info, info
    assert not any(form in info for form in (*password_forms(), "postgresql")), info
    assert instance["runQueuingSupported"] is True
    assert (
        instance["runQueueConfig"]["maxConcurrentRuns"] == local["concurrency"]["runs"]["max_concurrent_runs"]
    )
    assert instance["poolConfig"]["defaultPoolLimit"] == local["concurrency"]["pools"]["default_limit"]


def test_a_backfill_launched_over_graphql_succeeds(deployment: Deployment, backfill: Backfill) -> None:
    errors = [m for r in backfill.runs for m in deployment.run_errors(r["runId"])]
    assert backfill.status in ("COMPLETED", "COMPLETED_SUCCESS"), errors or deployment.log_tail()
    assert backfill.runs and [r["status"] for r in backfill.runs] == ["SUCCESS"] * len(backfill.runs), errors
    materialized = {m for r in backfill.runs for m in deployment.run_materializations(r["runId"])}
    assert materialized == {("/".join(ASSET), week) for week in FEB_WEEKS}


def test_a_sensor_switched_on_ticks_and_its_ticks_are_in_postgres(
    deployment: Deployment, instance_db: InstanceDatabase
) -> None:
    assert deployment.sensor_state(SENSOR)["status"] == "STOPPED"
    assert deployment.start_sensor(SENSOR) == "RUNNING"
    deadline = time.monotonic() + 90
    try:
        # A tick is recorded as STARTED while it is evaluated: wait for one that has ended.
        while not (ticks := finished_ticks(state := deployment.sensor_state(SENSOR))):
            if time.monotonic() > deadline:
                raise AssertionError(f"{SENSOR} did not tick within 90 s:\n{deployment.log_tail()}")
            time.sleep(1)
    finally:
        # One tick is the point; stopped again, it launches no run into the tests that follow.
        assert deployment.stop_sensor(deployment.sensor_state(SENSOR)["id"]) == "STOPPED"
    tick = ticks[-1]  # newest first: the last is the first
    assert tick["status"] in ("SUCCESS", "SKIPPED"), tick
    with instance_db.connect() as con:
        rows = con.execute(
            "SELECT id, status FROM job_ticks WHERE selector_id = %s AND type = 'SENSOR'",
            (state["selectorId"],),
        ).fetchall()
    assert (int(tick["tickId"]), tick["status"]) in rows


def test_the_run_history_is_in_postgres_and_not_on_local_disk(
    deployment: Deployment, backfill: Backfill, instance_db: InstanceDatabase
) -> None:
    with instance_db.connect() as con:
        runs = con.execute(
            "SELECT run_id, status FROM runs WHERE backfill_id = %s", (backfill.backfill_id,)
        ).fetchall()
        backfills = con.execute(
            "SELECT status FROM bulk_actions WHERE key = %s", (backfill.backfill_id,)
        ).fetchall()
        partitions = con.execute(
            "SELECT DISTINCT partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
            "AND asset_key = %s AND run_id = ANY(%s)",
            ('["evaluations", "by_hosting"]', list(backfill.run_ids)),
        ).fetchall()
    assert dict(runs) == {run_id: "SUCCESS" for run_id in backfill.run_ids}
    assert [status for (status,) in backfills] == [backfill.status]
    assert sorted(p for (p,) in partitions) == FEB_WEEKS
    # Nothing fell back to the SQLite storage under DAGSTER_HOME.
    assert sorted(deployment.home.rglob("*.db")) == []


def test_a_restarted_webserver_reads_the_same_history(deployment: Deployment, backfill: Backfill) -> None:
    ticks_before = {t["tickId"] for t in deployment.sensor_state(APPS_SENSOR)["ticks"]}
    deployment.services["webserver"].stop()
    assert deployment.services["webserver"].exited()
    deployment.start_webserver()
    runs = deployment.runs({"dagster/backfill": backfill.backfill_id})
    assert {(r["runId"], r["status"]) for r in runs} == {(r["runId"], r["status"]) for r in backfill.runs}
    assert deployment.backfill_status(backfill.backfill_id) == backfill.status
    # The apps sensor runs by default and has ticked since the daemon started; it may tick again meanwhile.
    ticks_after = {t["tickId"] for t in deployment.sensor_state(APPS_SENSOR)["ticks"]}
    assert ticks_before and ticks_before <= ticks_after


def test_the_instance_password_is_in_no_log(deployment: Deployment, backfill: Backfill) -> None:
    logs = {name: service.log() for name, service in deployment.services.items()}
    # The real logs of the three processes: the run workers' events are in the code server's.
    assert "Started Dagster code proxy server" in logs["code_server"]
    for run_id in backfill.run_ids:
        assert any(run_id in line and "RUN_SUCCESS" in line for line in logs["code_server"].splitlines())
    assert "Serving dagster-webserver" in logs["webserver"]
    assert "Instance is configured with the following daemons" in logs["daemon"]
    step_logs = [p for p in (deployment.home / "compute_logs").rglob("*") if p.is_file()]
    assert step_logs, "no step logs were written under DAGSTER_COMPUTE_LOGS_DIR"
    logs |= {str(p): p.read_text(errors="replace") for p in step_logs}
    for form in password_forms():
        leaked = [name for name, text in logs.items() if form in text]
        assert leaked == [], f"the instance's password is in {leaked}"
