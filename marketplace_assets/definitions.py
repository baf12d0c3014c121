"""The Definitions: every report asset, the Marketplace resource and the warehouse, configured from env.

Secrets are bound through `dg.EnvVar`, so the UI shows variable names, never values.
"""

from __future__ import annotations

import logging
import os

import dagster as dg

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.reports import build_report_assets
from marketplace_assets.reports.catalog import REPORTS
from marketplace_assets.settings import SANDBOX_DEVELOPER_ID, MarketplaceSettings, load_settings
from marketplace_assets.warehouse import WarehouseIOManager

LOG = logging.getLogger("marketplace_assets")


def _env_or(name: str, value: str) -> str | dg.EnvVar:
    """Bind to the variable when it is set (so the UI shows its name), else use the default value."""
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else value


def marketplace_resource(settings: MarketplaceSettings) -> MarketplaceResource:
    if settings.is_sandbox:
        return MarketplaceResource(developer_id=settings.developer_id or SANDBOX_DEVELOPER_ID, sandbox=True)
    return MarketplaceResource(
        developer_id=dg.EnvVar("MARKETPLACE_DEVELOPER_ID"),
        email=dg.EnvVar("MARKETPLACE_EMAIL"),
        api_token=dg.EnvVar("MARKETPLACE_API_TOKEN"),
        base_url=_env_or("MARKETPLACE_BASE_URL", settings.base_url),
    )


def build_definitions(settings: MarketplaceSettings) -> dg.Definitions:
    if settings.is_sandbox:
        LOG.warning(
            "marketplace_assets is in SANDBOX mode (no MARKETPLACE_API_TOKEN, or MARKETPLACE_SANDBOX=1): "
            "assets read simulated data and write to %s.",
            settings.warehouse_location,
        )
    return dg.Definitions(
        assets=build_report_assets(REPORTS, start_date=settings.start_date, sandbox=settings.is_sandbox),
        resources={
            "marketplace": marketplace_resource(settings),
            "warehouse": WarehouseIOManager(
                warehouse=_env_or("MARKETPLACE_WAREHOUSE", settings.warehouse_location)
            ),
        },
    )


defs = build_definitions(load_settings())
