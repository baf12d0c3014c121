"""Product catalog snapshot: GET /rest/3/reporting/product-catalog/latest, and its object store.

`latest` answers `{date, presignedUrl, expiresInSeconds}`; the presigned link points at the sandbox's
object store (`object_store.answer_object`), which lives outside `/rest/3` and takes no Marketplace
auth, so it is not a `Route`: the dispatcher calls `answer_object` before its auth check.
"""

from __future__ import annotations

from marketplace_assets.sandbox.data import World
from marketplace_assets.sandbox.object_store import answer_object, latest_snapshot
from marketplace_assets.sandbox.routing import ApiRequest, Reply, Route


def product_catalog_latest(world: World, req: ApiRequest) -> Reply:
    """GET /rest/3/reporting/product-catalog/latest: a presigned link to the latest snapshot CSV."""
    return Reply(latest_snapshot(world, req.headers))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET", r"/rest/3/reporting/product-catalog/latest", product_catalog_latest, "product_catalog_latest"
    ),
)

# The anonymous object-store hook for app.py (see object_store): answer_object(world, method, path,
# query, headers) -> Reply | None.
__all__ = ["ROUTES", "answer_object", "product_catalog_latest"]
