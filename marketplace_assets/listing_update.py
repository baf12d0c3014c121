"""Changing an app's listing safely: read it, apply the change, send it back with the read revision.

`PUT /rest/3/product-listing/{productId}` replaces the whole listing, takes tags as ids where GET
answers objects, and refuses any change to the fields only Atlassian may change; those must be sent
with their current values. A revision conflict (someone changed the listing since it was read) fails
clearly and is not retried: re-running reads the new revision and applies the change on top of it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# The PUT request's fields (the reference's request schema); the GET answer has more (productId,
# slug, approvalDetails, ...) which the PUT does not take.
REQUEST_FIELDS = (
    "appKey", "developerId", "appName", "summary", "tagLine", "images", "tags", "communityEnabled",
    "developerLinks", "thirdPartyIntegrations", "enrolledPrograms", "state", "approvalStatus",
    "dataCenterReviewIssueKey", "hostingVisibility", "stateAfterApproval", "marketingLabels", "revision",
)  # fmt: skip
# Fields developers may not change through the API, and why (from the reference page).
NOT_UPDATABLE: dict[str, str] = {
    "appKey": "the app key cannot be changed after creation",
    "developerId": "the developer id cannot be changed through this API; contact Marketplace support",
    "images.titleLogoFileId": "only Marketplace administrators can change the title logo",
    "enrolledPrograms": "programs are managed by the Atlassian Marketplace team",
    "state": "the state is changed in the Marketplace UI, not through this API",
    "approvalStatus": "the approval status is changed in the Marketplace UI, not through this API",
    "hostingVisibility": "only Marketplace administrators can change hosting visibility",
    "revision": "the revision is managed by the service for conflict detection",
}
FROZEN_STATES = ("PUBLIC", "READY_TO_LAUNCH")


class ListingChangeError(ValueError):
    """The requested change cannot be sent: it names the field and why."""


def _paths(changes: Mapping[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in changes.items():
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, Mapping):
            paths += _paths(value, f"{path}.")
    return paths


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def check_changes(current: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    unknown = sorted(set(changes) - set(REQUEST_FIELDS))
    if unknown:
        raise ListingChangeError(
            f"not listing fields that can be sent: {unknown}; the fields are {list(REQUEST_FIELDS)}"
        )
    for path in _paths(changes):
        if path in NOT_UPDATABLE:
            raise ListingChangeError(f"'{path}' cannot be changed: {NOT_UPDATABLE[path]}")
    if "stateAfterApproval" in changes and current.get("state") in FROZEN_STATES:
        raise ListingChangeError(
            f"'stateAfterApproval' cannot be changed while the app's state is {current.get('state')}"
        )


def build_update(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The PUT body: the current listing's request fields, the changes applied, the read revision kept."""
    check_changes(current, changes)
    body = {k: copy.deepcopy(current[k]) for k in REQUEST_FIELDS if k in current}
    # GET answers tags as {id, name} objects; PUT takes lists of ids.
    tags = body.get("tags")
    if isinstance(tags, dict):
        body["tags"] = {k: [t["id"] if isinstance(t, dict) else t for t in v or []] for k, v in tags.items()}
    return _merge(body, changes)
