"""The route table of the simulated Marketplace.

Each module holds the handlers of one API area and exports `ROUTES`; this table is their
concatenation, checked in order. Adding an endpoint = one handler + one `Route(...)` row in its area's
module (or a new module appended here).
"""

from __future__ import annotations

from marketplace_assets.sandbox.endpoints import (
    catalog,
    insights,
    licensing,
    listings,
    metrics,
    partner_metrics,
    reporting,
)
from marketplace_assets.sandbox.routing import Route

ROUTES: tuple[Route, ...] = (
    *reporting.ROUTES,
    *metrics.ROUTES,
    *insights.ROUTES,
    *licensing.ROUTES,
    *catalog.ROUTES,
    *partner_metrics.ROUTES,
    *listings.ROUTES,
)

__all__ = ["ROUTES"]
