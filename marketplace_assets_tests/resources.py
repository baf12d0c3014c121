"""The resources every asset declares (the Marketplace, the PII policy) and its IO manager, for tests that
materialize assets in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.warehouse import WarehouseIOManager


def asset_resources(
    marketplace: MarketplaceResource, warehouse: Path, pii: PiiPolicy | None = None
) -> dict[str, Any]:
    return {
        "marketplace": marketplace,
        "warehouse": WarehouseIOManager(warehouse=str(warehouse)),
        "pii": pii or PiiPolicy(),
    }
