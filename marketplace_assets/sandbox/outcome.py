"""The transport-neutral answer of the sandbox (`Outcome`), shared by the app, the body faults and the
HTTP server."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from marketplace_assets.sandbox.routing import Reply, error_body


@dataclass
class Outcome:
    """A transport-neutral answer.

    stream: the body as lazily produced chunks (then `body` is unused); see `Reply.stream`. The server
        sends it chunked, or as is when `headers` hold a Content-Length.
    drop: send the head and part of the body, then close the connection.
    timed_out: (in-process only) a slow fault outlasted the client's read timeout.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    drop: bool = False
    timed_out: bool = False
    stream: Iterable[bytes] | None = None

    @classmethod
    def of(cls, reply: Reply) -> Outcome:
        headers = [("Content-Type", reply.content_type), *reply.headers.items()]
        if reply.stream is not None:
            return cls(reply.status, headers, stream=reply.stream)
        return cls(reply.status, headers, reply.encode())

    @classmethod
    def error(cls, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> Outcome:
        outcome = cls.of(Reply(error_body(message), status))
        outcome.headers.extend(headers)
        return outcome

    def header(self, name: str) -> str | None:
        """The first value of a response header (case-insensitive name), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def set_header(self, name: str, value: str) -> None:
        """Replace every value of a header with one."""
        wanted = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != wanted] + [(name, value)]
