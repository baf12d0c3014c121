"""The HTTP client every report goes through: auth, retries, pagination and streaming downloads.

One `MarketplaceClient` is made per run by `MarketplaceResource` and closed after it. It is thread-safe
(httpx.Client is), which is what lets offset pages be fetched concurrently.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import tenacity

from marketplace_assets.api.errors import (
    IncompleteDataError,
    MarketplaceApiError,
    MarketplaceUnavailableError,
    Retryable,
    UnexpectedContentError,
    describe_request,
    redact,
    secret_forms,
    service_message,
)
from marketplace_assets.api.responses import next_href, offset_of, records_of, verify_download
from marketplace_assets.constants import DEFAULT_BASE_URL

# The service clamps `limit` to 50 on every offset-paged endpoint; asking for more only hides that
# (docs/api-notes.md, "Requests: arrays, limits and paging").
OFFSET_PAGE_LIMIT = 50
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Transport failures worth another attempt: timeouts, refused/reset connections, bodies cut short.
RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

Params = Mapping[str, Any]
LOG = logging.getLogger("marketplace_assets.api")


@dataclass(frozen=True)
class RetrySettings:
    """How hard to try. Backoff is exponential with jitter, capped; `Retry-After` wins when given."""

    max_attempts: int = 6
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    # A Retry-After longer than this is still honoured, but only up to this many seconds per wait.
    retry_after_max: float = 300.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def validate_range(start: date, end: date) -> None:
    """The API answers a reversed range with an empty result instead of an error; refuse it here
    (docs/api-notes.md, "Windows and aggregation")."""
    if start > end:
        raise ValueError(
            f"startDate {start.isoformat()} is after endDate {end.isoformat()}: the Marketplace API would "
            "silently return nothing. Pass a range whose start is on or before its end."
        )


class MarketplaceClient:
    """Talks to the Marketplace REST API v3 (or anything that speaks it, such as the sandbox)."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        email: str = "",
        api_token: str = "",
        *,
        transport: httpx.BaseTransport | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        max_concurrency: int = 4,
        retry: RetrySettings | None = None,
        logger: logging.Logger | Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_concurrency = max(1, max_concurrency)
        self.retry = retry or RetrySettings()
        self.log = logger or LOG
        self._sleep = sleep
        self._secrets = secret_forms(email, api_token)
        self._requests = 0
        self._lock = threading.Lock()
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        limits = httpx.Limits(max_connections=self.max_concurrency + 2, max_keepalive_connections=8)
        auth = httpx.BasicAuth(email, api_token) if api_token else None
        self._http = httpx.Client(auth=auth, timeout=timeout, limits=limits, transport=transport)
        # Presigned object-store links must not receive the Marketplace Authorization header.
        self._anonymous = httpx.Client(timeout=timeout, limits=limits, transport=transport)

    # -- lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()
        self._anonymous.close()

    def __enter__(self) -> MarketplaceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def redact(self, text: str) -> str:
        """`text` with this client's credentials (in any encoding) and any Authorization value masked."""
        return redact(text, self._secrets)

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self._requests

    # -- URLs ------------------------------------------------------------------------------------------
    def url(self, target: str) -> str:
        """Resolve a path under /rest/3, or an href the API returned, against the base URL.

        Hrefs come back as `/rest/3/...`, and sometimes without the `/rest/3` prefix; both resolve to the
        same URL. Absolute URLs (presigned links) are used as they are.
        """
        if target.startswith(("http://", "https://")):
            return target
        target = target.lstrip("/")
        if target.startswith("rest/"):
            return f"{self.base_url}/{target}"
        return f"{self.base_url}/rest/3/{target}"

    # -- requests --------------------------------------------------------------------------------------
    def get_json(self, target: str, params: Params | None = None) -> Any:
        return self.request_json("GET", target, params=params)

    def request_json(
        self, method: str, target: str, *, params: Params | None = None, json_body: Any = None
    ) -> Any:
        """One API call with retries; returns the decoded JSON body."""
        _check_date_range(params)
        request = self._http.build_request(
            method,
            self.url(target),
            params=_query(params),
            json=json_body,
            headers={"Accept": "application/json"},
        )

        def attempt() -> Any:
            response = self._send(self._http, request, stream=False)
            try:
                return response.json()
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self._refuse_html(request, response.headers.get("Content-Type", ""), response.content[:200])
                # A body cut or garbled in transit is as transient as a dropped connection.
                raise Retryable(
                    f"the body is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
                ) from exc

        return self._with_retries(request, attempt)

    def download(
        self, target: str, *, params: Params | None = None, authenticated: bool = True, suffix: str = ""
    ) -> Path:
        """Stream a file to a temporary path (never the whole body in memory) and return the path.

        The caller owns the file and deletes it. A download interrupted mid-body starts again from the
        beginning on the next attempt. `authenticated=False` is for presigned links, which must not get
        the Marketplace credentials.
        """
        client = self._http if authenticated else self._anonymous
        request = client.build_request("GET", self.url(target), params=_query(params))

        def attempt() -> Path:
            response = self._send(client, request, stream=True)
            fd, name = tempfile.mkstemp(prefix="marketplace-", suffix=suffix)
            path = Path(name)
            try:
                with os.fdopen(fd, "wb") as out:
                    received, digest = self._receive(request, response, out)
                verify_download(response, received, digest)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            finally:
                response.close()
            return path

        return self._with_retries(request, attempt)

    def _receive(self, request: httpx.Request, response: httpx.Response, out: Any) -> tuple[int, Any]:
        """Write the body to `out`; return its size and MD5 (to compare with an S3-style ETag)."""
        received, digest, first = 0, hashlib.md5(usedforsecurity=False), True
        for chunk in response.iter_bytes(chunk_size=1 << 20):
            if first and chunk:
                self._refuse_html(request, response.headers.get("Content-Type", ""), chunk[:200])
                first = False
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
        return received, digest

    def _refuse_html(self, request: httpx.Request, content_type: str, head: bytes) -> None:
        """A 200 that is an HTML page (a proxy's or a login form) will not turn into data by retrying."""
        text = head.decode("utf-8", "replace").lstrip()
        if "html" in content_type.lower() or text[:15].lower().startswith(("<!doctype html", "<html")):
            raise UnexpectedContentError(describe_request(request), content_type, self.redact(text[:120]))

    def _send(self, client: httpx.Client, request: httpx.Request, *, stream: bool) -> httpx.Response:
        with self._lock:
            self._requests += 1
        response = client.send(request, stream=stream)
        if response.is_success:
            return response
        if stream:
            response.read()
            response.close()
        if response.status_code in RETRYABLE_STATUSES:
            raise Retryable(
                f"HTTP {response.status_code}", parse_retry_after(response.headers.get("Retry-After"))
            )
        raise MarketplaceApiError(
            describe_request(request), response.status_code, redact(service_message(response), self._secrets)
        )

    def _with_retries(self, request: httpx.Request, attempt: Callable[[], Any]) -> Any:
        endpoint = describe_request(request)
        # Jitter as large as the first wait spreads retries of concurrent page fetches apart.
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.retry.backoff_initial,
            jitter=self.retry.backoff_initial,
            max=self.retry.backoff_max,
        )

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, Retryable) and error.retry_after is not None:
                return min(error.retry_after, self.retry.retry_after_max)
            return backoff(state)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait_s = state.next_action.sleep if state.next_action else 0.0
            self.log.warning(
                redact(
                    f"{endpoint}: {_problem(error)}; retrying in {wait_s:.1f}s "
                    f"(attempt {state.attempt_number + 1} of {self.retry.max_attempts})",
                    self._secrets,
                )
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry.max_attempts),
            wait=wait,
            retry=tenacity.retry_if_exception_type((Retryable, *RETRYABLE_ERRORS)),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=False,
        )
        try:
            return retrying(attempt)
        except tenacity.RetryError as exc:
            last = exc.last_attempt.exception()
            raise MarketplaceUnavailableError(
                endpoint, self.retry.max_attempts, redact(_problem(last), self._secrets)
            ) from None

    # -- pagination ------------------------------------------------------------------------------------
    def get_offset_paged(self, target: str, params: Params | None, records_key: str) -> list[dict[str, Any]]:
        """Every record of an offset-paged list (`_links.next`, `totalCount`).

        When the first page gives `totalCount`, the remaining pages are fetched concurrently (bounded by
        `max_concurrency`) by setting `offset` on the first page's next href; otherwise `_links.next` is
        followed one page at a time until it is absent. Fewer records than `totalCount` raise
        `IncompleteDataError`: a page cut short is lost data, never a smaller result.
        """
        first = self.get_json(target, {**(params or {}), "offset": 0, "limit": OFFSET_PAGE_LIMIT})
        records = records_of(first, records_key, target)
        next_link = next_href(first)
        total = first.get("totalCount") if isinstance(first, dict) else None
        if next_link and isinstance(total, int) and records:
            next_url = httpx.URL(self.url(next_link))
            # The service's page size is where its next link starts (it clamps `limit`); a first page
            # shorter than that was cut short, and offsets stepped by its length would overlap.
            page_size = offset_of(next_url) or len(records)
            offsets = list(range(page_size, total, page_size))
            urls = [str(next_url.copy_set_param("offset", str(o))) for o in offsets]
            with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
                pages = list(pool.map(self.get_json, urls))
            for page in pages:
                records.extend(records_of(page, records_key, target))
            # Rows added while we paged: carry on from where the last page points, one page at a time.
            next_link = next_href(pages[-1]) if pages else None
        seen: set[str] = set()
        while next_link:
            if next_link in seen:
                raise MarketplaceUnavailableError(target, 1, f"pagination loops on {next_link}")
            seen.add(next_link)
            page = self.get_json(next_link)
            records.extend(records_of(page, records_key, target))
            next_link = next_href(page)
        if isinstance(total, int) and len(records) < total:
            raise IncompleteDataError(
                f"GET {self.url(target)}",
                f"the pages held fewer records than the list's totalCount ({total})",
                expected=total,
                received=len(records),
            )
        return records

    def count(self, target: str, params: Params | None) -> int | None:
        """The list's `totalCount` for these filters, from one record's page; None when it has none."""
        page = self.get_json(target, {**(params or {}), "offset": 0, "limit": 1})
        total = page.get("totalCount") if isinstance(page, dict) else None
        return total if isinstance(total, int) and not isinstance(total, bool) else None

    def get_cursor_paged(
        self, target: str, params: Params | None, items_key: str = "items"
    ) -> list[dict[str, Any]]:
        """Every item of a cursor-paged list (`links.next` until absent), as the product-listing API has."""
        page = self.get_json(target, params)
        items = records_of(page, items_key, target)
        seen: set[str] = set()
        while (next_link := (page.get("links") or {}).get("next")) and next_link not in seen:
            seen.add(next_link)
            page = self.get_json(next_link)
            items.extend(records_of(page, items_key, target))
        return items


def _query(params: Params | None) -> list[tuple[str, str]] | None:
    """Query pairs with array values repeated (`productId=a&productId=b`), never comma-joined
    (docs/api-notes.md, "Requests: arrays, limits and paging")."""
    if not params:
        return None
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        values: Iterable[Any] = value if isinstance(value, list | tuple | set | frozenset) else [value]
        for item in values:
            if item is None:
                continue
            if isinstance(item, bool):
                item = "true" if item else "false"
            elif isinstance(item, date):
                item = item.isoformat()
            pairs.append((key, str(item)))
    return pairs


def _check_date_range(params: Params | None) -> None:
    if params and params.get("startDate") and params.get("endDate"):
        validate_range(*(date.fromisoformat(str(params[k])[:10]) for k in ("startDate", "endDate")))


def _problem(error: BaseException | None) -> str:
    if error is None:
        return "unknown failure"
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    return f"{type(error).__name__}: {error}" if not isinstance(error, Retryable) else str(error)
