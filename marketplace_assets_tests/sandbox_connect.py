"""How the sandbox tests (`test_sandbox.py`, `test_sandbox_control.py`) reach the simulated Marketplace:
a fresh sandbox per test, and a client of it over the in-process transport and over a real loopback
server (`connect` runs each test both ways).

The fixtures are declared with `name=`: a module imports `connect_fixture`, `sandbox_fixture` and
`client_fixture`, its tests ask for `connect`, `sb` and `client`, and no test's argument shadows an
import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from marketplace_assets.sandbox import Sandbox, serve

AUTH = ("sandbox@example.com", "sandbox-token")
DEV = "/rest/3/reporting/developer-space/sandbox-developer"
EVALS = f"{DEV}/evaluations"
FEEDBACK = f"{DEV}/feedback/details"
LISTINGS = "/rest/3/product-listing/developer-space/sandbox-developer"


@pytest.fixture(name="connect", params=["inprocess", "server"])
def connect_fixture(request: pytest.FixtureRequest) -> Iterator[Callable[..., httpx.Client]]:
    """connect(sandbox, **client_kwargs) -> an httpx.Client reaching that sandbox one way or the other."""
    stack = ExitStack()

    def _connect(sandbox: Sandbox, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("auth", AUTH)
        if request.param == "inprocess":
            client = httpx.Client(
                transport=sandbox.transport(), base_url="https://sandbox.invalid/marketplace", **kwargs
            )
        else:
            url = stack.enter_context(serve(sandbox, port=0))
            client = httpx.Client(base_url=f"{url}/marketplace", **kwargs)
        return stack.enter_context(client)

    _connect.mode = request.param
    yield _connect
    stack.close()


@pytest.fixture(name="sb")
def sandbox_fixture() -> Sandbox:
    return Sandbox()


@pytest.fixture(name="client")
def client_fixture(connect: Callable[..., httpx.Client], sb: Sandbox) -> httpx.Client:
    return connect(sb)
