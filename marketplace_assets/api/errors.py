"""Errors the Marketplace client raises.

Every message names the endpoint, says what the service answered and what to do about it. Messages are
built from the request's method and URL and the service's own message, never from headers, so the
Authorization header cannot leak; `redact` is applied on top for any secret the caller registered.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

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


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every registered secret in `text` with `***`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


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
        detail = f": {message}" if message else ""
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


class Retryable(Exception):
    """Internal: a response that should be retried (429, 502, 503, 504, or a broken body)."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after
