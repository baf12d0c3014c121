"""A deterministic simulated Atlassian Marketplace REST API v3.

    from marketplace_assets.sandbox import Sandbox, FaultRule, serve

    sb = Sandbox(seed=7)
    client = httpx.Client(transport=sb.transport(), base_url="https://sandbox.invalid/marketplace",
                          auth=("sandbox@example.com", "sandbox-token"))
    with serve(sb, port=0) as base_url:   # the same sandbox over real HTTP on 127.0.0.1
        ...

Endpoints live in `sandbox/endpoints/` as a route table; see that package to add one.
"""

from marketplace_assets.sandbox.app import Sandbox
from marketplace_assets.sandbox.data import App
from marketplace_assets.sandbox.faults import FaultRule
from marketplace_assets.sandbox.routing import ApiError, ApiRequest, Reply, Route
from marketplace_assets.sandbox.server import serve

__all__ = ["ApiError", "ApiRequest", "App", "FaultRule", "Reply", "Route", "Sandbox", "serve"]
