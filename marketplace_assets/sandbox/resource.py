"""The sandbox implementation of the Marketplace resource: the same client, wired to the simulator.

`definitions.py` picks this class in sandbox mode and `MarketplaceResource` (the live API) otherwise; it
overrides only the resource's `connection()` seam, so every request still goes through the real client
code path (auth, retries, pagination), answered in process by `Sandbox`: no network, deterministic data.
This module imports Dagster, so `marketplace_assets.sandbox` does not re-export it: the simulator alone
(`python -m marketplace_assets.sandbox`) stays free of it.
"""

from __future__ import annotations

from marketplace_assets.api.resource import Connection, MarketplaceResource
from marketplace_assets.sandbox.app import Sandbox

SANDBOX_BASE_URL = "https://sandbox.invalid/marketplace"
SANDBOX_EMAIL = "sandbox@example.com"
SANDBOX_TOKEN = "sandbox-token"  # not a secret: the in-process sandbox checks it like the real API would


class SandboxMarketplaceResource(MarketplaceResource):
    """The Marketplace resource backed by the built-in simulated Marketplace (in process, per client).

    `email`, `api_token` and `base_url` are not used: the simulator has its own, fixed ones.
    """

    # How much data the simulator generates (1.0: the default catalogue and history).
    sandbox_volume: float = 1.0

    @property
    def sandbox(self) -> bool:
        return True

    def connection(self) -> Connection:
        simulator = Sandbox(
            developer_id=self.developer_id,
            email=SANDBOX_EMAIL,
            token=SANDBOX_TOKEN,
            volume=self.sandbox_volume,
        )
        return Connection(SANDBOX_BASE_URL, SANDBOX_EMAIL, SANDBOX_TOKEN, simulator.transport())
