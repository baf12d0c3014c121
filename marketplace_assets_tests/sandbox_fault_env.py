"""What the sandbox fault tests (`test_sandbox_faults.py`, `test_sandbox_attribution_shape.py`) share: a
sandbox pinned to a clock whose exports are ready at once, reached in-process or over the real loopback
server (`Env`), with its fault rules installed the same way as JSON; and reading an answer whole.

The fixtures are declared with `name=`: a module imports `sandbox_fixture`, `env_fixture` and
`local_fixture`, its tests ask for `sb`, `env` and `local`, and no test's argument shadows an import.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date

import httpx
import pytest

from marketplace_assets.sandbox import FaultRule, Sandbox, serve
from marketplace_assets.sandbox.exports import configure_exports
from marketplace_assets.sandbox.licensing_data import set_clock

AUTH = ("sandbox@example.com", "sandbox-token")
DEV = "/rest/3/reporting/developer-space/sandbox-developer"
CLOCK = date(2025, 6, 30)


@dataclass
class Env:
    """One way of reaching a sandbox: `api` authenticates, `plain` follows absolute (object) links,
    `faults` installs rules given as the JSON fields posted to /_sandbox/faults."""

    sb: Sandbox
    api: httpx.Client
    plain: httpx.Client
    faults: Callable[..., None]
    mode: str


def open_env(sb: Sandbox, mode: str, stack: ExitStack) -> Env:
    if mode == "inprocess":
        api = httpx.Client(
            transport=sb.transport(), base_url="https://sandbox.invalid/marketplace", auth=AUTH
        )
        plain = httpx.Client(transport=sb.transport())

        def faults(*rules: dict) -> None:
            sb.faults.extend(FaultRule.from_dict(rule) for rule in rules)

    else:
        url = stack.enter_context(serve(sb, port=0))
        api = httpx.Client(base_url=f"{url}/marketplace", auth=AUTH)
        plain = httpx.Client()
        control = stack.enter_context(httpx.Client(base_url=url))

        def faults(*rules: dict) -> None:
            answer = control.post("/_sandbox/faults", json=list(rules))
            assert answer.status_code == 200, answer.text

    return Env(sb, stack.enter_context(api), stack.enter_context(plain), faults, mode)


@pytest.fixture(name="sb")
def sandbox_fixture() -> Sandbox:
    sandbox = Sandbox()
    set_clock(sandbox, CLOCK)
    configure_exports(sandbox, polls_to_complete=0)
    return sandbox


@pytest.fixture(name="env", params=["inprocess", "server"])
def env_fixture(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[Env]:
    with ExitStack() as stack:
        yield open_env(sb, request.param, stack)


@pytest.fixture(name="local")
def local_fixture(sb: Sandbox) -> Iterator[Env]:
    with ExitStack() as stack:
        yield open_env(sb, "inprocess", stack)


def ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, response.text
    return response


def complete(response: httpx.Response) -> bytes:
    """The body, checked to be what the head announced (the client read it to its end)."""
    body = ok(response).content
    if "content-length" in response.headers:
        assert int(response.headers["content-length"]) == len(body)
    else:
        assert response.headers["transfer-encoding"] == "chunked"
    return body


def csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
