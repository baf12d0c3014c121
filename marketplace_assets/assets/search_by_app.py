"""Search keywords per app: a month x app partition grid, the app dimension following the listings."""

import dagster as dg
import polars as pl

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import describe, marketplace_asset, start_run
from marketplace_assets.partitions import APPS, to_window
from marketplace_assets.reports.invariants import Invariants
from marketplace_assets.reports.parsers import parse_product_keywords

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


def build_keywords_by_app_asset(*, start_date: str, sandbox: bool) -> dg.AssetsDefinition:
    months = dg.MonthlyPartitionsDefinition(start_date=start_date)
    grid = dg.MultiPartitionsDefinition({"month": months, "app": APPS})

    @marketplace_asset(
        key=["search", "keywords_by_app"],
        description=describe(SUMMARY, WINDOW, f"GET /rest/3/{PATH}", sandbox=sandbox),
        sandbox=sandbox,
        partitions_def=grid,
        partition_expr={"month": "month", "app": "product_id"},
        invariants=Invariants(non_negative=("count",)),
    )
    def keywords_by_app(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource
    ) -> dg.Output[pl.DataFrame]:
        run = start_run(context, marketplace, LABEL)
        frames = []
        for key in context.partition_keys:
            # One request per (month, app): the answer aggregates over its window and is for one app.
            parts = grid.get_partition_key_from_str(key)
            month, app = parts.keys_by_dimension["month"], parts.keys_by_dimension["app"]
            window = to_window(months.time_window_for_partition_key(month))
            path = PATH.format(developerId=marketplace.developer_id, productId=app)
            frame = parse_product_keywords(run.client.get_json(path, window.params()), LABEL, window.start)
            # The partition is the app asked for, whatever the summary says (or omits).
            frames.append(frame.with_columns(pl.lit(app).alias("product_id")))
        frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        return run.output(frame)

    return keywords_by_app
