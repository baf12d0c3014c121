"""The Dagster resource that hands every asset the same configured Marketplace client."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from marketplace_assets.api.client import DEFAULT_BASE_URL, MarketplaceClient, RetrySettings
from marketplace_assets.api.errors import redact, secret_forms

SANDBOX_BASE_URL = "https://sandbox.invalid/marketplace"


class MarketplaceResource(dg.ConfigurableResource):
    """Credentials and tuning for the Marketplace REST API v3.

    In sandbox mode the client is wired to the built-in simulated Marketplace through an in-process
    httpx transport: the same client code path, no network, deterministic data.
    """

    developer_id: str
    email: str = ""
    api_token: str = ""
    base_url: str = DEFAULT_BASE_URL
    sandbox: bool = False
    sandbox_volume: float = 1.0
    max_concurrency: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_attempts: int = 6
    # Seconds between status polls when a run drives its own async export.
    export_poll_interval: float = 5.0
    # Seconds one async export may take, restarts included, before the run (or sensor) gives up on it
    # (MARKETPLACE_EXPORT_DEADLINE).
    export_deadline: float = 3 * 3600.0
    # A step whose API stayed unavailable through every client retry is tried again this many times,
    # this many seconds later (4xx answers and data errors never are).
    transient_retries: int = 2
    transient_retry_wait: float = 60.0

    _client: MarketplaceClient | None = PrivateAttr(default=None)

    @property
    def source(self) -> str:
        return "sandbox" if self.sandbox else "live"

    def redact(self, text: str) -> str:
        """`text` without these credentials in any encoding, nor any Authorization value."""
        return redact(text, secret_forms(self.email, self.api_token))

    def make_client(self, logger: Any = None) -> MarketplaceClient:
        """A new client; the caller closes it. Assets use `get_client()` instead."""
        transport = None
        base_url, email, token = self.base_url, self.email, self.api_token
        if self.sandbox:
            from marketplace_assets.sandbox import Sandbox
            from marketplace_assets.settings import SANDBOX_EMAIL, SANDBOX_TOKEN

            sandbox = Sandbox(
                developer_id=self.developer_id,
                email=SANDBOX_EMAIL,
                token=SANDBOX_TOKEN,
                volume=self.sandbox_volume,
            )
            transport, base_url, email, token = (
                sandbox.transport(),
                SANDBOX_BASE_URL,
                SANDBOX_EMAIL,
                SANDBOX_TOKEN,
            )
        return MarketplaceClient(
            base_url,
            email,
            token,
            transport=transport,
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
