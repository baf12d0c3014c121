"""Request/response plumbing shared by every simulated endpoint.

An endpoint is a `Route`: an HTTP method, a regular expression over the path *after* the API root
(`/rest/3/...`), and a handler `(world, request) -> Reply`. Handlers raise `ApiError` for 4xx answers;
the dispatcher turns it into the JSON `{"message": ...}` body the real service sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from marketplace_assets.sandbox.data import World

REST_ROOT = "/rest/3/"
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ApiError(Exception):
    """An error answer: `status` with body `{"message": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Reply:
    """What a handler answers. `body` is JSON-serialised unless it is already bytes.

    `stream`, when set, is the body instead: chunks of bytes produced lazily while the answer is sent
    (chunked transfer encoding on the server, a streamed httpx.Response in-process), so a large file
    never has to be held in memory. `Reply.chunks(...)` builds one.
    """

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    stream: Iterable[bytes] | None = None

    @classmethod
    def chunks(cls, stream: Iterable[bytes], content_type: str, status: int = 200) -> Reply:
        return cls(None, status, content_type=content_type, stream=stream)

    def encode(self) -> bytes:
        if self.stream is not None:
            return b"".join(self.stream)
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


@dataclass
class ApiRequest:
    """A parsed request as handlers see it.

    path: the path from `/rest/3/` on (any prefix such as `/marketplace` is stripped).
    query: the query parameters in order; repeated parameters stay repeated.
    params: the named groups of the matched route pattern.
    """

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)

    def one(self, name: str, default: str | None = None) -> str | None:
        """The first value of a query parameter (as a scalar parameter is read)."""
        for key, value in self.query:
            if key == name:
                return value
        return default

    def many(self, name: str) -> list[str]:
        """Every value of a repeated array parameter. A comma-separated value stays one literal value."""
        return [value for key, value in self.query if key == name]

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.one(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"Invalid value '{raw}' for parameter '{name}': must be an integer") from None
        if value < minimum:
            raise ApiError(400, f"Invalid value '{raw}' for parameter '{name}': must be >= {minimum}")
        return value

    def page(self, default_limit: int = 10, max_limit: int = 50) -> tuple[int, int]:
        """(offset, limit) of an offset-paged request; `limit` is clamped silently, as the service does."""
        return self.integer("offset", 0), min(self.integer("limit", default_limit, minimum=1), max_limit)

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self.one(name)
        if raw is None or raw == "":
            return default
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise ApiError(400, f"Invalid value '{raw}' for parameter '{name}': must be true or false")

    def day(self, name: str) -> date | None:
        """A `YYYY-MM-DD` parameter; anything else is a 400 like the real service."""
        raw = self.one(name)
        if raw is None or raw == "":
            return None
        if not _DATE_RE.match(raw):
            raise ApiError(400, f"Invalid date '{raw}' for parameter '{name}': expected format yyyy-MM-dd")
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ApiError(400, f"Invalid date '{raw}' for parameter '{name}'") from None

    def choice(self, name: str, allowed: Sequence[str], default: str) -> str:
        raw = self.one(name)
        if raw is None or raw == "":
            return default
        if raw.lower() not in allowed:
            raise ApiError(
                400, f"Invalid value '{raw}' for parameter '{name}': must be one of {list(allowed)}"
            )
        return raw.lower()

    def query_without(self, *names: str) -> list[tuple[str, str]]:
        return [(key, value) for key, value in self.query if key not in names]


Handler = Callable[["World", ApiRequest], Reply]


@dataclass(frozen=True)
class Route:
    """One endpoint: `pattern` is matched (fully) against the path from `/rest/3/` on."""

    method: str
    pattern: str
    handler: Handler
    name: str = ""

    def match(self, path: str) -> dict[str, str] | None:
        found = re.fullmatch(self.pattern, path)
        return None if found is None else found.groupdict()


def find_route(routes: Sequence[Route], method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for a request, or ApiError 404 (no such path) / 405 (path exists, other method)."""
    path_matched = False
    for route in routes:
        params = route.match(path)
        if params is None:
            continue
        path_matched = True
        if route.method == method.upper():
            return route, params
    if path_matched:
        raise ApiError(405, f"Method {method.upper()} is not allowed on {path}")
    raise ApiError(404, f"No resource found at {path}")


def api_path(raw_path: str) -> str | None:
    """The path from `/rest/3/` on, whatever precedes it (`/marketplace`, nothing, a proxy prefix)."""
    index = raw_path.find(REST_ROOT)
    if index < 0:
        return None
    return raw_path[index:]


def href(world: World, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
    """A link as the service writes it: relative, from `/rest/3` (or without it for href_style=bare)."""
    if world.href_style == "bare" and path.startswith("/rest/3/"):
        path = path[len("/rest/3") :]
    return f"{path}?{urlencode(list(query))}" if query else path


def error_body(message: str) -> dict[str, str]:
    return {"message": message}
