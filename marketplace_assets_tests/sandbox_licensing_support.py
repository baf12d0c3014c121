"""What the sandbox licensing tests (`test_sandbox_licensing.py`, `test_sandbox_licensing_exports.py`)
share: the licensing and sales paths, the sandbox clock they are pinned to, a fresh sandbox per test with
an in-process client, and reading a whole export as JSON.

The fixtures are declared with `name=`: a module imports `sandbox_fixture` and `client_fixture`, its tests
ask for `sb` and `client`, and no test's argument shadows an import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketplace_assets.sandbox import Sandbox
from marketplace_assets.sandbox.licensing_data import set_clock

AUTH = ("sandbox@example.com", "sandbox-token")
DEV = "/rest/3/reporting/developer-space/sandbox-developer"
LICENSES = f"{DEV}/licenses"
TRANSACTIONS = f"{DEV}/sales/transactions"
SAMPLES = Path(__file__).parent / "fixtures" / "samples"
CLOCK = date(2025, 6, 30)
NO_LINKS = frozenset({"_links"})


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture(name="sb")
def sandbox_fixture() -> Sandbox:
    sandbox = Sandbox()
    set_clock(sandbox, CLOCK)
    return sandbox


def connect(sandbox: Sandbox) -> httpx.Client:
    return httpx.Client(
        transport=sandbox.transport(), base_url="https://sandbox.invalid/marketplace", auth=AUTH
    )


@pytest.fixture(name="client")
def client_fixture(sb: Sandbox) -> Iterator[httpx.Client]:
    with connect(sb) as c:
        yield c


def ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, response.text
    return response


def export_json(client: httpx.Client, path: str, params: Iterable[tuple[str, Any]] = ()) -> list[dict]:
    return ok(client.get(f"{path}/export", params=[*params, ("accept", "json")])).json()
