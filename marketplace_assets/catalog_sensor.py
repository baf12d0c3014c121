"""The product catalog's snapshots: which one the API serves, and `catalog_snapshot_sensor`, which takes
each new one.

The API serves only its latest snapshot (`GET /rest/3/reporting/product-catalog/latest` answers `{date,
presignedUrl, expiresInSeconds}`), so catalog/product_catalog is partitioned by the snapshots actually
taken (`CATALOG_SNAPSHOTS`, dynamic, keyed by the snapshot's date), not by calendar days: the partitions
are the snapshots stored, plus the one being fetched. Each tick (hourly, one small request; the CSV is
downloaded by the run, not here):
1. asks the API which snapshot it serves;
2. if that snapshot is not stored, not being fetched and not tried already, adds its date as a partition
   and requests one run for it (run key `catalog_snapshot:<date>`), both in one SensorResult. A failed
   run is not requested again: materialize that partition to retry;
3. keeps the partitions exactly the snapshots stored: a date with materializations but no partition is
   added (the daily partitions of releases before the snapshots were dynamic: their materializations are
   in the event log under the same date keys, so their history shows again), and a partition never
   stored that can no longer be fetched (the API serves a later snapshot) is removed.
Its status follows MARKETPLACE_AUTOMATION like the export sensors, since it calls the API and launches
runs. To take today's snapshot now, with the sensor on or off: open it under Automation, *Test sensor*,
then *Launch all*: that adds the partition and launches its run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date
from typing import Any

import dagster as dg

from marketplace_assets.api.errors import MarketplaceError
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.partitions import CATALOG_SNAPSHOTS
from marketplace_assets.settings import sensor_interval_seconds

CATALOG_KEY = dg.AssetKey(["catalog", "product_catalog"])
LATEST = "reporting/product-catalog/latest"
SENSOR_NAME = "catalog_snapshot_sensor"
RUN_KEY_PREFIX = "catalog_snapshot"
INTERVAL_SECONDS = 3600
# Materializations read per tick to find stored snapshots that are not partitions (history: once).
HISTORY_PAGE = 1000
SNAPSHOTS = CATALOG_SNAPSHOTS.name or "catalog_snapshots"


def served_date(latest: Mapping[str, Any]) -> date:
    """The date of the snapshot a `latest` answer points at."""
    return date.fromisoformat(str(latest.get("date"))[:10])


def ever_stored(instance: dg.DagsterInstance, key: str) -> bool:
    """Whether a snapshot was ever stored under partition `key` (its rows stay in the table)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=CATALOG_KEY, asset_partitions=[key]), limit=1
    ).records
    return bool(records)


def forget_if_never_stored(instance: dg.DagsterInstance, key: str) -> bool:
    """Remove partition `key` if no snapshot was ever stored under it; whether it was removed."""
    if not instance.has_dynamic_partition(SNAPSHOTS, key) or ever_stored(instance, key):
        return False
    instance.delete_dynamic_partition(SNAPSHOTS, key)
    return True


def evaluate_catalog_sensor(
    context: dg.SensorEvaluationContext, marketplace: MarketplaceResource
) -> dg.SensorResult:
    instance = context.instance
    known = set(instance.get_dynamic_partitions(SNAPSHOTS))
    stored, cursor = _stored_since(instance, context.cursor)
    add = sorted(stored - known)
    if add:
        context.log.info(f"stored snapshots without a partition, added back: {', '.join(add)}")
    try:
        with marketplace.make_client(logger=context.log) as client:
            served = served_date(client.get_json(LATEST)).isoformat()
    except (MarketplaceError, ValueError) as exc:
        reason = marketplace.redact(f"could not learn which snapshot the API serves: {exc}")
        return dg.SensorResult(
            skip_reason=f"{reason}. Trying again next tick.",
            dynamic_partitions_requests=_requests(add, []),
            cursor=cursor,
        )
    status = _statuses(instance, known)
    runs, skip = [], None
    match status.get(served):
        case dg.AssetPartitionStatus.MATERIALIZED:
            skip = f"snapshot {served}, the one the API serves, is stored"
        case dg.AssetPartitionStatus.IN_PROGRESS:
            skip = f"snapshot {served} is being fetched"
        case dg.AssetPartitionStatus.FAILED:
            skip = f"the run for snapshot {served} failed; materialize partition {served} to try again"
        case _:
            if served not in known:
                add.append(served)
            runs.append(dg.RunRequest(run_key=f"{RUN_KEY_PREFIX}:{served}", partition_key=served))
    # Partitions that hold no snapshot and never will: not the one served, not being fetched, never
    # stored (a stored one that failed later keeps its partition and its rows).
    keep = (dg.AssetPartitionStatus.MATERIALIZED, dg.AssetPartitionStatus.IN_PROGRESS)
    stale = [
        key
        for key in sorted(known - {served})
        if status.get(key) not in keep and not ever_stored(instance, key)
    ]
    if stale:
        context.log.info(f"partitions that hold no snapshot and can no longer be fetched, removed: {stale}")
    return dg.SensorResult(
        run_requests=runs,
        skip_reason=skip,
        dynamic_partitions_requests=_requests(add, stale),
        cursor=cursor,
    )


def _stored_since(instance: dg.DagsterInstance, cursor: str | None) -> tuple[set[str], str | None]:
    """Partition keys of the materializations after `cursor` (a storage id), and the new cursor."""
    after = int(cursor) if cursor else None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=CATALOG_KEY, after_storage_id=after),
        limit=HISTORY_PAGE,
        ascending=True,
    ).records
    keys = {r.partition_key for r in records if r.partition_key}
    return keys, str(records[-1].storage_id) if records else cursor


def _statuses(
    instance: dg.DagsterInstance, keys: Collection[str]
) -> Mapping[str, dg.AssetPartitionStatus | None]:
    """Each partition's status (materialized, failed, in progress; None: never run)."""
    if not keys:
        return {}
    return instance.get_status_by_partition(CATALOG_KEY, sorted(keys), CATALOG_SNAPSHOTS) or {}


def _requests(
    add: list[str], delete: list[str]
) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if add:
        requests.append(CATALOG_SNAPSHOTS.build_add_request(sorted(set(add))))
    if delete:
        requests.append(CATALOG_SNAPSHOTS.build_delete_request(delete))
    return requests


def build_catalog_snapshot_sensor(
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """`default_status` is the status the sensor ships with (MARKETPLACE_AUTOMATION); the UI can switch it."""

    @dg.sensor(
        name=SENSOR_NAME,
        description=(
            "Takes each new product catalog snapshot: asks the API hourly which snapshot it serves, adds "
            "its date as a partition of catalog/product_catalog and launches one run for it. The "
            "partitions are exactly the snapshots stored, plus the one being fetched. To take today's "
            "snapshot now: Test sensor, then Launch all."
        ),
        # MARKETPLACE_SENSOR_INTERVAL replaces the hour (tests tick it in seconds).
        minimum_interval_seconds=sensor_interval_seconds(INTERVAL_SECONDS),
        target=dg.AssetSelection.assets(CATALOG_KEY),
        default_status=default_status,
    )
    def catalog_snapshot_sensor(
        context: dg.SensorEvaluationContext, marketplace: MarketplaceResource
    ) -> dg.SensorResult:
        return evaluate_catalog_sensor(context, marketplace)

    return catalog_snapshot_sensor
