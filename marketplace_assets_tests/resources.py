"""The resources every asset declares (the Marketplace, the PII policy, the warehouse for the metrics'
queries) and its IO manager, for tests that materialize assets in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.warehouse import WarehouseIOManager, WarehouseResource


def asset_resources(
    marketplace: MarketplaceResource, warehouse: Path, pii: PiiPolicy | None = None
) -> dict[str, Any]:
    return {
        "marketplace": marketplace,
        "warehouse": WarehouseIOManager(warehouse=str(warehouse)),
        "warehouse_store": WarehouseResource(warehouse=str(warehouse)),
        "pii": pii or PiiPolicy(),
    }
