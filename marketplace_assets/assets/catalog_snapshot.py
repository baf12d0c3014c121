"""The product catalog snapshot: every public app version on the Marketplace, one row per version.

The API serves only its latest snapshot, as a presigned object-store link that expires in minutes. So
the asset is partitioned by the snapshots actually taken (`CATALOG_SNAPSHOTS`: dynamic, keyed by the
snapshot's date), which `catalog_snapshot_sensor` adds with the run that fetches each one
(`marketplace_assets/catalog_sensor.py`): the partitions are the snapshots stored, plus the one being
fetched. A run for a day the API no longer serves fails clearly instead of storing the latest snapshot
under the wrong date, and removes that partition if it never held a snapshot.

Earlier releases partitioned this asset by calendar day (MARKETPLACE_START_DATE to today). Their rows stay
in `catalog.product_catalog` (the partition column is still `snapshot_date`) and their materializations
stay in the event log under the same date keys. Those days are not partitions of the new definition until
`catalog_snapshot_sensor` adds them back (it adds every date with a materialization), and from then on
the UI shows each with its old history; the days that never held a snapshot are simply gone.
"""

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.api.errors import MarketplaceApiError
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import ApiRun, MarketplaceAsset, describe
from marketplace_assets.catalog_sensor import (
    CATALOG_KEY,
    LATEST,
    SENSOR_NAME,
    forget_if_never_stored,
    served_date,
)
from marketplace_assets.partitions import CATALOG_SNAPSHOTS
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.export_files import stage_csv
from marketplace_assets.warehouse.batches import Rows

LABEL = "catalog/product_catalog"
SUMMARY = (
    "Every public app version on the Marketplace (all vendors), as Atlassian's daily catalog snapshot "
    "(wide_public_apps_overview CSV, about 150 MB): one row per app version, with its snapshot_date."
)
WINDOW = (
    "One partition per snapshot taken, named by its date: the API serves only its latest snapshot, so "
    f"`{SENSOR_NAME}` adds each new one as a partition together with the run that fetches it. To take "
    f"today's snapshot now, open `{SENSOR_NAME}` under Automation, then Test sensor and Launch all. "
    "Stored snapshots keep their partitions; a partition can be re-materialized only while the API "
    "still serves its snapshot."
)
HOW_TO_FETCH = (
    f"To take the snapshot the API serves, open {SENSOR_NAME} under Automation, then Test sensor and "
    "Launch all (or switch the sensor on)"
)


def build_product_catalog_asset(*, start_date: date | None = None, sandbox: bool) -> dg.AssetsDefinition:
    # `start_date` is not used: the partitions are the snapshots taken, whatever MARKETPLACE_START_DATE
    # says. It stays a parameter so that every asset builder is called alike.
    del start_date
    shape = MarketplaceAsset(
        CATALOG_KEY, partitions_def=CATALOG_SNAPSHOTS, partition_expr="snapshot_date", dated_keys=True
    )

    @shape.define(
        description=describe(
            SUMMARY, WINDOW, f"GET /rest/3/{LATEST}, then the presigned CSV", sandbox=sandbox
        ),
        sandbox=sandbox,
        # The API serves one snapshot at a time: a backfill is one run per snapshot, each checked alone.
        single_run_backfills=False,
    )
    def product_catalog(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource, pii: PiiPolicy
    ) -> Iterator[Any]:
        if len(context.partition_keys) != 1:
            raise dg.Failure(
                f"{LABEL}: the API serves one snapshot at a time; materialize one snapshot per run."
            )
        wanted = _snapshot_day(context)
        with shape.api_run(context, marketplace) as run:
            yield from shape.finish(context, _fetch_snapshot(context, run, wanted), pii)

    return product_catalog


def _snapshot_day(context: dg.AssetExecutionContext) -> date:
    """The run's partition as the date it names; exactly YYYY-MM-DD, as its rows' snapshot_date reads."""
    key = context.partition_key
    try:
        day = date.fromisoformat(key)
    except ValueError:
        day = None
    if day is None or day.isoformat() != key:
        removed = forget_if_never_stored(context.instance, key)
        raise dg.Failure(
            f"{LABEL}: partition {key!r} is not a snapshot date (YYYY-MM-DD): partitions are named by "
            f"the date of the snapshot they hold.{_removed(key, removed)} {HOW_TO_FETCH}."
        )
    return day


def _removed(key: str, removed: bool) -> str:
    return f" Partition {key} held no snapshot, so it was removed." if removed else ""


def _fetch_snapshot(context: dg.AssetExecutionContext, run: ApiRun, wanted: date) -> dg.Output[Rows]:
    """The snapshot the API serves, staged, if it is the one for `wanted`."""
    client = run.client
    path = None
    for attempt in (1, 2):
        latest = client.get_json(LATEST)
        served = served_date(latest)
        if served != wanted:
            # Never the latest snapshot under another date. A partition that never held a snapshot
            # would stay missing forever: it goes, so the partitions stay the snapshots stored.
            removed = forget_if_never_stored(context.instance, wanted.isoformat())
            raise dg.Failure(
                f"{LABEL}: partition {wanted} cannot be fetched: the API serves only its latest "
                f"snapshot, dated {served}. Materialize partition {served} instead (past snapshots "
                f"are kept only if they were stored on their day).{_removed(str(wanted), removed)} "
                f"{HOW_TO_FETCH}."
            )
        try:
            # No Marketplace credentials on the object store: presigned links refuse a second auth.
            path = client.download(latest["presignedUrl"], authenticated=False, suffix=".csv")
            break
        except MarketplaceApiError as exc:
            if exc.status != 403:
                raise
            context.log.warning(
                f"{LABEL}: the presigned link answered 403 (expired?); attempt {attempt} of 2"
            )
    if path is None:
        raise dg.Failure(
            f"{LABEL}: the presigned catalog link expired before the download began, twice "
            f"(links last {latest.get('expiresInSeconds', 300)} s). Re-run; if it persists, check the "
            "machine's clock and its bandwidth to the object store."
        )

    def stamped(batch: pl.DataFrame) -> pl.DataFrame:
        if "snapshot_date" in batch.columns:
            return batch.with_columns(pl.col("snapshot_date").cast(pl.Date))
        return batch.with_columns(pl.lit(wanted, dtype=pl.Date).alias("snapshot_date"))

    try:
        staged, _ = stage_csv(path, LABEL, stamped)
    finally:
        path.unlink(missing_ok=True)
    return run.output(staged, snapshot_date=wanted.isoformat())
