"""The product catalog snapshot: every public app version on the Marketplace, one row per version.

The API serves only its latest snapshot, as a presigned object-store link that expires in minutes. So
a partition can be filled only on the day the API serves that snapshot: asking for any other day fails
clearly instead of storing the latest snapshot under the wrong date.
"""

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.api.errors import MarketplaceApiError
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import ApiRun, MarketplaceAsset, describe
from marketplace_assets.partitions import partitions_for
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.export_files import stage_csv
from marketplace_assets.reports.report import Cadence
from marketplace_assets.warehouse.batches import Rows

LATEST = "reporting/product-catalog/latest"
LABEL = "catalog/product_catalog"
SUMMARY = (
    "Every public app version on the Marketplace (all vendors), as Atlassian's daily catalog snapshot "
    "(wide_public_apps_overview CSV, about 150 MB): one row per app version, with its snapshot_date."
)
WINDOW = (
    "One partition per snapshot day. The API only serves its latest snapshot, so only that day's "
    "partition can be materialized; older partitions keep what was stored on their day."
)


def build_product_catalog_asset(*, start_date: date, sandbox: bool) -> dg.AssetsDefinition:
    # end_offset=1: today's snapshot is a partition as soon as the API serves it.
    shape = MarketplaceAsset(
        dg.AssetKey(["catalog", "product_catalog"]),
        partitions_def=partitions_for(Cadence.DAILY, start_date, end_offset=1),
        partition_expr="snapshot_date",
    )

    @shape.define(
        description=describe(
            SUMMARY, WINDOW, f"GET /rest/3/{LATEST}, then the presigned CSV", sandbox=sandbox
        ),
        sandbox=sandbox,
        # The API serves one day at a time: a backfill is one run per day, each checked on its own.
        single_run_backfills=False,
    )
    def product_catalog(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource, pii: PiiPolicy
    ) -> Iterator[Any]:
        if len(context.partition_keys) != 1:
            raise dg.Failure(f"{LABEL}: the API serves one snapshot at a time; materialize one day per run.")
        wanted = date.fromisoformat(context.partition_key)
        with shape.api_run(context, marketplace) as run:
            yield from shape.finish(context, _fetch_snapshot(context, run, wanted), pii)

    return product_catalog


def _fetch_snapshot(context: dg.AssetExecutionContext, run: ApiRun, wanted: date) -> dg.Output[Rows]:
    """The snapshot the API serves, staged, if it is the one for `wanted`."""
    client = run.client
    path = None
    for attempt in (1, 2):
        latest = client.get_json(LATEST)
        served = date.fromisoformat(str(latest.get("date"))[:10])
        if served != wanted:
            raise dg.Failure(
                f"{LABEL}: partition {wanted} cannot be fetched: the API serves only its latest "
                f"snapshot, dated {served}. Materialize partition {served} instead (past snapshots "
                "are kept only if they were stored on their day)."
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
