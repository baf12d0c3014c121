"""What the client reads out of a response: page links, record lists, and what the transport proves
about a downloaded file (its length, and its MD5 against an S3-style ETag)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from marketplace_assets.api.errors import ReportShapeError, Retryable

# An S3-style ETag of a single-part object is the hex MD5 of its bytes (multipart ones end in "-N").
_MD5_ETAG = re.compile(r'^(?:W/)?"?([0-9a-fA-F]{32})"?$')


def offset_of(url: httpx.URL) -> int | None:
    value = url.params.get("offset")
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None


def verify_download(response: httpx.Response, received: int, digest: Any) -> None:
    """What the transport can prove about a downloaded file: its length against Content-Length (when
    the body was not re-encoded in transit) and its MD5 against an S3-style single-part ETag."""
    length = response.headers.get("Content-Length")
    encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    if length and length.isdigit() and not encoded and int(length) != received:
        raise Retryable(f"the download is truncated: {received} of {length} bytes (Content-Length)")
    etag = _MD5_ETAG.match(response.headers.get("ETag", "").strip())
    if etag and not encoded and digest.hexdigest() != etag.group(1).lower():
        raise Retryable(
            f"the download is truncated or corrupt: its MD5 {digest.hexdigest()} differs from the "
            f"object's ETag {etag.group(1).lower()} ({received} bytes received)"
        )


def next_href(page: Any) -> str | None:
    """The next page's href: `_links.next.href`, or a top-level `next` (the license-event details put
    their links at the top level, as a list of {href})."""
    if not isinstance(page, dict):
        return None
    nxt = (page.get("_links") or {}).get("next") or page.get("next")
    if isinstance(nxt, list):
        nxt = nxt[0] if nxt else None
    if isinstance(nxt, dict):
        return nxt.get("href")
    return nxt if isinstance(nxt, str) else None


def records_of(page: Any, key: str, target: str) -> list[dict[str, Any]]:
    if not isinstance(page, dict) or not isinstance(page.get(key, []), list):
        found = sorted(page)[:10] if isinstance(page, dict) else type(page).__name__
        raise ReportShapeError(target, f"expected a list under '{key}', found {found}")
    return list(page.get(key) or [])
