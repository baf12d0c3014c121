"""What every Marketplace asset shares: the pool, the kinds, the sandbox note, the run's metadata."""

from typing import Any

import dagster as dg

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


def start_run(
    context: dg.AssetExecutionContext, marketplace: MarketplaceResource, label: str
) -> MarketplaceClient:
    """The run's client, after saying plainly where the data comes from."""
    if marketplace.sandbox:
        context.log.info(f"Sandbox mode: {label} comes from the built-in simulated Marketplace.")
    return marketplace.get_client()


def run_metadata(
    marketplace: MarketplaceResource, client: MarketplaceClient, requests_before: int
) -> dict[str, Any]:
    return {"source": marketplace.source, "api_requests": client.request_count - requests_before}


def definition_metadata(*, sandbox: bool, **extra: Any) -> dict[str, Any]:
    """Metadata every Marketplace asset shows in the UI: where its data comes from, and more."""
    return {"source": "sandbox" if sandbox else "live", **extra}
