"""What the sandbox catalog tests (`test_sandbox_catalog.py`, `test_sandbox_partner_metrics.py`) share: a
fresh sandbox per test, an authenticated client over the in-process transport, and the reference samples.

The fixtures are declared with `name=`: a module imports `sandbox_fixture` and `client_fixture`, its tests
ask for `sb` and `client`, and no test's argument shadows an import.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketplace_assets.sandbox import Sandbox

AUTH = ("sandbox@example.com", "sandbox-token")
BASE = "https://sandbox.invalid/marketplace"
SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture(name="sb")
def sandbox_fixture() -> Sandbox:
    return Sandbox()


@pytest.fixture(name="client")
def client_fixture(sb: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sb.transport(), base_url=BASE, auth=AUTH) as c:
        yield c
