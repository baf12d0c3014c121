"""Every catalog asset materializes against the sandbox served over loopback, for a range in one run and
for one partition of it, into a real DuckDB file; re-materializing leaves the same rows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets.definitions import build_assets
from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets.settings import MarketplaceSettings
from marketplace_assets_tests.resources import asset_resources

DEV, EMAIL, TOKEN = "catalog-dev", "catalog@example.com", "catalog-Token-1234567890"
# (range start, range end, one partition inside it) per partitions definition's cron.
RANGES = {
    "0 0 * * *": ("2025-02-01", "2025-02-14", "2025-02-04"),  # daily (churn events are rare)
    "0 0 * * 0": ("2025-02-02", "2025-02-09", "2025-02-09"),  # weekly, Sunday
    "0 0 * * 1": ("2025-02-03", "2025-02-10", "2025-02-03"),  # weekly, Monday (partner metrics)
    "0 0 1 * *": ("2025-01-01", "2025-02-01", "2025-02-01"),  # monthly
}
# Assets with their own tests below: the snapshot (one day at a time) and the per-app grid.
SPECIAL = {"catalog/product_catalog", "search/keywords_by_app"}
SETTINGS = MarketplaceSettings(
    developer_id=DEV, email=EMAIL, api_token=TOKEN, sandbox=False, start_date="2024-01-01", warehouse="unused"
)
ASSETS = {a.key.to_user_string(): a for a in build_assets(SETTINGS)}


def asset_groups() -> dict[str, list[dg.AssetsDefinition]]:
    groups: dict[str, list[dg.AssetsDefinition]] = defaultdict(list)
    for name, asset in ASSETS.items():
        if name in SPECIAL or asset.partitions_def is None:
            continue
        groups[asset.partitions_def.cron_schedule].append(asset)
    return groups


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN)


@pytest.fixture(scope="module")
def base_url(sandbox: Sandbox):
    with serve(sandbox, port=0) as url:
        yield url


def resources(base_url: str, warehouse: Path) -> dict:
    marketplace = MarketplaceResource(developer_id=DEV, email=EMAIL, api_token=TOKEN, base_url=base_url)
    return asset_resources(marketplace, warehouse)


def tables(warehouse: Path, assets: list[dg.AssetsDefinition]) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            a.key.to_user_string(): con.sql(f"SELECT * FROM {'.'.join(a.key.path)}").pl().sort(pl.all())
            for a in assets
        }


@pytest.mark.parametrize("cron", sorted(RANGES))
def test_each_asset_materializes_a_range_and_a_partition(cron: str, base_url: str, tmp_path: Path) -> None:
    assets = asset_groups()[cron]
    assert assets, f"no assets for {cron}"
    start, end, single = RANGES[cron]
    warehouse = tmp_path / "warehouse.duckdb"
    ranged = dg.materialize(
        assets,
        resources=resources(base_url, warehouse),
        tags={RANGE_START_TAG: start, RANGE_END_TAG: end},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert ranged.success
    first = tables(warehouse, assets)
    for name, frame in first.items():
        assert frame.height > 0, f"{name} stored no rows for {start}..{end}"
        partition_column = ASSETS[name].metadata_by_key[ASSETS[name].key]["partition_expr"]
        values = frame[partition_column].drop_nulls()
        assert values.null_count() == 0 and values.len() == frame.height, f"{name}: null {partition_column}"
        assert str(values.min()) >= start, name
    again = dg.materialize(
        assets,
        resources=resources(base_url, warehouse),
        partition_key=single,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert again.success
    # Every asset was checked, and the sandbox keeps the documented invariants, so every check passes but
    # one: it answers 2% of license rows twice, like the service's known bug, which the license-version
    # check reports as a warning (the merge keeps one row).
    for result in (ranged, again):
        evaluations = result.get_asset_check_evaluations()
        assert {e.asset_key for e in evaluations} == {a.key for a in assets}
        failed = {
            (e.asset_key.to_user_string(), e.check_name, e.severity) for e in evaluations if not e.passed
        }
        assert failed <= {("licenses/licenses", "unique_keys", dg.AssetCheckSeverity.WARN)}
    if ASSETS["licenses/licenses"] in assets:
        assert any(
            not e.passed for e in ranged.get_asset_check_evaluations() if e.check_name == "unique_keys"
        )
    second = tables(warehouse, assets)
    for name, frame in first.items():
        assert second[name].equals(frame), f"{name}: re-materializing {single} changed the rows"


def test_listings_materialize(base_url: str, sandbox: Sandbox, tmp_path: Path) -> None:
    listings = ASSETS["listings/apps"]
    warehouse = tmp_path / "warehouse.duckdb"
    assert dg.materialize([listings], resources=resources(base_url, warehouse)).success
    frame = tables(warehouse, [listings])["listings/apps"]
    assert sorted(frame["product_id"]) == sorted(a.product_id for a in sandbox.apps)
