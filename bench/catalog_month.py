"""Every asset of the catalog, backfilled over one month through a real `dagster dev` in sandbox mode.

As a new user would: `dagster dev` with no credentials (sandbox mode), a UI-style backfill per asset over
February 2025 (the partitions of that month in each asset's own cadence), listings first so that the
marketplace_apps sensor adds the app partitions, and the product catalog snapshot the API serves, taken by
switching `catalog_snapshot_sensor` on (it adds the snapshot's date as a partition and launches its run).
Prints, per asset, its partitioning, the runs its backfill took and the rows it stored.

    uv run python bench/catalog_month.py
"""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from marketplace_assets_tests.dagster_dev import DagsterDev, dagster_dev

MONTH_START, MONTH_END = date(2025, 2, 1), date(2025, 2, 28)
CATALOG_SENSOR = "catalog_snapshot_sensor"


def partition_keys(dev: DagsterDev, path: list[str]) -> list[str]:
    data = dev.graphql(
        """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
            partitionKeys partitionDefinition { description } } } }""",
        {"key": {"path": path}},
    )
    return data["assetNodeOrError"]["partitionKeys"] or []


def in_month(key: str) -> bool:
    day = key.split("|")[-1] if "|" in key else key
    try:
        return MONTH_START <= date.fromisoformat(day[:10]) <= MONTH_END
    except ValueError:
        return False


def describe_partitions(dev: DagsterDev, path: list[str]) -> str:
    data = dev.graphql(
        """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
            partitionDefinition { description } } } }""",
        {"key": {"path": path}},
    )
    definition = data["assetNodeOrError"]["partitionDefinition"]
    return definition["description"] if definition else "none"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "sandbox.duckdb"
        env = {
            "MARKETPLACE_SANDBOX": "1",
            "MARKETPLACE_WAREHOUSE": str(warehouse),
            "MARKETPLACE_START_DATE": "2025-01-01",
        }
        results = []
        with dagster_dev(Path(tmp) / "home", env) as dev:
            started = time.monotonic()
            run_id = dev.launch_run(["listings", "apps"])
            assert dev.wait_for_run(run_id)["status"] == "SUCCESS", dev.run_errors(run_id)
            results.append(("listings/apps", "none (current state)", "1 run", 1))
            # The catalog's partitions are the snapshots taken: its sensor adds the one the API serves
            # with the run that fetches it. It ticks hourly, so it takes just this one during the bench.
            assert dev.start_sensor(CATALOG_SENSOR) == "RUNNING"
            deadline = time.monotonic() + 150
            while not (runs := dev.runs({"dagster/sensor_name": CATALOG_SENSOR})):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{CATALOG_SENSOR} did not launch the snapshot's run in time")
                time.sleep(5)
            [run] = runs
            status = dev.wait_for_run(run["runId"])["status"]
            snapshot = {t["key"]: t["value"] for t in run["tags"]}.get("dagster/partition")
            results.append(("catalog/product_catalog", f"snapshot taken ({snapshot})", status.lower(), 1))
            # The apps sensor ticks every minute; wait for it to add the app partitions.
            deadline = time.monotonic() + 150
            while not any(in_month(k) for k in partition_keys(dev, ["search", "keywords_by_app"])):
                if time.monotonic() > deadline:
                    raise SystemExit("marketplace_apps_sensor did not add the app partitions in time")
                time.sleep(5)
            # Launch every backfill first, then wait: the daemon works through them together.
            launched = {}
            for path in sorted(dev.asset_keys()):
                if path in ("listings/apps", "catalog/product_catalog", "licenses/current"):
                    continue
                parts = path.split("/")
                keys = [k for k in partition_keys(dev, parts) if in_month(k)]
                try:
                    launched[path] = (
                        dev.launch_backfill([parts], keys),
                        len(keys),
                        describe_partitions(dev, parts),
                    )
                except AssertionError as exc:
                    print(f"{path}: backfill not launched: {str(exc)[:1500]}", flush=True)
                    results.append((path, describe_partitions(dev, parts), "not launched", len(keys)))
            for path, (backfill_id, n, partitions) in launched.items():
                status = dev.wait_for_backfill(backfill_id, timeout=1800)
                runs = len(dev.runs({"dagster/backfill": backfill_id}))
                results.append((path, partitions, f"{status.lower()}, {runs} run(s)", n))
            # Unpartitioned, and refreshed from a full export after licenses/licenses.
            run_id = dev.launch_run(["licenses", "current"])
            status = dev.wait_for_run(run_id)["status"]
            results.append(("licenses/current", "none (current state)", status.lower(), 1))
            elapsed = time.monotonic() - started
        with duckdb.connect(str(warehouse), read_only=True) as con:
            counts = {
                f"{schema}/{name}": con.sql(f'SELECT count(*) FROM "{schema}"."{name}"').fetchall()[0][0]
                for schema, name in con.sql(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_catalog = current_database()"
                ).fetchall()
            }
    print(
        f"Sandbox mode, February 2025 ({MONTH_START}..{MONTH_END}), {len(results)} assets, "
        f"{elapsed:.0f} s in all"
    )
    print("| asset | partitions | backfill | partitions in the month | rows |")
    print("|---|---|---|---|---|")
    for path, partitions, outcome, n in results:
        print(f"| `{path}` | {partitions} | {outcome} | {n} | {counts.get(path, 0)} |")


if __name__ == "__main__":
    main()
