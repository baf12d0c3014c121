"""A presigned-link object store beside the API, serving the product catalog snapshot CSV.

`GET /rest/3/reporting/product-catalog/latest` answers a link like

    {base}/_objects/product-catalog/wide_public_apps_overview-2025-11-06-10:30:00.csv
        ?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=...&X-Amz-Date=20251106T103000Z
        &X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=<hex>

where `{base}` is the scheme and host the client used (see `object_base_url`). The object store
behaves like S3 with a presigned GET: no Marketplace auth, and an Authorization header next to the
presigned query is refused (400 InvalidArgument); an expired link answers 403 AccessDenied; a changed
URL (key, date, expiry) answers 403 SignatureDoesNotMatch. Errors are S3-style XML.

An object answers like a single-part S3 upload: `ETag` is the quoted hex MD5 of its bytes and
`Content-Length` its size (both computed once per object and remembered, see `_object_reply`).

The signature is an HMAC of the object path, the issue time (X-Amz-Date) and the expiry, keyed by the
seed, so the expiry check is exact and deterministic with the sandbox clock `configure_catalog(now=...)`.

Wiring: `answer_object(world, method, path, query, headers)` answers any path containing `/_objects/`
(and None for every other path). It must run before the Basic-auth check and after the fault rules.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlencode
from xml.sax.saxutils import escape

from marketplace_assets.sandbox.catalog_data import catalog_chunks
from marketplace_assets.sandbox.data import World, digest
from marketplace_assets.sandbox.routing import Reply
from marketplace_assets.sandbox.spool import Spool

OBJECT_ROOT = "/_objects/"
CATALOG_DIR = "/_objects/product-catalog/"
SNAPSHOT_TIME = "10:30:00"
_KEY_RE = re.compile(
    r"/_objects/product-catalog/wide_public_apps_overview-(?P<day>\d{4}-\d{2}-\d{2})-10:30:00\.csv"
)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_STATE_KEY = "catalog"
_DIGESTS_KEY, _DIGEST_LOCKS_KEY = "catalog_digests", "catalog_digest_locks"
MAX_EXPIRES = 604800  # S3's limit for a presigned link: 7 days


@dataclass(frozen=True)
class CatalogSettings:
    """Per-sandbox catalog controls (kept in `world.state["catalog"]`).

    day: the latest snapshot's date (None: the clock's UTC day).
    expires_in: the lifetime of the links `latest` hands out, in seconds.
    now: a fixed sandbox clock for issuing and checking links (None: the real UTC time).
    scale: the CSV's scale (None: the sandbox volume); see `catalog_data`.
    base_url: the object store's base URL in links (None: from the request's Host header).
    """

    day: date | None = None
    expires_in: int = 300
    now: datetime | None = None
    scale: float | None = None
    base_url: str | None = None


def catalog_settings(world: World) -> CatalogSettings:
    with world.lock:
        return world.state.get(_STATE_KEY) or CatalogSettings()


def configure_catalog(
    world: World,
    *,
    day: date | None = None,
    expires_in: int | None = None,
    now: datetime | None = None,
    scale: float | None = None,
    base_url: str | None = None,
) -> CatalogSettings:
    """Change the given catalog settings (None: leave as is); `reset_catalog` restores the defaults."""
    if expires_in is not None and not 1 <= expires_in <= MAX_EXPIRES:
        raise ValueError(f"expires_in must be 1..{MAX_EXPIRES} seconds, got {expires_in!r}")
    if scale is not None and scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    changes = {
        "day": day,
        "expires_in": expires_in,
        "now": now,
        "scale": scale,
        "base_url": base_url.rstrip("/") if base_url else None,
    }
    with world.lock:
        updated = replace(catalog_settings(world), **{k: v for k, v in changes.items() if v is not None})
        world.state[_STATE_KEY] = updated
        return updated


def set_catalog_date(world: World, day: date) -> None:
    """Make `day` the date of the latest snapshot."""
    configure_catalog(world, day=day)


def advance_clock(world: World, seconds: float) -> datetime:
    """Move the sandbox clock on (fixing it first at the current time if it runs free)."""
    with world.lock:
        now = catalog_now(world) + timedelta(seconds=seconds)
        configure_catalog(world, now=now)
        return now


def reset_catalog(world: World) -> None:
    with world.lock:
        world.state.pop(_STATE_KEY, None)


def catalog_now(world: World) -> datetime:
    fixed = catalog_settings(world).now
    return fixed if fixed is not None else datetime.now(UTC)


def catalog_date(world: World) -> date:
    return catalog_settings(world).day or catalog_now(world).date()


def catalog_scale(world: World) -> float:
    scale = catalog_settings(world).scale
    return scale if scale is not None else world.volume


# --- links -----------------------------------------------------------------------------------------


def object_base_url(world: World, headers: Mapping[str, str]) -> str:
    """The scheme://host the client reached the sandbox at, from the (lower-case) request headers.

    The loopback server is plain HTTP and is addressed by IP or with a port; the in-process transport
    answers any URL, and its clients use a name such as `sandbox.invalid`, which gets https. A proxy's
    X-Forwarded-Host/-Proto win. The API prefix (`/marketplace`) is not kept: like S3, the object store
    lives beside the API, not under it.
    """
    configured = catalog_settings(world).base_url
    if configured:
        return configured
    host = (headers.get("x-forwarded-host") or headers.get("host") or "sandbox.invalid").split(",")[0]
    host = host.strip()
    scheme = headers.get("x-forwarded-proto") or ("http" if _plain_http(host) else "https")
    return f"{scheme.split(',')[0].strip()}://{host}"


def _plain_http(host: str) -> bool:
    name, port = host, ""
    if host.startswith("["):  # [::1]:8765
        name, _, rest = host[1:].partition("]")
        port = rest.lstrip(":")
    elif host.count(":") == 1:
        name, port = host.split(":")
    if port or name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def snapshot_key(day: date) -> str:
    return f"{CATALOG_DIR}wide_public_apps_overview-{day.isoformat()}-{SNAPSHOT_TIME}.csv"


def _credential(issued: datetime) -> str:
    return f"SANDBOXACCESSKEY/{issued:%Y%m%d}/us-east-1/s3/aws4_request"


def _signature(world: World, key: str, amz_date: str, expires: str, credential: str) -> str:
    secret = digest(world.seed, "object-store-signing-key", size=32)
    message = "\n".join(("GET", key, amz_date, expires, credential)).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def presign(world: World, key: str, base_url: str, issued: datetime, expires_in: int) -> str:
    """An absolute presigned GET link for `key`, issued at `issued`, valid `expires_in` seconds."""
    amz_date, credential = issued.astimezone(UTC).strftime(_AMZ_DATE), _credential(issued)
    query = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", credential),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires_in)),
        ("X-Amz-SignedHeaders", "host"),
        ("X-Amz-Signature", _signature(world, key, amz_date, str(expires_in), credential)),
    ]
    return f"{base_url}{quote(key, safe='/:')}?{urlencode(query)}"


def latest_snapshot(world: World, headers: Mapping[str, str]) -> dict[str, object]:
    """The body of GET /rest/3/reporting/product-catalog/latest."""
    settings, day = catalog_settings(world), catalog_date(world)
    url = presign(
        world, snapshot_key(day), object_base_url(world, headers), catalog_now(world), settings.expires_in
    )
    return {"date": day.isoformat(), "presignedUrl": url, "expiresInSeconds": settings.expires_in}


# --- the object store ------------------------------------------------------------------------------


def s3_error(world: World, status: int, code: str, message: str, **details: str) -> Reply:
    """An S3-style XML error answer."""
    request_id = digest(world.seed, "s3-request", code, message, size=8).hex().upper()
    extra = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in details.items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{extra}"
        f"<RequestId>{request_id}</RequestId><HostId>sandbox</HostId></Error>"
    )
    return Reply(body.encode("utf-8"), status, {"x-amz-request-id": request_id}, "application/xml")


def answer_object(
    world: World, method: str, path: str, query: str, headers: Mapping[str, str]
) -> Reply | None:
    """The object store's answer for a path containing `/_objects/`, or None for any other path.

    `path` is the decoded request path (any prefix such as `/marketplace` is ignored), `query` the raw
    query string, `headers` the request headers with lower-case names. Needs no Marketplace auth.
    """
    index = path.find(OBJECT_ROOT)
    if index < 0:
        return None
    key = path[index:]
    params = dict(parse_qsl(query, keep_blank_values=True))
    presigned = "X-Amz-Signature" in params or "X-Amz-Algorithm" in params
    if headers.get("authorization"):
        message = (
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
            "string parameter or the Authorization header should be specified"
            if presigned
            else "Unsupported Authorization Type"
        )
        return s3_error(world, 400, "InvalidArgument", message, ArgumentName="Authorization")
    if not presigned:
        return s3_error(world, 403, "AccessDenied", "Access Denied")
    try:
        issued = datetime.strptime(params.get("X-Amz-Date", ""), _AMZ_DATE).replace(tzinfo=UTC)
        expires = int(params.get("X-Amz-Expires", ""))
    except ValueError:
        return s3_error(
            world,
            400,
            "AuthorizationQueryParametersError",
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\" and X-Amz-Expires "
            "must be a number of seconds",
        )
    if not 1 <= expires <= MAX_EXPIRES:
        return s3_error(
            world,
            400,
            "AuthorizationQueryParametersError",
            f"X-Amz-Expires must be less than a week (in seconds) that is; 1 to {MAX_EXPIRES}",
        )
    now = catalog_now(world)
    if now > issued + timedelta(seconds=expires):
        return s3_error(
            world,
            403,
            "AccessDenied",
            "Request has expired",
            **{
                "X-Amz-Expires": str(expires),
                "Expires": (issued + timedelta(seconds=expires)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )
    expected = _signature(
        world, key, params.get("X-Amz-Date", ""), str(expires), params.get("X-Amz-Credential", "")
    )
    if method.upper() != "GET" or not hmac.compare_digest(expected, params.get("X-Amz-Signature", "")):
        return s3_error(
            world,
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )
    found = _KEY_RE.fullmatch(key)
    if found is None or date.fromisoformat(found["day"]) > catalog_date(world):
        return s3_error(world, 404, "NoSuchKey", "The specified key does not exist.", Key=key.lstrip("/"))
    day, scale = date.fromisoformat(found["day"]), catalog_scale(world)
    headers_out = {
        "Last-Modified": f"{day:%a, %d %b %Y} {SNAPSHOT_TIME} GMT",
        "Accept-Ranges": "bytes",
    }
    return _object_reply(world, day, scale, headers_out)


def _object_reply(world: World, day: date, scale: float, headers: dict[str, str]) -> Reply:
    """The snapshot as a stream with its size and single-part ETag (the quoted hex MD5 of the object).

    The first download of an object generates it once into a temporary file, hashing on the way, and
    sends that file; the digest and size are then remembered per (day, scale), so later downloads
    stream straight from the generator and nothing is hashed twice."""
    key = (day, scale)
    with world.lock:
        known: dict[tuple[date, float], tuple[str, int]] = world.state.setdefault(_DIGESTS_KEY, {})
        locks: dict[tuple[date, float], threading.Lock] = world.state.setdefault(_DIGEST_LOCKS_KEY, {})
        lock = locks.setdefault(key, threading.Lock())
    with lock:  # a concurrent first download waits for the digest instead of computing it again
        with world.lock:
            cached = known.get(key)
        if cached is None:
            md5 = hashlib.md5(usedforsecurity=False)
            spool = Spool.of(b"", catalog_chunks(world, day, scale), md5)
            cached = (md5.hexdigest(), spool.size)
            with world.lock:
                known[key] = cached
            chunks: Iterator[bytes] = spool.stream([(0, spool.size)])
        else:
            chunks = catalog_chunks(world, day, scale)
    reply = Reply.chunks(chunks, "binary/octet-stream")
    reply.headers.update({"ETag": f'"{cached[0]}"', "Content-Length": str(cached[1]), **headers})
    return reply
