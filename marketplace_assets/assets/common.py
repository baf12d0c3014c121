"""What every Marketplace asset shares: the decorator's settings, the sandbox note, the run's metadata."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.resource import MarketplaceResource

# Every asset that calls the Marketplace shares this pool, so big backfills cannot hammer the API.
API_POOL = "marketplace_api"
KINDS = {"python", "polars", "duckdb"}
SANDBOX_NOTE = "**Sandbox mode**: this asset reads the built-in simulated Marketplace, not your account."


def describe(summary: str, window: str, endpoint: str, *, sandbox: bool) -> str:
    parts = [summary, window, f"Source: `{endpoint}`."]
    if sandbox:
        parts.append(SANDBOX_NOTE)
    return "\n\n".join(p for p in parts if p)


def marketplace_asset(
    *,
    key: Sequence[str],
    description: str,
    sandbox: bool,
    partitions_def: dg.PartitionsDefinition | None = None,
    partition_expr: str | Mapping[str, str] | None = None,
    single_run_backfills: bool = True,
    deps: Sequence[dg.AssetKey] = (),
    automation_condition: dg.AutomationCondition | None = None,
    **metadata: Any,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`dg.asset` with what every Marketplace asset has: its area as group, the kinds, the API pool, the
    warehouse IO manager, the source in its metadata, and (when partitioned) single-run backfills, so a
    backfill of any range is one run."""
    definition_metadata: dict[str, Any] = {"source": "sandbox" if sandbox else "live", **metadata}
    if partition_expr is not None:
        definition_metadata["partition_expr"] = partition_expr
    single_run = partitions_def is not None and single_run_backfills
    return dg.asset(
        key=list(key),
        group_name=key[0],
        description=description,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if single_run else None,
        metadata=definition_metadata,
        kinds=KINDS,
        pool=API_POOL,
        io_manager_key="warehouse",
        deps=list(deps),
        automation_condition=automation_condition,
    )


@dataclass
class ApiRun:
    """One asset run's use of the API: the client, and the requests it made."""

    marketplace: MarketplaceResource
    client: MarketplaceClient
    requests_before: int

    def output(self, frame: pl.DataFrame, **metadata: Any) -> dg.Output[pl.DataFrame]:
        requests = self.client.request_count - self.requests_before
        return dg.Output(
            frame, metadata={"source": self.marketplace.source, "api_requests": requests, **metadata}
        )


def start_run(context: dg.AssetExecutionContext, marketplace: MarketplaceResource, label: str) -> ApiRun:
    """The run's client, after saying plainly where the data comes from."""
    if marketplace.sandbox:
        context.log.info(f"Sandbox mode: {label} comes from the built-in simulated Marketplace.")
    client = marketplace.get_client()
    return ApiRun(marketplace, client, client.request_count)
