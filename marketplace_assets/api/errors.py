"""Errors the Marketplace client raises, and the redaction every message passes through.

Every message names the endpoint, says what the service answered and what to do about it. Messages are
built from the request's method and URL and the service's own message, never from our headers. The
service's message is still untrusted: a gateway may echo the request's headers back in an error body,
so `Redactor` removes the token in every form it travels in (raw, inside the Basic credentials'
base64, URL-encoded) and any `Authorization`, `Basic …` or `Bearer …` value, whoever's it is.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote

import httpx

# What a user should check for each non-retryable status.
_HINTS: dict[int, str] = {
    400: "The service rejected the request's parameters; check the report's filters and date range.",
    401: (
        "The credentials were refused: check MARKETPLACE_EMAIL and MARKETPLACE_API_TOKEN "
        "(an Atlassian account email and an API token created for that account)."
    ),
    403: (
        "The account may not read this developer space: check MARKETPLACE_DEVELOPER_ID and that the "
        "account has the 'View sales reports' permission for that vendor."
    ),
    409: "The resource changed since it was read (a conflicting edit); read it again, then re-apply.",
    404: (
        "The endpoint does not exist at this base URL: check MARKETPLACE_BASE_URL "
        "(default https://api.atlassian.com/marketplace) and MARKETPLACE_DEVELOPER_ID."
    ),
}


MASK = "***"
# `Authorization: <anything>` as a header line, a JSON member or a key=value pair: mask the value.
_AUTHORIZATION = re.compile(
    r"""(?ix)(\b(?:proxy-)?authorization\b["']?\s*[:=]\s*["']?)
    ((?:basic|bearer|digest|negotiate|token)\s+[^\s"',;}\]]+|[^\s"',;}\]]+)"""
)
# `Basic <credentials>` / `Bearer <token>` anywhere else (a header echoed without its name).
_SCHEME_VALUE = re.compile(r"(?i)\b(basic|bearer)(\s+)[A-Za-z0-9+/=._~-]{8,}")


def secret_forms(email: str, token: str) -> tuple[str, ...]:
    """Every form the credentials can appear in: the token raw and URL-encoded, and the base64 of
    `email:token` that a Basic Authorization header carries (padded, unpadded and URL-safe)."""
    if not token:
        return ()
    pair = f"{email}:{token}".encode()
    encoded = {base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()}
    forms = {token, quote(token, safe=""), *encoded, *(e.rstrip("=") for e in encoded)}
    return tuple(sorted((f for f in forms if len(f) >= 4), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without any registered secret and without any Authorization, Basic or Bearer value."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + MASK, text)
    return _SCHEME_VALUE.sub(lambda m: m.group(1) + m.group(2) + MASK, text)


def service_message(response: httpx.Response) -> str:
    """The service's own explanation, from a JSON error body if there is one, else the body's start."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, httpx.ResponseNotRead):
        return response.text[:300].strip() if response.is_stream_consumed else ""
    if isinstance(body, dict):
        for key in ("message", "error_description", "error", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
    return json.dumps(body)[:300]


def describe_request(request: httpx.Request) -> str:
    """`GET https://host/path?query` — the endpoint as a user would paste it, never with credentials."""
    return f"{request.method} {request.url.copy_with(username=None, password=None)}"


class MarketplaceError(Exception):
    """Base class for every error the Marketplace client raises."""


class MarketplaceApiError(MarketplaceError):
    """The service answered a status that retrying will not fix (400, 401, 403, 404, ...)."""

    def __init__(self, endpoint: str, status: int, message: str) -> None:
        self.endpoint = endpoint
        self.status = status
        self.service_message = message
        hint = _HINTS.get(status, "This status is not retried; see the service's message.")
        # The service's own sentence usually ends with a period already: never print two.
        detail = f": {message.strip().rstrip('.')}" if message.strip() else ""
        super().__init__(f"{endpoint} answered HTTP {status}{detail}. {hint}")


class MarketplaceUnavailableError(MarketplaceError):
    """Retryable failures persisted through every attempt."""

    def __init__(self, endpoint: str, attempts: int, last_problem: str) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        super().__init__(
            f"{endpoint} still failed after {attempts} attempts (last: {last_problem}). The Marketplace API "
            "may be overloaded or down; re-run later, or narrow the date range if it answers 5xx on "
            "large ranges."
        )


class ReportShapeError(MarketplaceError):
    """A response that is not the documented shape at all."""

    def __init__(self, report: str, problem: str) -> None:
        self.report = report
        super().__init__(
            f"Report {report}: the response is not the documented shape ({problem}). "
            "The API may have changed; please report this with the endpoint and partition."
        )


class UnexpectedContentError(MarketplaceError):
    """A 200 whose body is not what the API sends: an HTML page from a proxy, a login form, ..."""

    def __init__(self, endpoint: str, content_type: str, first_bytes: str) -> None:
        self.endpoint = endpoint
        super().__init__(
            f"{endpoint} answered HTTP 200 with HTML ({content_type or 'no Content-Type'}), not the API's "
            f"JSON: a proxy, firewall or login page answered instead of the Marketplace API. It began: "
            f"{first_bytes!r}. Check MARKETPLACE_BASE_URL and any HTTP proxy between this machine and "
            "the API (HTTPS_PROXY, a corporate gateway)."
        )


class IncompleteDataError(MarketplaceError):
    """The API says more records exist than were received: a short page, a short or truncated file."""

    def __init__(
        self, source: str, problem: str, *, expected: int | None = None, received: int | None = None
    ) -> None:
        self.source = source
        self.expected = expected
        self.received = received
        counts = f" Expected {expected} record(s), received {received}." if expected is not None else ""
        super().__init__(
            f"{source}: incomplete data: {problem}.{counts} Nothing was written. Re-run; if it persists, "
            "the service (or a proxy in between) is cutting responses short."
        )


class ConflictingRecordsError(MarketplaceError):
    """Two records with one identity but different values: which one is right cannot be told."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(
            f"{source}: conflicting records: {problem}. Nothing was written. Re-run later (the service may "
            "be mid-revision); if it persists, report the key to Atlassian."
        )


class TypeDriftError(MarketplaceError):
    """A field arrived with another type than the one stored or declared for it."""

    def __init__(self, report: str, field: str, expected: str, received: str, example: object) -> None:
        self.report, self.field, self.expected, self.received = report, field, expected, received
        where = f"Report {report}: f" if report else "F"
        super().__init__(
            f"{where}ield {field!r} changed type: expected {expected}, received {received} "
            f"(e.g. {example!r}). Nothing was written. The API sent a value of another type for this field; "
            "if the change is genuine, alter the warehouse column, otherwise report it to Atlassian."
        )


class Retryable(Exception):
    """Internal: a response that should be retried (429, 502, 503, 504, or a broken body)."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after
