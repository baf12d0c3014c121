"""The sandbox as a real HTTP/1.1 server on loopback, for end-to-end tests.

Besides the API, the server answers a few control endpoints (never auth-checked, never counted):

    POST   /_sandbox/faults   JSON list (or one object) of FaultRule fields; appended in order
    GET    /_sandbox/faults   the active rules
    DELETE /_sandbox/faults   remove every rule
    GET    /_sandbox/stats    Sandbox.stats()
    POST   /_sandbox/reset    clear faults and stats
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from marketplace_assets.sandbox.app import Outcome, Sandbox
from marketplace_assets.sandbox.faults import FaultRule

_CONTROL = re.compile(r"(?:^|/)_sandbox/(?P<name>faults|stats|reset)/?$")
_CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class SandboxServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one Sandbox (one thread per connection, daemon threads)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (read timeout, dropped connection) is expected here; stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out in one buffered write with TCP_NODELAY: separate small writes hit the
    # Nagle / delayed-ACK interaction and cost ~40 ms per request on loopback.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: SandboxServer

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            control = _CONTROL.search(parts.path)
            if control:
                self._write(self._control(control["name"], body))
                return
            headers = {key.lower(): value for key, value in self.headers.items()}
            self._write(self.server.sandbox.respond(self.command, target, headers, body))
        except _CONNECTION_ERRORS:
            self.close_connection = True

    def _control(self, name: str, body: bytes) -> Outcome:
        sandbox, method = self.server.sandbox, self.command
        if name == "stats" and method == "GET":
            return _json(sandbox.stats())
        if name == "reset" and method == "POST":
            sandbox.faults.clear()
            sandbox.reset_stats()
            return _json({"reset": True})
        if name == "faults" and method == "DELETE":
            sandbox.faults.clear()
            return _json({"faults": []})
        if name == "faults" and method == "POST":
            try:
                data = json.loads(body or b"[]")
                rules = [FaultRule.from_dict(item) for item in (data if isinstance(data, list) else [data])]
            except (ValueError, TypeError) as error:
                return Outcome.error(400, f"Invalid fault rules: {error}")
            sandbox.faults.extend(rules)
        if name == "faults" and method in ("GET", "POST"):
            return _json({"faults": [rule.to_dict() for rule in sandbox.faults.rules]})
        return Outcome.error(405, f"Method {method} is not allowed on /_sandbox/{name}")

    def _write(self, outcome: Outcome) -> None:
        self.send_response(outcome.status)
        for key, value in outcome.headers:
            self.send_header(key, value)
        body = outcome.body
        if not outcome.drop:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return
        # Promise more bytes than we send, send part of the body, then hang up: the client sees an
        # incomplete read, like a connection dropped by a proxy in the middle of a response.
        self.send_header("Content-Length", str(len(body) + 1024))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _json(data: Any) -> Outcome:
    return Outcome(200, [("Content-Type", "application/json")], json.dumps(data).encode())


@contextlib.contextmanager
def serve(sandbox: Sandbox, port: int = 0, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `sandbox` on host:port (0: a free port) from a daemon thread; yields the base URL.

    The URL has no path: the API answers under it both with and without `/marketplace`.
    """
    server = SandboxServer(sandbox, host, port)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox {server.url}", daemon=True
    )
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
