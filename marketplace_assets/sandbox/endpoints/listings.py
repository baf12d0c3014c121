"""Product listing endpoints: /rest/3/product-listing/..."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from marketplace_assets.sandbox.data import App, World
from marketplace_assets.sandbox.listing_state import current_listing, update_listing
from marketplace_assets.sandbox.routing import ApiError, ApiRequest, Reply, Route, href


def encode_cursor(product_id: str) -> str:
    """Opaque to clients: base64 of JSON naming the first item of the next page (as the service does)."""
    return base64.b64encode(json.dumps({"productId": product_id}, separators=(",", ":")).encode()).decode()


def decode_cursor(world: World, cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True))
        product_id = data["productId"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ApiError(400, f"Invalid cursor '{cursor}'") from None
    for index, app in enumerate(world.apps):
        if app.product_id == product_id:
            return index
    raise ApiError(400, f"Invalid cursor '{cursor}'")


def developer_listings(world: World, req: ApiRequest) -> Reply:
    """GET /rest/3/product-listing/developer-space/{developerId}: cursor-paged listings."""
    limit = req.integer("limit", 10, minimum=1)
    req.boolean("includePrivate")  # validated; every sandbox app is public, so it changes nothing
    cursor = req.one("cursor")
    start = decode_cursor(world, cursor) if cursor else 0
    apps = world.apps[start : start + limit]
    path = f"/rest/3/product-listing/developer-space/{world.developer_id}"
    base = [*req.query_without("limit", "cursor"), ("limit", str(limit))]
    links: dict[str, Any] = {"self": href(world, path, [*base, *([("cursor", cursor)] if cursor else [])])}
    if start + limit < len(world.apps):
        links["next"] = href(
            world, path, [*base, ("cursor", encode_cursor(world.apps[start + limit].product_id))]
        )
    return Reply({"links": links, "items": [current_listing(world, app) for app in apps]})


def product_listing(world: World, req: ApiRequest) -> Reply:
    """GET /rest/3/product-listing/{productId}: one listing, 404 for an id that is not ours."""
    return Reply(current_listing(world, _app(world, req)))


def update_product_listing(world: World, req: ApiRequest) -> Reply:
    """PUT /rest/3/product-listing/{productId}: replace the listing (revision-checked); see listing_state."""
    return Reply(update_listing(world, _app(world, req), req.body))


def _app(world: World, req: ApiRequest) -> App:
    app = world.app(req.params["productId"])
    if app is None:
        raise ApiError(404, f"No app listing found for productId {req.params['productId']}")
    return app


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        r"/rest/3/product-listing/developer-space/(?P<developerId>[^/]+)",
        developer_listings,
        "developer_listings",
    ),
    Route("GET", r"/rest/3/product-listing/(?P<productId>[^/]+)", product_listing, "product_listing"),
    Route(
        "PUT",
        r"/rest/3/product-listing/(?P<productId>[^/]+)",
        update_product_listing,
        "update_product_listing",
    ),
)
