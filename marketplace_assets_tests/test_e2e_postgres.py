"""End to end into PostgreSQL: a real `dagster dev` in live mode against the sandbox served on loopback,
its warehouse a real PostgreSQL server (`postgres_server`, a fresh database for this module) reached with
MARKETPLACE_WAREHOUSE=<url without password> and MARKETPLACE_WAREHOUSE_PASSWORD.

Everything goes through the webserver's GraphQL, as the UI does: a month of a weekly report as a
single-run backfill, then part of it again; a range of the transactions export; listings/apps, after which
the daemon's `marketplace_apps_sensor` must read the apps back from PostgreSQL. Finally the password is
searched for in everything GraphQL shows about the runs, in dagster dev's output and in the instance.

The backfill daemon ticks every 30 s (Dagster's constant), so the module launches its backfills and the
listings run at once (fixture `launched`) and each test then waits for its own. The apps sensor ticks every
5 s here (MARKETPLACE_SENSOR_INTERVAL) instead of every minute.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets.reports.parsers import parse_time_series
from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets.sandbox.exports import configure_exports
from marketplace_assets_tests.dagster_dev import LOCATION, DagsterDev, dagster_dev, live_settings
from marketplace_assets_tests.postgres_server import SERVER_USER, PostgresServer

pytestmark = pytest.mark.e2e

DEV, EMAIL, TOKEN = "pg-e2e-developer", "pg-e2e@example.com", "pg-e2e-Token-7c1d"
PASSWORD_ENV = "MARKETPLACE_WAREHOUSE_PASSWORD"
WEEKLY = ["sales", "transactions_by_hosting"]
WEEKLY_PATH = f"/rest/3/reporting/developer-space/{DEV}/sales/transactions/hosting"
FEB_WEEKS = ["2025-02-02", "2025-02-09", "2025-02-16", "2025-02-23"]
RERUN_WEEKS = FEB_WEEKS[2:]
EXPORT_DAYS = [(date(2025, 1, 1) + timedelta(days=i)).isoformat() for i in range(14)]
RANGE_START, RANGE_END = RANGE_START_TAG, RANGE_END_TAG
SUCCEEDED = ("COMPLETED", "COMPLETED_SUCCESS")
SENSOR_INTERVAL = 5  # seconds between the apps sensor's ticks here (its default is 60)
SENSOR_WAIT_SECONDS = 60  # after the listings run: a tick or two, with room for a busy machine


@dataclass(frozen=True)
class Warehouse:
    """The module's own database on the session's server, as the warehouse's role sees it."""

    server: PostgresServer
    database: str

    @property
    def url(self) -> str:
        s = self.server
        return f"postgresql://{s.role}@{s.host}:{s.port}/{self.database}"

    def connect(self, admin: bool = False) -> psycopg.Connection[Any]:
        s = self.server
        user, password = (SERVER_USER, s.admin_password) if admin else (s.role, s.password)
        return psycopg.connect(
            host=s.host, port=s.port, dbname=self.database, user=user, password=password, autocommit=True
        )

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connect() as con:
            return con.execute(statement, params).fetchall()  # type: ignore[arg-type]

    def column_types(self, schema: str, table: str) -> dict[str, str]:
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (schema, table),
        )
        return dict(rows)


@dataclass(frozen=True)
class Launched:
    weekly_backfill: str
    export_backfill: str
    listings_run: str


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    sandbox = Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN)
    configure_exports(sandbox, polls_to_complete=1)
    return sandbox


@pytest.fixture(scope="module")
def sandbox_url(sandbox: Sandbox) -> Iterator[str]:
    with serve(sandbox, port=0) as url:
        yield url


@pytest.fixture(scope="module")
def warehouse(postgres_server: PostgresServer) -> Warehouse:
    """A fresh database, so that other modules sharing the server cannot meet these tables."""
    database = f"e2e_{uuid.uuid4().hex[:12]}"
    with postgres_server.admin_connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        admin.execute(
            sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(postgres_server.role)
            )
        )
    return Warehouse(postgres_server, database)


@pytest.fixture(scope="module")
def dev(
    sandbox_url: str, warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterDev]:
    env = live_settings(
        sandbox_url,
        warehouse.url,
        (DEV, EMAIL, TOKEN),
        **{PASSWORD_ENV: warehouse.server.password},
        MARKETPLACE_AUTOMATION="stopped",  # only the apps sensor runs: it always does
        MARKETPLACE_PII="keep",
        MARKETPLACE_SENSOR_INTERVAL=str(SENSOR_INTERVAL),
    )
    with dagster_dev(tmp_path_factory.mktemp("dagster_home_pg"), env) as running:
        yield running


@pytest.fixture(scope="module")
def launched(dev: DagsterDev, sandbox: Sandbox) -> Launched:
    """Everything the tests wait for, launched at once as a user would from the UI."""
    sandbox.reset_stats()
    return Launched(
        weekly_backfill=dev.launch_backfill([WEEKLY], FEB_WEEKS),
        export_backfill=dev.launch_backfill([["sales", "transactions"]], EXPORT_DAYS),
        listings_run=dev.launch_run(["listings", "apps"]),
    )


def launch_range_run(dev: DagsterDev, asset_path: Sequence[str], start: str, end: str) -> str:
    """One run over a partition range, as a schedule or a single-run backfill asks for it."""
    mutation = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
        ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
        ... on RunConfigValidationInvalid { errors { message } } } }"""
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "jobName": "__ASSET_JOB",
    }
    params = {
        "selector": selector | {"assetSelection": [{"path": list(asset_path)}]},
        "executionMetadata": {
            "tags": [{"key": RANGE_START, "value": start}, {"key": RANGE_END, "value": end}]
        },
    }
    result = dev.graphql(mutation, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def one_successful_run(dev: DagsterDev, backfill_id: str) -> dict[str, Any]:
    status = dev.wait_for_backfill(backfill_id, timeout=240)
    runs = dev.runs({"dagster/backfill": backfill_id})
    errors = [m for r in runs for m in dev.run_errors(r["runId"])]
    assert status in SUCCEEDED, errors or dev.log_tail()
    assert [r["status"] for r in runs] == ["SUCCESS"], errors  # BackfillPolicy.single_run: one run
    return runs[0]


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def money(value: float | int | None) -> Decimal | None:
    """The API's amount as the decimal it was written as (the JSON number's shortest repr)."""
    return None if value is None else Decimal(repr(float(value)))


def weekly_from_api(sandbox_url: str, start: str, end: str) -> tuple[list[str], Counter[tuple[Any, ...]]]:
    with MarketplaceClient(sandbox_url, EMAIL, TOKEN) as client:
        body = client.get_json(
            f"reporting/developer-space/{DEV}/sales/transactions/hosting",
            {"aggregation": "week", "startDate": start, "endDate": end},
        )
    expected = parse_time_series(body, "sales/transactions_by_hosting")
    columns = expected.columns
    revenue = columns.index("revenue")
    rows = [(*row[:revenue], money(row[revenue]), *row[revenue + 1 :]) for row in expected.iter_rows()]
    return columns, Counter(rows)


def weekly_stored(warehouse: Warehouse, columns: Sequence[str]) -> Counter[tuple[Any, ...]]:
    select = sql.SQL("SELECT {} FROM sales.transactions_by_hosting").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with warehouse.connect() as con:
        return Counter(con.execute(select).fetchall())


def test_month_backfill_lands_in_postgres_and_a_rerun_replaces_its_partitions(
    dev: DagsterDev, launched: Launched, sandbox: Sandbox, sandbox_url: str, warehouse: Warehouse
) -> None:
    run = one_successful_run(dev, launched.weekly_backfill)
    assert (tags_of(run)[RANGE_START], tags_of(run)[RANGE_END]) == (FEB_WEEKS[0], FEB_WEEKS[-1])
    assert sandbox.stats()["by_path"].get(WEEKLY_PATH) == 1  # one ranged request for the month

    columns, expected = weekly_from_api(sandbox_url, FEB_WEEKS[0], "2025-03-01")
    types = warehouse.column_types("sales", "transactions_by_hosting")
    assert {c: types.get(c) for c in ("revenue", "date", "count", "net_count", "series")} == {
        "revenue": "numeric",
        "date": "date",
        "count": "bigint",
        "net_count": "bigint",
        "series": "text",
    }
    stored = weekly_stored(warehouse, columns)
    assert sum(expected.values()) == 3 * (1 + len(sandbox.apps)) * len(FEB_WEEKS)
    assert stored == expected
    revenue = warehouse.query("SELECT sum(revenue) FROM sales.transactions_by_hosting WHERE scope = 'total'")
    api_revenue = sum(
        (r[columns.index("revenue")] * n for r, n in expected.items() if r[0] == "total"), Decimal()
    )
    assert revenue[0][0] == api_revenue  # exact to the cent: numeric, not binary floats

    # Spoil the weeks about to be re-run, and remember which row versions each week holds.
    with warehouse.connect(admin=True) as admin:
        spoiled = admin.execute(
            "UPDATE sales.transactions_by_hosting SET revenue = -1 WHERE date >= %s",
            (date.fromisoformat(RERUN_WEEKS[0]),),
        ).rowcount
    assert spoiled == 3 * (1 + len(sandbox.apps)) * len(RERUN_WEEKS)
    versions_query = "SELECT date, xmin::text FROM sales.transactions_by_hosting"
    before = {(d.isoformat(), x) for d, x in warehouse.query(versions_query)}

    requests = sandbox.stats()["by_path"][WEEKLY_PATH]  # the run's and this test's own
    rerun = launch_range_run(dev, WEEKLY, RERUN_WEEKS[0], RERUN_WEEKS[-1])
    assert dev.wait_for_run(rerun, timeout=180)["status"] == "SUCCESS", dev.run_errors(rerun)
    assert sorted(dev.run_materializations(rerun)) == [
        ("sales/transactions_by_hosting", w) for w in RERUN_WEEKS
    ]
    assert sandbox.stats()["by_path"][WEEKLY_PATH] == requests + 1

    after = {(d.isoformat(), x) for d, x in warehouse.query(versions_query)}
    # Replaced, not duplicated: the same rows, the spoiled values back to the API's ...
    assert weekly_stored(warehouse, columns) == expected
    # ... the re-run weeks rewritten, the others untouched.
    assert {r for r in after if r[0] in FEB_WEEKS[:2]} == {r for r in before if r[0] in FEB_WEEKS[:2]}
    assert not {r for r in after if r[0] in RERUN_WEEKS} & before
    assert {d for d, _ in after} == set(FEB_WEEKS)


def test_a_transactions_export_backfill_lands_every_listed_record(
    dev: DagsterDev, launched: Launched, sandbox: Sandbox, sandbox_url: str, warehouse: Warehouse
) -> None:
    run = one_successful_run(dev, launched.export_backfill)
    assert (tags_of(run)[RANGE_START], tags_of(run)[RANGE_END]) == (EXPORT_DAYS[0], EXPORT_DAYS[-1])
    starts = {p: n for p, n in sandbox.stats()["by_path"].items() if p.endswith("/async/export")}
    assert list(starts.values()) == [1], starts  # 14 days, one export

    window = {"startDate": EXPORT_DAYS[0], "endDate": EXPORT_DAYS[-1]}
    target = f"reporting/developer-space/{DEV}/sales/transactions"
    with MarketplaceClient(sandbox_url, EMAIL, TOKEN) as client:
        total = client.count(target, window)
        listed = client.get_offset_paged(target, window, "transactions")
    assert total is not None and total > 0 and len(listed) == total

    [(rows, ids, first, last, vendor)] = warehouse.query(
        "SELECT count(*), count(DISTINCT transaction_line_item_id), min(purchase_details_sale_date), "
        "max(purchase_details_sale_date), sum(purchase_details_vendor_amount) FROM sales.transactions"
    )
    assert rows == ids == total
    assert date.fromisoformat(EXPORT_DAYS[0]) <= first <= last <= date.fromisoformat(EXPORT_DAYS[-1])
    stored_ids = {r[0] for r in warehouse.query("SELECT transaction_line_item_id FROM sales.transactions")}
    assert stored_ids == {t["transactionLineItemId"] for t in listed}
    assert vendor == sum((money(t["purchaseDetails"]["vendorAmount"]) for t in listed), Decimal())
    types = warehouse.column_types("sales", "transactions")
    assert (types["purchase_details_vendor_amount"], types["purchase_details_sale_date"]) == (
        "numeric",
        "date",
    )


APP_PARTITIONS = """{ assetNodes(assetKeys: [{path: ["search", "keywords_by_app"]}]) {
    partitionKeysByDimension { name partitionKeys } } }"""
# Every tick since the daemon started (one each 5 s): the one that added the apps is among them.
SENSOR_TICKS = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { __typename
    ... on Sensor { sensorState { ticks(limit: 500) { status skipReason error { message }
    dynamicPartitionsRequestResults { partitionsDefName partitionKeys } } } } } }"""


def app_partitions(dev: DagsterDev) -> set[str]:
    [node] = dev.graphql(APP_PARTITIONS)["assetNodes"]
    return {k for d in node["partitionKeysByDimension"] if d["name"] == "app" for k in d["partitionKeys"]}


def test_the_apps_sensor_reads_the_listings_from_postgres(
    dev: DagsterDev, launched: Launched, sandbox: Sandbox, warehouse: Warehouse
) -> None:
    run = dev.wait_for_run(launched.listings_run, timeout=180)
    assert run["status"] == "SUCCESS", dev.run_errors(launched.listings_run)
    apps = {a.product_id for a in sandbox.apps}
    assert {r[0] for r in warehouse.query("SELECT product_id FROM listings.apps")} == apps

    deadline = time.monotonic() + SENSOR_WAIT_SECONDS
    while app_partitions(dev) != apps and time.monotonic() < deadline:
        time.sleep(1)
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
    result = dev.graphql(SENSOR_TICKS, {"selector": selector | {"sensorName": "marketplace_apps_sensor"}})
    ticks = result["sensorOrError"]["sensorState"]["ticks"]
    assert app_partitions(dev) == apps, (ticks, dev.log_tail())
    added = [r for t in ticks for r in t["dynamicPartitionsRequestResults"] if r["partitionKeys"]]
    assert [(r["partitionsDefName"], set(r["partitionKeys"])) for r in added] == [("marketplace_apps", apps)]
    assert not [t["error"] for t in ticks if t["error"]]


RUN_DETAILS = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
    runId status runConfigYaml tags { key value } } } }"""
RUN_EVENTS = """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events {
    __typename
    ... on MessageEvent { message level }
    ... on ErrorEvent { error { message stack causes { message stack } } }
    ... on DisplayableEvent { label description metadataEntries { label description
        ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
        ... on JsonMetadataEntry { jsonString } ... on PathMetadataEntry { path }
        ... on UrlMetadataEntry { url } ... on PythonArtifactMetadataEntry { module name } } } } } } }"""
RESOURCES = """query($selector: RepositorySelector!) { repositoryOrError(repositorySelector: $selector) {
    __typename ... on Repository { allTopLevelResourceDetails { name
    configuredValues { key value type } } } } }"""


def test_the_password_is_never_shown(dev: DagsterDev, launched: Launched, warehouse: Warehouse) -> None:
    password = warehouse.server.password
    forms = {password, quote(password, safe=""), quote(password), json.dumps(password)[1:-1]}
    # The runs that wrote to PostgreSQL: both backfills, the listings and (after the first test) the re-run.
    one_successful_run(dev, launched.weekly_backfill)
    one_successful_run(dev, launched.export_backfill)
    dev.wait_for_run(launched.listings_run, timeout=180)
    runs = dev.runs({})
    assert len(runs) >= 3 and {r["status"] for r in runs} == {"SUCCESS"}, [r["status"] for r in runs]
    shown = []
    for run in runs:
        shown.append(json.dumps(dev.graphql(RUN_DETAILS, {"id": run["runId"]})))
        shown.append(json.dumps(dev.graphql(RUN_EVENTS, {"id": run["runId"]})))
    resources = dev.graphql(
        RESOURCES, {"selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}}
    )
    shown.append(json.dumps(resources))
    seen = "\n".join(shown)
    assert '"MaterializationEvent"' in seen and "postgresql://" not in seen.replace(warehouse.url, "")
    details = {
        r["name"]: r["configuredValues"] for r in resources["repositoryOrError"]["allTopLevelResourceDetails"]
    }
    for name in ("warehouse", "warehouse_store"):
        values = {v["key"]: (v["type"], v["value"]) for v in details[name]}
        assert values["password"] == ("ENV_VAR", PASSWORD_ENV), values
        assert values["warehouse"] == ("ENV_VAR", "MARKETPLACE_WAREHOUSE"), values

    files = [p for p in dev.home.rglob("*") if p.is_file()]
    # What the instance keeps: its SQLite event log and the runs' compute logs.
    assert any(p.suffix == ".db" for p in files) and any(p.suffix in (".out", ".err") for p in files)
    stored = b"".join(_read_if_still_there(p) for p in files)
    output = dev.log_path.read_text(errors="replace")
    # The output holds the runs' events and the daemon's sensor ticks: what the password must stay out of.
    assert "RUN_SUCCESS" in output and "Sensor marketplace_apps_sensor" in output
    for form in forms:
        assert form not in seen, f"{form!r} shown through GraphQL"
        assert form not in output, f"{form!r} in dagster dev's output"
        assert form.encode() not in stored, f"{form!r} stored under DAGSTER_HOME"


def _read_if_still_there(path: Path) -> bytes:
    """The file's bytes; none if it went since it was listed: the daemon keeps ticking, and SQLite removes
    a database's -wal or -journal file once it has written it into the database file, read as well."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
