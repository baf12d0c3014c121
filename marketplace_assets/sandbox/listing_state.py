"""Edited app listings: `PUT /rest/3/product-listing/{productId}` and what GET answers afterwards.

A listing nobody has edited is `records.listing(world, app)`, exactly as before. A successful PUT
stores the new listing in `world.state["listings"][productId]` with `revision + 1`; both GETs (one
listing, developer-space list) answer the stored one from then on.

The PUT body is the reference request: the listing without productId, slug, approvalDetails and
cloudComplianceBoundary, with tags as lists of ids. It replaces the whole listing; optional fields left
out are cleared. Checks, in order: body shape and required fields (400), revision equal to the current
one (409), fields developers may not change sent with their current values (400 naming the field),
known tag ids (400).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from marketplace_assets.sandbox.data import App, World

# The tag vocabularies the generated listings draw from (records' private tables, shared on purpose:
# a PUT may only name tags the GET can expand back to {id, name}).
from marketplace_assets.sandbox.records import _CATEGORIES, _KEYWORDS, listing
from marketplace_assets.sandbox.routing import ApiError

STATE_KEY = "listings"
REQUEST_FIELDS = (
    "appKey", "developerId", "appName", "summary", "tagLine", "images", "tags", "communityEnabled",
    "developerLinks", "thirdPartyIntegrations", "enrolledPrograms", "state", "approvalStatus",
    "dataCenterReviewIssueKey", "hostingVisibility", "stateAfterApproval", "marketingLabels", "revision",
)  # fmt: skip
REQUIRED = ("appKey", "developerId", "appName", "summary", "communityEnabled", "revision")
FROZEN_STATES = ("PUBLIC", "READY_TO_LAUNCH")
IMAGE_KEYS = ("iconFileId", "titleLogoFileId", "bannerFileId")
TAGS = {"category": dict(_CATEGORIES), "keywords": {**dict(_KEYWORDS), "advanced": "Advanced"}}
_REASONS = {
    "appKey": "the app key cannot be changed after creation",
    "developerId": "the developer id cannot be changed using this API; contact Marketplace support",
    "images.titleLogoFileId": "only Marketplace administrators can update it",
    "enrolledPrograms": "programs are managed by the Atlassian Marketplace team",
    "state": "not enabled using this API; use the Marketplace UI",
    "approvalStatus": "not enabled using this API; use the Marketplace UI",
    "hostingVisibility": "only Marketplace administrators can update it",
    "stateAfterApproval": "it cannot be modified while the app's state is PUBLIC or READY_TO_LAUNCH",
}


def current_listing(world: World, app: App) -> dict[str, Any]:
    """The listing GET answers: the stored edit, else the generated listing (a copy either way)."""
    with world.lock:
        stored = world.state.get(STATE_KEY, {}).get(app.product_id)
        if stored is not None:
            return copy.deepcopy(stored)
    return listing(world, app)


def _programs(value: Any) -> list[tuple[str, str, str]] | None:
    """enrolledPrograms compared by (id, hostingType, status), in any order (names are labels)."""
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        return None
    return sorted((str(p.get("id")), str(p.get("hostingType")), str(p.get("status"))) for p in value)


def _visibility(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {key: value.get(key) for key in ("cloud", "server", "dataCenter")} | value


def _check_types(body: Mapping[str, Any]) -> None:
    strings = ("appKey", "developerId", "appName", "summary", "tagLine", "dataCenterReviewIssueKey",
               "state", "approvalStatus", "stateAfterApproval")  # fmt: skip
    for name in strings:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise ApiError(400, f"Invalid value for field '{name}': must be a string")
    if not isinstance(body["communityEnabled"], bool):
        raise ApiError(400, "Invalid value for field 'communityEnabled': must be true or false")
    if isinstance(body["revision"], bool) or not isinstance(body["revision"], int):
        raise ApiError(400, "Invalid value for field 'revision': must be an integer")
    for name in ("images", "developerLinks", "thirdPartyIntegrations", "tags", "hostingVisibility"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise ApiError(400, f"Invalid value for field '{name}': must be an object")
    for name in ("images", "developerLinks", "thirdPartyIntegrations"):
        for key, value in (body.get(name) or {}).items():
            if value is not None and not isinstance(value, str):
                raise ApiError(400, f"Invalid value for field '{name}.{key}': must be a string")
    extra = sorted(set(body.get("images") or {}) - set(IMAGE_KEYS))
    if extra:
        raise ApiError(400, f"Unrecognized field(s) {extra} in 'images': it takes {list(IMAGE_KEYS)}")
    labels = body.get("marketingLabels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise ApiError(400, "Invalid value for field 'marketingLabels': must be a list of strings")


def _check_fixed(body: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Fields developers may not change must come with their current values."""
    logo = current["images"].get("titleLogoFileId")
    # (field, the value sent, the current value, how the two compare)
    checks: list[tuple[str, Any, Any, Any]] = [
        ("appKey", body.get("appKey"), current["appKey"], None),
        ("developerId", body.get("developerId"), current["developerId"], None),
        ("images.titleLogoFileId", (body.get("images") or {}).get("titleLogoFileId"), logo, None),
        ("enrolledPrograms", body.get("enrolledPrograms"), current["enrolledPrograms"], _programs),
        ("state", body.get("state"), current["state"], None),
        ("approvalStatus", body.get("approvalStatus"), current["approvalStatus"], None),
        ("hostingVisibility", body.get("hostingVisibility"), current["hostingVisibility"], _visibility),
    ]
    if current["state"] in FROZEN_STATES:
        checks.append(
            ("stateAfterApproval", body.get("stateAfterApproval"), current["stateAfterApproval"], None)
        )
    for name, sent, now, canonical in checks:
        if (canonical(sent) if canonical else sent) != (canonical(now) if canonical else now):
            raise ApiError(
                400,
                f"Field '{name}' cannot be updated: {_REASONS[name]}. Send its current value "
                f"{json.dumps(now)} (from GET /rest/3/product-listing/{current['productId']}).",
            )


def _expand_tags(tags: Mapping[str, Any] | None) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for kind, known in TAGS.items():
        ids = (tags or {}).get(kind) or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, f"Invalid value for field 'tags.{kind}': must be a list of tag ids (strings)")
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ApiError(400, f"Unknown {kind} tag id(s) {unknown}: must be among {sorted(known)}")
        out[kind] = [{"id": i, "name": known[i]} for i in dict.fromkeys(ids)]
    extra = sorted(set(tags or {}) - set(TAGS))
    if extra:
        raise ApiError(400, f"Unknown tag type(s) {extra}: tags take {sorted(TAGS)}")
    return out


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object (the listing to store)")
    unknown = sorted(set(body) - set(REQUEST_FIELDS))
    if unknown:
        raise ApiError(
            400,
            f"Unrecognized field(s) {unknown}: the update takes {list(REQUEST_FIELDS)} "
            "(productId, slug and approvalDetails are read-only and not part of the request)",
        )
    missing = [name for name in REQUIRED if body.get(name) is None]
    if missing:
        raise ApiError(400, f"Missing required field(s) {missing}")
    _check_types(body)
    return body


def _optional(target: dict[str, Any], name: str, value: Any) -> None:
    if value is None or value == [] or value == {}:
        target.pop(name, None)
    else:
        target[name] = value


def update_listing(world: World, app: App, raw: bytes) -> dict[str, Any]:
    """Validate a PUT body against the current listing, store the new listing, answer it (GET shape)."""
    body = _parse(raw)
    with world.lock:
        current = current_listing(world, app)
        if body["revision"] != current["revision"]:
            raise ApiError(
                409,
                f"Conflict: revision {body['revision']} does not match the current revision "
                f"{current['revision']} of listing {app.product_id}: it was changed since it was read. "
                "Read the listing again and apply the change to the new revision.",
            )
        _check_fixed(body, current)
        tags = _expand_tags(body.get("tags"))
        updated = copy.deepcopy(current)
        updated["appName"] = body["appName"]
        updated["summary"] = body["summary"]
        _optional(updated, "tagLine", body.get("tagLine"))
        images = {**(body.get("images") or {}), "titleLogoFileId": current["images"].get("titleLogoFileId")}
        updated["images"] = {key: images[key] for key in IMAGE_KEYS if images.get(key) is not None}
        updated["tags"] = tags
        updated["communityEnabled"] = body["communityEnabled"]
        for name in ("developerLinks", "thirdPartyIntegrations"):
            updated[name] = {k: v for k, v in (body.get(name) or {}).items() if v is not None}
        _optional(updated, "dataCenterReviewIssueKey", body.get("dataCenterReviewIssueKey"))
        if current["state"] not in FROZEN_STATES and body.get("stateAfterApproval") is not None:
            updated["stateAfterApproval"] = body["stateAfterApproval"]
        _optional(updated, "marketingLabels", body.get("marketingLabels"))
        updated["revision"] = current["revision"] + 1
        world.state.setdefault(STATE_KEY, {})[app.product_id] = updated
        return copy.deepcopy(updated)
