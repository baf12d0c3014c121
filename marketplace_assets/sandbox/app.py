"""The simulated Marketplace: routing, auth, faults and request statistics.

`Sandbox.respond()` is the one code path for both ways of reaching it: the in-process httpx transport
(`Sandbox.handle` / `Sandbox.transport()`) and the loopback HTTP server (`server.serve`). Fault rules
apply there: status, slow, echo_headers and html answer before the API is asked; malformed, drop and
the body rewrites of `body_faults` change the API's answer.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from marketplace_assets.sandbox.body_faults import BODY_FAULTS, GATEWAY_FAULTS, gateway_answer, rewrite_body
from marketplace_assets.sandbox.data import App, World
from marketplace_assets.sandbox.endpoints import ROUTES
from marketplace_assets.sandbox.faults import FaultSet
from marketplace_assets.sandbox.object_store import answer_object
from marketplace_assets.sandbox.outcome import Outcome
from marketplace_assets.sandbox.routing import ApiError, ApiRequest, Route, api_path, find_route

HREF_STYLES = ("rest3", "bare")


class Sandbox:
    """A deterministic fake of the Marketplace REST API v3.

    All numbers derive from `seed`; `volume` scales the number of apps (round(3 * volume)) and the
    per-day counts. Requests must carry HTTP Basic `email`/`token` and address `developer_id`.
    `href_style="bare"` writes links without the leading `/rest/3`, as the service sometimes does.
    """

    def __init__(
        self,
        *,
        seed: int = 7,
        volume: float = 1.0,
        developer_id: str = "sandbox-developer",
        email: str = "sandbox@example.com",
        token: str = "sandbox-token",
        href_style: str = "rest3",
        routes: Sequence[Route] = ROUTES,
    ) -> None:
        if href_style not in HREF_STYLES:
            raise ValueError(f"href_style must be one of {HREF_STYLES}, got {href_style!r}")
        if volume <= 0:
            raise ValueError(f"volume must be > 0, got {volume!r}")
        self.world = World.create(seed, float(volume), developer_id, href_style)
        self.email = email
        self._token = token
        self.routes: list[Route] = list(routes)
        self.faults = FaultSet()
        self._lock = threading.Lock()
        self._requests = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._by_path: dict[str, int] = {}

    def __repr__(self) -> str:
        w = self.world
        return (
            f"Sandbox(seed={w.seed}, volume={w.volume}, developer_id={w.developer_id!r}, apps={len(w.apps)})"
        )

    @property
    def apps(self) -> list[App]:
        return list(self.world.apps)

    @property
    def seed(self) -> int:
        return self.world.seed

    @property
    def volume(self) -> float:
        return self.world.volume

    @property
    def developer_id(self) -> str:
        return self.world.developer_id

    # --- in-process transport --------------------------------------------------------------------

    def transport(self) -> httpx.BaseTransport:
        """An httpx transport that answers from this sandbox without any network."""
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout") or {}
        outcome = self.respond(
            request.method,
            request.url.raw_path.decode("ascii"),
            {key.lower(): value for key, value in request.headers.items()},
            request.read(),
            read_timeout=timeout.get("read"),
        )
        if outcome.timed_out:
            raise httpx.ReadTimeout("The read operation timed out (sandbox slow fault)", request=request)
        if outcome.drop:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body (sandbox drop fault)",
                request=request,
            )
        content = outcome.body if outcome.stream is None else iter(outcome.stream)
        return httpx.Response(outcome.status, headers=outcome.headers, content=content, request=request)

    # --- the shared request path -----------------------------------------------------------------

    def respond(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        read_timeout: float | None = None,
    ) -> Outcome:
        """Answer one API request. `target` is the raw request target (path and query, or a full URL);
        `headers` must have lower-case names. Counted in stats, subject to faults."""
        parts = urlsplit(target)
        path = unquote(parts.path)
        key = api_path(path) or path
        with self._lock:
            self._requests += 1
            self._by_path[key] = self._by_path.get(key, 0) + 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return self._respond(method.upper(), path, parts.query, headers, body, read_timeout)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _respond(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        read_timeout: float | None,
    ) -> Outcome:
        rule = self.faults.take(method, path)
        extra = [("Retry-After", rule.retry_after)] if rule and rule.retry_after is not None else []
        if rule is not None and rule.kind == "status":
            status = rule.http_status
            return Outcome.error(status, rule.body or _REASONS.get(status, "Sandbox fault"), extra)
        if rule is not None and rule.kind in GATEWAY_FAULTS:
            return gateway_answer(rule, method, path, headers, extra)
        if rule is not None and rule.kind == "slow":
            if read_timeout is not None and rule.delay > read_timeout:
                time.sleep(read_timeout)
                return Outcome(0, timed_out=True)
            time.sleep(rule.delay)
        outcome = self._answer(method, path, query, headers, body)
        outcome.headers.extend(extra)
        if rule is not None and rule.kind == "malformed":
            if outcome.stream is not None:
                outcome.body, outcome.stream = b"".join(outcome.stream), None
            broken = (
                rule.body.encode()
                if rule.body is not None
                else outcome.body[: max(1, len(outcome.body) // 2)]
            )
            return Outcome(200, [("Content-Type", "application/json"), *extra], broken)
        if rule is not None and rule.kind == "drop":
            outcome.drop = True
        if rule is not None and rule.kind in BODY_FAULTS:
            try:
                rewrite_body(rule, outcome)
            except Exception as error:  # the body was made while spooling it: a sandbox bug shows here
                return Outcome.error(500, f"Sandbox internal error: {type(error).__name__}: {error}")
        return outcome

    def _answer(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        # The object store (presigned catalog links) sits beside the API: no Basic auth, its own rules.
        stored = answer_object(self.world, method, path, query, headers)
        if stored is not None:
            return Outcome.of(stored)
        if not self._authorized(headers.get("authorization", "")):
            return Outcome.error(
                401,
                "Client must be authenticated to access this resource.",
                [("WWW-Authenticate", 'Basic realm="Atlassian Marketplace"')],
            )
        try:
            api = api_path(path)
            if api is None:
                raise ApiError(404, f"No resource found at {path}")
            route, params = find_route(self.routes, method, api)
            developer_id = params.get("developerId")
            if developer_id is not None and developer_id != self.world.developer_id:
                raise ApiError(403, f"You do not have permission to access developer space '{developer_id}'.")
            request = ApiRequest(method, api, parse_qsl(query, keep_blank_values=True), headers, body, params)
            return Outcome.of(route.handler(self.world, request))
        except ApiError as error:
            return Outcome.error(error.status, error.message)
        except Exception as error:  # a sandbox bug: answer like a server error, but say what happened
            return Outcome.error(500, f"Sandbox internal error: {type(error).__name__}: {error}")

    def _authorized(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        email, _, token = decoded.partition(":")
        return hmac.compare_digest(email.encode(), self.email.encode()) and hmac.compare_digest(
            token.encode(), self._token.encode()
        )

    # --- statistics ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """API requests seen (control endpoints excluded), the peak concurrency, and counts per path."""
        with self._lock:
            return {
                "requests": self._requests,
                "max_in_flight": self._max_in_flight,
                "by_path": dict(self._by_path),
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._requests = 0
            self._max_in_flight = self._in_flight
            self._by_path = {}


_REASONS = {
    400: "Bad request",
    429: "Rate limit exceeded. Retry after the time given in the Retry-After header.",
    500: "Internal server error",
    502: "Bad gateway: the service is temporarily unavailable",
    503: "Service unavailable",
    504: "Gateway timeout",
}
