"""The Definitions: every report asset, the Marketplace resource and the warehouse, configured from env.

Secrets are bound through `dg.EnvVar`, so the UI shows variable names, never values.
"""

from __future__ import annotations

import functools
import logging

import dagster as dg

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.catalog_snapshot import build_product_catalog_asset
from marketplace_assets.assets.exports import build_current_licenses_asset
from marketplace_assets.assets.partner_metrics import build_partner_metric_asset
from marketplace_assets.assets.reports import build_report_assets
from marketplace_assets.assets.search_by_app import build_keywords_by_app_asset
from marketplace_assets.catalog_sensor import build_catalog_snapshot_sensor
from marketplace_assets.executors import exports_in_parallel_executor
from marketplace_assets.export_sensors import build_export_sensor
from marketplace_assets.jobs import update_app_listing
from marketplace_assets.metrics.assets import (
    build_metric_assets,
    build_reconciliation_checks,
    metrics_automation,
)
from marketplace_assets.partitions import partitions_for
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.catalog import EXPORT_REPORTS, REPORTS
from marketplace_assets.reports.partner_metrics import load_queries
from marketplace_assets.sandbox.resource import SandboxMarketplaceResource
from marketplace_assets.schedules import build_schedules, sensor_status
from marketplace_assets.sensors import current_licenses_automation, marketplace_apps_sensor
from marketplace_assets.settings import SANDBOX_DEVELOPER_ID, MarketplaceSettings, load_settings
from marketplace_assets.warehouse import WarehouseIOManager, WarehouseResource

LOG = logging.getLogger("marketplace_assets")


def _env_or(name: str, value: str) -> str | dg.EnvVar:
    """Bind to the variable when it is set (so the UI shows its name), else use the default value."""
    return dg.EnvVar(name) if MarketplaceSettings.variable_is_set(name) else value


def marketplace_resource(settings: MarketplaceSettings) -> MarketplaceResource:
    """The one place the implementation is chosen: the simulated Marketplace in sandbox mode, else live."""
    # Timeouts, the export deadline and the export poll interval come from their own variables in both
    # modes, so changing one does not mean restating the resource's config. (The poll interval's default
    # differs by mode: the sandbox prepares exports in seconds; the settings choose it.)
    limits = {
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "export_deadline": settings.export_deadline_seconds,
        "export_poll_interval": settings.export_poll_interval_seconds,
    }
    if settings.is_sandbox:
        return SandboxMarketplaceResource(
            developer_id=settings.developer_id or SANDBOX_DEVELOPER_ID,
            **limits,
        )
    return MarketplaceResource(
        developer_id=dg.EnvVar("MARKETPLACE_DEVELOPER_ID"),
        email=dg.EnvVar("MARKETPLACE_EMAIL"),
        api_token=dg.EnvVar("MARKETPLACE_API_TOKEN"),
        base_url=_env_or("MARKETPLACE_BASE_URL", settings.base_url),
        **limits,
    )


def pii_policy(settings: MarketplaceSettings) -> PiiPolicy:
    """The PII policy; in hash mode the salt is bound to its variable, so the UI never shows it."""
    if settings.pii == "hash":
        return PiiPolicy(mode="hash", salt=dg.EnvVar("MARKETPLACE_PII_SALT"))
    return PiiPolicy(mode=settings.pii)


def build_assets(settings: MarketplaceSettings) -> list[dg.AssetsDefinition]:
    """Every asset: one per catalog row (export-backed ones included), then the bespoke ones."""
    start, sandbox = settings.start_date, settings.is_sandbox
    return [
        *build_report_assets(REPORTS, start_date=start, sandbox=sandbox),
        build_keywords_by_app_asset(start_date=start, sandbox=sandbox),
        build_product_catalog_asset(start_date=start, sandbox=sandbox),
        *(
            build_partner_metric_asset(q, start_date=start, sandbox=sandbox)
            for q in load_queries(settings.partner_metrics)
        ),
        build_current_licenses_asset(sandbox=sandbox),
    ]


def build_sensors(settings: MarketplaceSettings) -> list[dg.SensorDefinition]:
    # licenses/current's and the metrics' automation sensors ship running too: they only follow runs of
    # their raw inputs.
    # The apps sensor only reads the warehouse and adds partitions, so it always runs; the export sensors
    # call the API and launch runs, so they follow MARKETPLACE_AUTOMATION like the schedules.
    status = sensor_status(settings)
    exports = (
        build_export_sensor(r, partitions_for(r.cadence, settings.start_date), default_status=status)
        for r in EXPORT_REPORTS
    )
    return [
        marketplace_apps_sensor,
        current_licenses_automation,
        metrics_automation,
        *exports,
        build_catalog_snapshot_sensor(status),
    ]


@functools.cache
def _say_sandbox_mode(warehouse: str) -> None:
    """Once per process: every process Dagster starts (code server, run workers, steps) loads the
    definitions, and one line each is enough."""
    LOG.warning(
        "marketplace_assets is in SANDBOX mode (no MARKETPLACE_API_TOKEN, or MARKETPLACE_SANDBOX=1): "
        "assets read simulated data and write to %s.",
        warehouse,
    )


def build_definitions(settings: MarketplaceSettings) -> dg.Definitions:
    if settings.is_sandbox:
        _say_sandbox_mode(settings.warehouse_location)
    warehouse = _env_or("MARKETPLACE_WAREHOUSE", settings.warehouse_location)
    # Bound to its variable (the UI shows the name, never the value); unset: libpq's PGPASSWORD/.pgpass.
    password = (
        dg.EnvVar("MARKETPLACE_WAREHOUSE_PASSWORD")
        if settings.variable_is_set("MARKETPLACE_WAREHOUSE_PASSWORD")
        else None
    )
    assets = build_assets(settings)
    refresh_jobs, schedules = build_schedules(settings, assets)
    # Derived in the warehouse from the raw tables; refreshed by their automation sensor, not a schedule.
    metrics = build_metric_assets(start_date=settings.start_date, sandbox=settings.is_sandbox)
    return dg.Definitions(
        assets=[*assets, *metrics],
        # Each metric against Atlassian's own figure, where that report is defined (metrics/reconcile.py).
        asset_checks=build_reconciliation_checks([key for a in assets for key in a.keys]),
        sensors=build_sensors(settings),
        schedules=schedules,
        jobs=[update_app_listing, *refresh_jobs],
        # A process per step only where exports can wait side by side, else the run worker (executors.py).
        executor=exports_in_parallel_executor,
        resources={
            "marketplace": marketplace_resource(settings),
            "warehouse": WarehouseIOManager(warehouse=warehouse, password=password),
            "warehouse_store": WarehouseResource(warehouse=warehouse, password=password),
            "pii": pii_policy(settings),
        },
    )


defs = build_definitions(load_settings())
