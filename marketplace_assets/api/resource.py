"""The Dagster resource that hands every asset the same configured Marketplace client.

`MarketplaceResource` is the live implementation: it talks to the Marketplace REST API v3 over the
network. The simulated Marketplace plugs in through one seam, `connection()`, which the sandbox
implementation (`marketplace_assets.sandbox.resource.SandboxMarketplaceResource`) overrides;
`definitions.py` chooses between the two, so nothing in `api/` imports `sandbox/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
import httpx
from pydantic import PrivateAttr, model_validator

from marketplace_assets.api.client import MarketplaceClient, RetrySettings
from marketplace_assets.api.errors import redact, secret_forms
from marketplace_assets.constants import DEFAULT_BASE_URL, DEFAULT_EXPORT_POLL_INTERVAL


@dataclass(frozen=True)
class Connection:
    """Where a client connects and as whom: all the live and sandbox implementations differ in."""

    base_url: str
    email: str
    api_token: str
    # None: the network. Otherwise the httpx transport that answers every request (e.g. in-process).
    transport: httpx.BaseTransport | None = None


class MarketplaceResource(dg.ConfigurableResource):
    """Credentials and tuning for the Marketplace REST API v3 (the live service).

    Subclasses change where the client connects by overriding `connection()` (and say what they are
    through `sandbox`); everything else, retries, timeouts and the run lifecycle, is shared.
    """

    developer_id: str
    email: str = ""
    api_token: str = ""
    base_url: str = DEFAULT_BASE_URL
    max_concurrency: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_attempts: int = 6
    # The longest wait, in seconds, between status polls when a run drives its own async export
    # (MARKETPLACE_EXPORT_POLL_INTERVAL): the polls start a second apart and double up to it.
    export_poll_interval: float = DEFAULT_EXPORT_POLL_INTERVAL
    # Seconds one async export may take, restarts included, before the run (or sensor) gives up on it
    # (MARKETPLACE_EXPORT_DEADLINE).
    export_deadline: float = 3 * 3600.0
    # A step whose API stayed unavailable through every client retry is tried again this many times,
    # this many seconds later (4xx answers and data errors never are).
    transient_retries: int = 2
    transient_retry_wait: float = 60.0

    _client: MarketplaceClient | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _no_sandbox_switch(cls, data: Any) -> Any:
        # Unknown keys are otherwise ignored, so the former `sandbox=True` would silently mean live.
        if isinstance(data, dict) and "sandbox" in data:
            raise ValueError(
                "`sandbox` is not a setting: the implementation decides it. Use "
                "marketplace_assets.sandbox.resource.SandboxMarketplaceResource for the simulated "
                "Marketplace, MarketplaceResource for the live API."
            )
        return data

    @property
    def sandbox(self) -> bool:
        """Whether this resource reads the simulated Marketplace (the sandbox implementation says True)."""
        return False

    @property
    def source(self) -> str:
        return "sandbox" if self.sandbox else "live"

    def redact(self, text: str) -> str:
        """`text` without these credentials in any encoding, nor any Authorization value."""
        return redact(text, secret_forms(self.email, self.api_token))

    def connection(self) -> Connection:
        """The seam: the base URL, credentials and transport each new client is built with."""
        return Connection(self.base_url, self.email, self.api_token)

    def make_client(self, logger: Any = None) -> MarketplaceClient:
        """A new client; the caller closes it. Assets use `get_client()` instead."""
        connection = self.connection()
        return MarketplaceClient(
            connection.base_url,
            connection.email,
            connection.api_token,
            transport=connection.transport,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_concurrency=self.max_concurrency,
            retry=RetrySettings(max_attempts=self.max_attempts),
            logger=logger,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._client = self.make_client(logger=context.log)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def get_client(self) -> MarketplaceClient:
        """The run's client (set up once per run, closed after it)."""
        if self._client is None:
            self._client = self.make_client()
        return self._client
