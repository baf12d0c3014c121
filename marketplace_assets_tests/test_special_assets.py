"""The assets that are more than a catalog row: the product catalog snapshot, keywords per app (with the
sensor that follows the listings), and the update_app_listing job. Against the sandbox over loopback."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.definitions import build_assets
from marketplace_assets.jobs import update_app_listing
from marketplace_assets.listing_update import build_update
from marketplace_assets.partitions import APPS
from marketplace_assets.sandbox import FaultRule, Sandbox, serve
from marketplace_assets.sandbox.object_store import configure_catalog, set_catalog_date
from marketplace_assets.sensors import marketplace_apps_sensor
from marketplace_assets.settings import MarketplaceSettings
from marketplace_assets.warehouse import WarehouseResource
from marketplace_assets_tests.resources import asset_resources

DEV, EMAIL, TOKEN = "special-dev", "special@example.com", "special-Token-1234567890"
SNAPSHOT = date(2025, 2, 10)
ASSETS = {
    a.key.to_user_string(): a
    for a in build_assets(
        MarketplaceSettings(developer_id=DEV, email=EMAIL, api_token=TOKEN, start_date="2025-01-01")
    )
}


@pytest.fixture
def sandbox() -> Sandbox:
    sandbox = Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN)
    set_catalog_date(sandbox.world, SNAPSHOT)
    return sandbox


@pytest.fixture
def base_url(sandbox: Sandbox):
    with serve(sandbox, port=0) as url:
        yield url


def resources(base_url: str, warehouse: Path, **marketplace: object) -> dict:
    resource = MarketplaceResource(
        developer_id=DEV, email=EMAIL, api_token=TOKEN, base_url=base_url, **marketplace
    )
    return asset_resources(resource, warehouse)


def materialize(
    name: str, res: dict, instance: dg.DagsterInstance | None = None, **kw
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ASSETS[name]],
        resources=res,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        **kw,
    )


def rows(warehouse: Path, table: str) -> pl.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(f"SELECT * FROM {table}").pl()


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    [event] = [e for e in result.all_events if e.is_step_failure]
    return str(event.step_failure_data.error)


# -- product catalog ----------------------------------------------------------------------------------
def store_snapshot(base_url: str, tmp_path: Path) -> tuple[Path, pl.DataFrame]:
    """A warehouse holding the served snapshot, and its rows: what a failed run must leave untouched."""
    warehouse = tmp_path / "w.duckdb"
    result = materialize(
        "catalog/product_catalog", resources(base_url, warehouse), partition_key=SNAPSHOT.isoformat()
    )
    assert result.success
    return warehouse, rows(warehouse, "catalog.product_catalog").sort(pl.all())


def test_catalog_snapshot_is_stored_for_its_day(sandbox: Sandbox, base_url: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    result = materialize(
        "catalog/product_catalog", resources(base_url, warehouse), partition_key=SNAPSHOT.isoformat()
    )
    assert result.success
    frame = rows(warehouse, "catalog.product_catalog")
    assert frame.height > 100 and frame["snapshot_date"].unique().to_list() == [SNAPSHOT]
    assert {"marketplace_app_key", "version_number", "vendor_name"} <= set(frame.columns)
    assert set(a.addon_key for a in sandbox.apps) <= set(frame["marketplace_app_key"])


def test_catalog_refuses_a_day_the_api_no_longer_serves(base_url: str, tmp_path: Path) -> None:
    warehouse, before = store_snapshot(base_url, tmp_path)
    result = materialize(
        "catalog/product_catalog", resources(base_url, warehouse), partition_key="2025-02-09"
    )
    assert not result.success
    message = failure_message(result)
    assert "partition 2025-02-09 cannot be fetched" in message and "dated 2025-02-10" in message
    assert rows(warehouse, "catalog.product_catalog").sort(pl.all()).equals(before)


def test_catalog_expired_link_fails_clearly_and_stores_nothing(
    sandbox: Sandbox, base_url: str, tmp_path: Path
) -> None:
    warehouse, before = store_snapshot(base_url, tmp_path)
    # Links last 1 s and the object store answers after 2 s: every link has expired by then (403).
    configure_catalog(sandbox.world, expires_in=1)
    sandbox.faults.add(FaultRule(path="_objects", kind="slow", delay=2.0))
    result = materialize(
        "catalog/product_catalog", resources(base_url, warehouse), partition_key=SNAPSHOT.isoformat()
    )
    assert not result.success
    assert "presigned catalog link expired" in failure_message(result)
    assert (
        sandbox.stats()["by_path"]["/rest/3/reporting/product-catalog/latest"] == 3
    )  # 1 + a fresh link, twice
    assert rows(warehouse, "catalog.product_catalog").sort(pl.all()).equals(before)


def test_catalog_interrupted_download_fails_and_stores_nothing(
    sandbox: Sandbox, base_url: str, tmp_path: Path
) -> None:
    warehouse, before = store_snapshot(base_url, tmp_path)
    sandbox.faults.add(FaultRule(path="_objects", kind="drop"))
    result = materialize(
        "catalog/product_catalog",
        resources(base_url, warehouse, max_attempts=2, transient_retries=0),
        partition_key=SNAPSHOT.isoformat(),
    )
    assert not result.success
    assert "still failed after 2 attempts" in failure_message(result)
    assert rows(warehouse, "catalog.product_catalog").sort(pl.all()).equals(before)


def test_catalog_download_carries_no_marketplace_credentials(
    sandbox: Sandbox, base_url: str, tmp_path: Path
) -> None:
    # The object store refuses a presigned link that also carries an Authorization header (400):
    # sending the Marketplace credentials would fail, so success proves they were not sent.
    with MarketplaceClient(base_url, EMAIL, TOKEN) as client:
        link = client.get_json("reporting/product-catalog/latest")["presignedUrl"]
        from marketplace_assets.api.errors import MarketplaceApiError

        with pytest.raises(MarketplaceApiError, match="HTTP 400"):
            client.download(link, authenticated=True)
        path = client.download(link, authenticated=False)
    assert path.stat().st_size > 1000
    path.unlink()


# -- keywords by app and the apps sensor --------------------------------------------------------------
def run_apps_sensor(instance: dg.DagsterInstance, warehouse: Path) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance, resources={"warehouse_store": WarehouseResource(warehouse=str(warehouse))}
    )
    result = marketplace_apps_sensor(context)
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
    return result


def test_app_partitions_follow_the_listings_and_keep_history(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    three = Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN, volume=1.0)
    two = Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN, volume=0.67)
    removed = {a.product_id for a in three.apps} - {a.product_id for a in two.apps}
    assert len(three.apps) == 3 and len(removed) == 1, "the smaller sandbox lists a subset of the apps"

    assert isinstance(run_apps_sensor(instance, warehouse), dg.SkipReason)  # no listings yet
    with serve(three, port=0) as url:
        assert materialize("listings/apps", resources(url, warehouse), instance).success
        added = run_apps_sensor(instance, warehouse)
        assert isinstance(added, dg.SensorResult)
        assert sorted(instance.get_dynamic_partitions(APPS.name)) == sorted(a.product_id for a in three.apps)
        for app in three.apps:
            for month in ("2025-01-01", "2025-02-01"):
                key = dg.MultiPartitionKey({"month": month, "app": app.product_id})
                assert materialize(
                    "search/keywords_by_app", resources(url, warehouse), instance, partition_key=key
                ).success
    stored = rows(warehouse, "search.keywords_by_app")
    assert set(stored["product_id"]) == {a.product_id for a in three.apps}
    assert set(stored["month"].unique().to_list()) == {date(2025, 1, 1), date(2025, 2, 1)}

    with serve(two, port=0) as url:
        assert materialize("listings/apps", resources(url, warehouse), instance).success
        assert isinstance(run_apps_sensor(instance, warehouse), dg.SkipReason)
    # The app that left the listing keeps its partitions and its rows.
    assert removed <= set(instance.get_dynamic_partitions(APPS.name))
    after = rows(warehouse, "search.keywords_by_app")
    assert after.filter(pl.col("product_id").is_in(list(removed))).height > 0
    assert after.sort(pl.all()).equals(stored.sort(pl.all()))


# -- update_app_listing ---------------------------------------------------------------------------------
def run_update(base_url: str, product_id: str, changes: dict) -> dg.ExecuteInProcessResult:
    return update_app_listing.execute_in_process(
        run_config={
            "ops": {"apply_listing_change": {"config": {"product_id": product_id, "changes": changes}}}
        },
        resources={
            "marketplace": MarketplaceResource(
                developer_id=DEV, email=EMAIL, api_token=TOKEN, base_url=base_url
            )
        },
        raise_on_error=False,
    )


def listing(base_url: str, product_id: str) -> dict:
    with MarketplaceClient(base_url, EMAIL, TOKEN) as client:
        return client.get_json(f"product-listing/{product_id}")


def test_update_app_listing_applies_the_change(sandbox: Sandbox, base_url: str) -> None:
    app = sandbox.apps[0]
    before = listing(base_url, app.product_id)
    result = run_update(
        base_url,
        app.product_id,
        {"tagLine": "Now with dashboards", "developerLinks": {"forums": "https://f.example"}},
    )
    assert result.success, failure_message(result)
    after = listing(base_url, app.product_id)
    assert (
        after["tagLine"] == "Now with dashboards" and after["developerLinks"]["forums"] == "https://f.example"
    )
    assert after["revision"] == before["revision"] + 1
    assert after["appName"] == before["appName"] and after["tags"] == before["tags"]


def test_update_app_listing_fails_on_a_revision_conflict(
    sandbox: Sandbox, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = sandbox.apps[1]
    original_get = MarketplaceClient.get_json

    def get_then_someone_else_edits(self: MarketplaceClient, target: str, params=None):
        body = original_get(self, target, params)
        if target == f"product-listing/{app.product_id}":
            # Another editor saves between our read and our write.
            with MarketplaceClient(base_url, EMAIL, TOKEN) as other:
                other.request_json("PUT", target, json_body=build_update(body, {"summary": "Their edit"}))
        return body

    monkeypatch.setattr(MarketplaceClient, "get_json", get_then_someone_else_edits)
    result = run_update(base_url, app.product_id, {"summary": "Our edit"})
    monkeypatch.undo()
    assert not result.success
    message = failure_message(result)
    assert "changed since it was read" in message and "re-run" in message
    assert listing(base_url, app.product_id)["summary"] == "Their edit"  # nothing of ours overwrote it


def test_update_app_listing_refuses_a_field_developers_cannot_change(sandbox: Sandbox, base_url: str) -> None:
    app = sandbox.apps[2]
    before = listing(base_url, app.product_id)
    sandbox.reset_stats()
    result = run_update(base_url, app.product_id, {"state": "PRIVATE"})
    assert not result.success
    assert "'state' cannot be changed" in failure_message(result) and "Nothing was sent" in failure_message(
        result
    )
    assert sandbox.stats()["requests"] == 1  # the read only
    assert listing(base_url, app.product_id) == before
