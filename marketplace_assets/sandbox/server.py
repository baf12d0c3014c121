"""The sandbox as a real HTTP/1.1 server on loopback, for end-to-end tests.

Besides the API, the server answers a few control endpoints (never auth-checked, never counted):

    POST   /_sandbox/faults   JSON list (or one object) of FaultRule fields; appended in order
    GET    /_sandbox/faults   the active rules
    DELETE /_sandbox/faults   remove every rule
    GET    /_sandbox/stats    Sandbox.stats()
    POST   /_sandbox/reset    clear faults and stats
    GET    /_sandbox/clock    {"date": the licensing clock}
    POST   /_sandbox/clock    {"date": "YYYY-MM-DD"} (null: follow the real date) sets it
    GET    /_sandbox/exports  {"config": the async export settings, "exports": the export jobs}
    POST   /_sandbox/exports  JSON object of `configure_exports` settings (+ "reset": true)

Streamed answers (`Reply.stream`) go out as they are produced: with chunked transfer encoding, or as
is when the answer states its Content-Length (the object store, rewritten files).
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

from marketplace_assets.sandbox.app import Sandbox
from marketplace_assets.sandbox.exports import configure_exports_from_json, export_jobs
from marketplace_assets.sandbox.faults import FaultRule
from marketplace_assets.sandbox.licensing_data import clock, set_clock
from marketplace_assets.sandbox.outcome import Outcome

_CONTROL = re.compile(r"(?:^|/)_sandbox/(?P<name>faults|stats|reset|clock|exports)/?$")
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
        if name in ("clock", "exports") and method in ("GET", "POST"):
            return _licensing_control(sandbox, name, method, body)
        return Outcome.error(405, f"Method {method} is not allowed on /_sandbox/{name}")

    def _write(self, outcome: Outcome) -> None:
        self.send_response(outcome.status)
        for key, value in outcome.headers:
            self.send_header(key, value)
        if outcome.stream is not None:
            self._write_stream(outcome)
            return
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

    def _write_stream(self, outcome: Outcome) -> None:
        """Send a streamed body chunk by chunk as it is produced (a drop fault hangs up after one):
        chunked, unless the outcome states its Content-Length."""
        chunked = outcome.header("Content-Length") is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunks = iter(outcome.stream or ())
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                if outcome.drop:
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except Exception:  # the client left, or a sandbox bug mid-body: the head is gone, so hang up
            self.close_connection = True
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def _licensing_control(sandbox: Sandbox, name: str, method: str, body: bytes) -> Outcome:
    try:
        if name == "clock":
            if method == "POST":
                set_clock(sandbox, json.loads(body or b"{}").get("date"))
            return _json({"date": clock(sandbox.world).isoformat()})
        config = configure_exports_from_json(sandbox, json.loads(body or b"{}") if method == "POST" else {})
        return _json({"config": config, "exports": export_jobs(sandbox)})
    except (ValueError, TypeError, AttributeError) as error:
        return Outcome.error(400, f"Invalid /_sandbox/{name} request: {error}")


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
