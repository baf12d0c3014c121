"""The assets that are more than a catalog row: the product catalog snapshot (with the sensor that takes
each new snapshot), keywords per app (with the sensor that follows the listings), and the
update_app_listing job. Against the sandbox over loopback."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.catalog_sensor import CATALOG_KEY, build_catalog_snapshot_sensor
from marketplace_assets.definitions import build_assets
from marketplace_assets.jobs import update_app_listing
from marketplace_assets.listing_update import build_update
from marketplace_assets.partitions import APPS, CATALOG_SNAPSHOTS
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
def fetch_snapshot(
    base_url: str, warehouse: Path, instance: dg.DagsterInstance, day: str, **marketplace: object
) -> dg.ExecuteInProcessResult:
    """A run for snapshot partition `day`, added first as `catalog_snapshot_sensor` (or the UI) would."""
    if not instance.has_dynamic_partition(CATALOG_SNAPSHOTS.name, day):
        instance.add_dynamic_partitions(CATALOG_SNAPSHOTS.name, [day])
    return materialize(
        "catalog/product_catalog", resources(base_url, warehouse, **marketplace), instance, partition_key=day
    )


def store_snapshot(base_url: str, tmp_path: Path) -> tuple[Path, dg.DagsterInstance, pl.DataFrame]:
    """A warehouse holding the served snapshot, its instance, and its rows: what a failed run must leave
    untouched."""
    warehouse, instance = tmp_path / "w.duckdb", dg.DagsterInstance.ephemeral()
    assert fetch_snapshot(base_url, warehouse, instance, SNAPSHOT.isoformat()).success
    return warehouse, instance, rows(warehouse, "catalog.product_catalog").sort(pl.all())


def snapshot_partitions(instance: dg.DagsterInstance) -> list[str]:
    return sorted(instance.get_dynamic_partitions(CATALOG_SNAPSHOTS.name))


def refused(
    result: dg.ExecuteInProcessResult, warehouse: Path, instance: dg.DagsterInstance, before: pl.DataFrame
) -> str:
    """The message of a run that failed and left the stored snapshot, its rows and its partition (the
    only one) as they were."""
    assert not result.success
    assert rows(warehouse, "catalog.product_catalog").sort(pl.all()).equals(before)
    assert snapshot_partitions(instance) == [SNAPSHOT.isoformat()]
    return failure_message(result)


def stored_partitions(instance: dg.DagsterInstance) -> set[str]:
    records = instance.fetch_materializations(CATALOG_KEY, limit=100).records
    return {r.partition_key for r in records if r.partition_key}


def test_catalog_is_partitioned_by_the_snapshots_taken_not_by_calendar_days() -> None:
    catalog = ASSETS["catalog/product_catalog"]
    assert catalog.partitions_def == CATALOG_SNAPSHOTS
    assert isinstance(catalog.partitions_def, dg.DynamicPartitionsDefinition)
    assert catalog.metadata_by_key[CATALOG_KEY]["partition_expr"] == "snapshot_date"
    # A fresh instance: not one partition until a snapshot is taken, so nothing shows as missing.
    assert (
        catalog.partitions_def.get_partition_keys(dynamic_partitions_store=dg.DagsterInstance.ephemeral())
        == []
    )


def test_catalog_snapshot_is_stored_for_its_day(sandbox: Sandbox, base_url: str, tmp_path: Path) -> None:
    warehouse, instance = tmp_path / "w.duckdb", dg.DagsterInstance.ephemeral()
    assert fetch_snapshot(base_url, warehouse, instance, SNAPSHOT.isoformat()).success
    frame = rows(warehouse, "catalog.product_catalog")
    assert frame.height > 100 and frame["snapshot_date"].unique().to_list() == [SNAPSHOT]
    assert {"marketplace_app_key", "version_number", "vendor_name"} <= set(frame.columns)
    assert set(a.addon_key for a in sandbox.apps) <= set(frame["marketplace_app_key"])
    assert snapshot_partitions(instance) == [SNAPSHOT.isoformat()]
    assert stored_partitions(instance) == {SNAPSHOT.isoformat()}


def test_catalog_refuses_a_day_the_api_no_longer_serves(base_url: str, tmp_path: Path) -> None:
    warehouse, instance, before = store_snapshot(base_url, tmp_path)
    # The partition that could never be filled goes; the stored snapshot keeps its own.
    message = refused(
        fetch_snapshot(base_url, warehouse, instance, "2025-02-09"), warehouse, instance, before
    )
    assert "partition 2025-02-09 cannot be fetched" in message and "dated 2025-02-10" in message
    assert "Partition 2025-02-09 held no snapshot, so it was removed" in message
    assert "catalog_snapshot_sensor" in message  # how to take the snapshot the API serves


def test_catalog_refuses_a_stored_day_no_longer_served_and_keeps_it(
    sandbox: Sandbox, base_url: str, tmp_path: Path
) -> None:
    warehouse, instance, before = store_snapshot(base_url, tmp_path)
    set_catalog_date(sandbox.world, SNAPSHOT + timedelta(days=1))
    # Stored: the partition stays, with its history.
    result = fetch_snapshot(base_url, warehouse, instance, SNAPSHOT.isoformat())
    message = refused(result, warehouse, instance, before)
    assert f"partition {SNAPSHOT} cannot be fetched" in message and "dated 2025-02-11" in message
    assert "removed" not in message


@pytest.mark.parametrize("key", ["latest", "20250210"])
def test_catalog_refuses_a_partition_that_is_not_a_date(key: str, base_url: str, tmp_path: Path) -> None:
    warehouse, instance, before = store_snapshot(base_url, tmp_path)
    message = refused(fetch_snapshot(base_url, warehouse, instance, key), warehouse, instance, before)
    assert f"partition '{key}' is not a snapshot date (YYYY-MM-DD)" in message and "removed" in message


def test_catalog_expired_link_fails_clearly_and_stores_nothing(
    sandbox: Sandbox, base_url: str, tmp_path: Path
) -> None:
    warehouse, instance, before = store_snapshot(base_url, tmp_path)
    # Links last 1 s and the object store answers after 2 s: every link has expired by then (403).
    configure_catalog(sandbox.world, expires_in=1)
    sandbox.faults.add(FaultRule(path="_objects", kind="slow", delay=2.0))
    result = fetch_snapshot(base_url, warehouse, instance, SNAPSHOT.isoformat())
    assert "presigned catalog link expired" in refused(result, warehouse, instance, before)
    assert (
        sandbox.stats()["by_path"]["/rest/3/reporting/product-catalog/latest"] == 3
    )  # 1 + a fresh link, twice


def test_catalog_interrupted_download_fails_and_stores_nothing(
    sandbox: Sandbox, base_url: str, tmp_path: Path
) -> None:
    warehouse, instance, before = store_snapshot(base_url, tmp_path)
    sandbox.faults.add(FaultRule(path="_objects", kind="drop"))
    result = fetch_snapshot(
        base_url, warehouse, instance, SNAPSHOT.isoformat(), max_attempts=2, transient_retries=0
    )
    assert "still failed after 2 attempts" in refused(result, warehouse, instance, before)


# -- catalog_snapshot_sensor --------------------------------------------------------------------------
def catalog_sensor_tick(
    instance: dg.DagsterInstance, base_url: str, cursor: str | None = None
) -> dg.SensorResult:
    """One tick, with its partition requests applied to the instance as the sensor daemon does."""
    resource = MarketplaceResource(developer_id=DEV, email=EMAIL, api_token=TOKEN, base_url=base_url)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"marketplace": resource}
    ) as context:
        result = build_catalog_snapshot_sensor()(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        assert request.partitions_def_name == CATALOG_SNAPSHOTS.name
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def run_requested(
    result: dg.SensorResult, base_url: str, warehouse: Path, instance: dg.DagsterInstance
) -> list[str]:
    """Run what the tick asked for, as the daemon would; the partition keys run."""
    keys = []
    for request in result.run_requests or []:
        assert request.partition_key and request.run_key == f"catalog_snapshot:{request.partition_key}"
        run = materialize(
            "catalog/product_catalog",
            resources(base_url, warehouse),
            instance,
            partition_key=request.partition_key,
        )
        assert run.success, failure_message(run)
        keys.append(request.partition_key)
    return keys


def test_two_days_snapshots_are_exactly_two_partitions_both_stored(
    sandbox: Sandbox, base_url: str, tmp_path: Path
) -> None:
    warehouse, instance = tmp_path / "w.duckdb", dg.DagsterInstance.ephemeral()
    first, second = SNAPSHOT.isoformat(), (SNAPSHOT + timedelta(days=1)).isoformat()

    tick = catalog_sensor_tick(instance, base_url)
    assert snapshot_partitions(instance) == [first]  # added with the run that fetches it
    assert run_requested(tick, base_url, warehouse, instance) == [first]
    again = catalog_sensor_tick(instance, base_url, tick.cursor)
    assert not again.run_requests and again.skip_reason and "is stored" in again.skip_reason.skip_message

    set_catalog_date(sandbox.world, SNAPSHOT + timedelta(days=1))  # the next day's snapshot is served
    tick = catalog_sensor_tick(instance, base_url, again.cursor)
    assert run_requested(tick, base_url, warehouse, instance) == [second]
    assert not catalog_sensor_tick(instance, base_url, tick.cursor).run_requests

    # Exactly the two snapshots taken, both stored, and no other partition.
    assert snapshot_partitions(instance) == [first, second]
    assert stored_partitions(instance) == {first, second}
    catalog = ASSETS["catalog/product_catalog"].partitions_def
    assert catalog.get_partition_keys(dynamic_partitions_store=instance) == [first, second]
    statuses = instance.get_status_by_partition(CATALOG_KEY, [first, second], catalog)
    assert statuses == {k: dg.AssetPartitionStatus.MATERIALIZED for k in (first, second)}
    stored = rows(warehouse, "catalog.product_catalog")
    days = stored.group_by("snapshot_date").len().sort("snapshot_date")
    assert days["snapshot_date"].to_list() == [SNAPSHOT, SNAPSHOT + timedelta(days=1)]
    assert min(days["len"]) > 100  # the second write replaced only its own partition


def test_catalog_sensor_requests_one_run_per_snapshot_and_no_retry_of_a_failure(
    sandbox: Sandbox, base_url: str, tmp_path: Path
) -> None:
    warehouse, instance = tmp_path / "w.duckdb", dg.DagsterInstance.ephemeral()
    tick = catalog_sensor_tick(instance, base_url)
    sandbox.faults.add(FaultRule(path="_objects", kind="drop"))
    [request] = tick.run_requests or []
    failed = fetch_snapshot(
        base_url, warehouse, instance, request.partition_key, max_attempts=1, transient_retries=0
    )
    assert not failed.success
    # Still served, so still a partition; not requested again: the user materializes it to retry.
    after = catalog_sensor_tick(instance, base_url, tick.cursor)
    assert not after.run_requests and "failed" in after.skip_reason.skip_message
    assert snapshot_partitions(instance) == [SNAPSHOT.isoformat()]
    # Once the API serves a later snapshot, the failed partition can never be filled: it goes.
    set_catalog_date(sandbox.world, SNAPSHOT + timedelta(days=1))
    later = catalog_sensor_tick(instance, base_url, after.cursor)
    assert [r.partition_key for r in later.run_requests or []] == ["2025-02-11"]
    assert snapshot_partitions(instance) == ["2025-02-11"]


def test_catalog_sensor_adds_back_the_days_stored_under_daily_partitions(
    base_url: str, tmp_path: Path
) -> None:
    """Earlier releases stored daily partitions: their materializations are under the same date keys, so
    the sensor makes those days partitions again, with their history; days never stored do not come."""
    instance = dg.DagsterInstance.ephemeral()
    for day in ("2025-01-05", "2025-01-06"):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=CATALOG_KEY, partition=day))
    tick = catalog_sensor_tick(instance, base_url)
    assert snapshot_partitions(instance) == ["2025-01-05", "2025-01-06", SNAPSHOT.isoformat()]
    assert [r.partition_key for r in tick.run_requests or []] == [SNAPSHOT.isoformat()]
    # The next tick reads only what was materialized since: nothing to add, nothing removed.
    again = catalog_sensor_tick(instance, base_url, tick.cursor)
    assert snapshot_partitions(instance) == ["2025-01-05", "2025-01-06", SNAPSHOT.isoformat()]
    assert again.cursor == tick.cursor


def test_catalog_sensor_skips_when_the_api_fails(sandbox: Sandbox, base_url: str) -> None:
    instance = dg.DagsterInstance.ephemeral()
    sandbox.faults.add(FaultRule(path="product-catalog/latest", status=400, body="no snapshot today"))
    tick = catalog_sensor_tick(instance, base_url)
    assert not tick.run_requests and snapshot_partitions(instance) == []
    assert "could not learn which snapshot the API serves" in tick.skip_reason.skip_message
    assert TOKEN not in tick.skip_reason.skip_message


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
