"""Jobs that act on the Marketplace rather than read it."""

from typing import Any

import dagster as dg
from pydantic import Field

from marketplace_assets.api.errors import MarketplaceApiError
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.listing_update import ListingChangeError, build_update


class ListingChange(dg.Config):
    product_id: str = Field(description="The app's product id (see listings/apps)")
    changes: dict[str, Any] = Field(
        description='Listing fields to change, nested as in the listing, e.g. {"tagLine": "...", '
        '"developerLinks": {"forums": "https://..."}}. Tags are given as ids.'
    )


@dg.op(description="Read an app's listing, apply the change, and send it back with the revision read.")
def apply_listing_change(
    context: dg.OpExecutionContext, config: ListingChange, marketplace: MarketplaceResource
) -> dict:
    client = marketplace.get_client()
    path = f"product-listing/{config.product_id}"
    current = client.get_json(path)
    try:
        body = build_update(current, config.changes)
    except ListingChangeError as exc:
        raise dg.Failure(f"update_app_listing for {config.product_id}: {exc}. Nothing was sent.") from None
    try:
        updated = client.request_json("PUT", path, json_body=body)
    except MarketplaceApiError as exc:
        if exc.status == 409:
            raise dg.Failure(
                f"update_app_listing for {config.product_id}: the listing changed since it was read at "
                f"revision {current.get('revision')} ({exc.service_message}). Nothing was overwritten; "
                "re-run the job to apply the change on the latest revision."
            ) from None
        raise
    context.log.info(
        f"listing {config.product_id} updated: revision {current.get('revision')} → {updated.get('revision')}"
    )
    context.add_output_metadata(
        {"revision": updated.get("revision"), "changed_fields": sorted(config.changes)}
    )
    return updated


@dg.job(
    description="Change fields of one app listing (config: product_id and changes). Fields only Atlassian "
    "may change are refused before anything is sent; a revision conflict fails without overwriting.",
    tags={"marketplace/writes": "listing"},
)
def update_app_listing() -> None:
    apply_listing_change()
