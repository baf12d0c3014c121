"""Search keywords per app: a month x app partition grid, the app dimension following the listings."""

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import MarketplaceAsset, describe
from marketplace_assets.partitions import APPS, partitions_for, to_window
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.invariants import Invariants
from marketplace_assets.reports.parsers import parse_product_keywords
from marketplace_assets.reports.report import Cadence

PATH = "reporting/developer-space/{developerId}/products/{productId}/search-keywords"
LABEL = "search/keywords_by_app"
SUMMARY = (
    "The keywords people found each of your apps with in Marketplace search, per month: each keyword's "
    "count and daily elements, with the app's leading keyword and its total appearances."
)
WINDOW = (
    "Partitioned by month x app (the app's product id). New apps are added by the marketplace_apps "
    "sensor when listings/apps shows them; an app removed from the listing keeps its partitions and rows."
)


def build_keywords_by_app_asset(*, start_date: date, sandbox: bool) -> dg.AssetsDefinition:
    months = partitions_for(Cadence.MONTHLY, start_date)
    assert months is not None
    grid = dg.MultiPartitionsDefinition({"month": months, "app": APPS})
    shape = MarketplaceAsset(
        dg.AssetKey(["search", "keywords_by_app"]),
        Invariants(non_negative=("count",)),
        grid,
        {"month": "month", "app": "product_id"},
    )

    @shape.define(
        description=describe(SUMMARY, WINDOW, f"GET /rest/3/{PATH}", sandbox=sandbox), sandbox=sandbox
    )
    def keywords_by_app(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource, pii: PiiPolicy
    ) -> Iterator[Any]:
        with shape.api_run(context, marketplace) as run:
            frames = []
            for key in context.partition_keys:
                # One request per (month, app): the answer aggregates over its window and is for one app.
                parts = grid.get_partition_key_from_str(key)
                month, app = parts.keys_by_dimension["month"], parts.keys_by_dimension["app"]
                window = to_window(months.time_window_for_partition_key(month))
                path = PATH.format(developerId=marketplace.developer_id, productId=app)
                frame = parse_product_keywords(
                    run.client.get_json(path, window.params()), LABEL, window.start
                )
                # The partition is the app asked for, whatever the summary says (or omits).
                frames.append(frame.with_columns(pl.lit(app).alias("product_id")))
            frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
            yield from shape.finish(context, run.output(frame), pii)

    return keywords_by_app
