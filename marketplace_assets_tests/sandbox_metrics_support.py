"""What the sandbox metrics tests share (`test_sandbox_metrics.py`, `test_sandbox_insights.py`,
`test_sandbox_metrics_edge_cases.py`): the reporting paths and windows they ask for, a client of the
in-process sandbox, and `cells`, which flattens a time-series answer so that answers can be summed and
compared.

`sb` and `client` are module-scoped: the tests only read, so each module shares one sandbox. They are
declared with `name=`; a module imports `sandbox_fixture` and `client_fixture`, its tests ask for `sb`
and `client`, and no test's argument shadows an import.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from marketplace_assets.sandbox import Sandbox

AUTH = ("sandbox@example.com", "sandbox-token")
DEV = "/rest/3/reporting/developer-space/sandbox-developer"
# Four full weeks, Sunday 2025-02-16 .. Saturday 2025-03-15 (the reference samples' dates).
WEEKS = [date(2025, 2, 16) + timedelta(weeks=i) for i in range(4)]
FOUR_WEEKS = {"startDate": "2025-02-16", "endDate": "2025-03-15"}
Q1 = {"startDate": "2025-01-01", "endDate": "2025-03-31"}
SALES_METRICS = ["country", "hosting", "partner", "region", "tier", "type"]
TIME_SERIES = [
    "feedback/metrics/reason",
    "feedback/metrics/type",
    *(f"sales/transactions/{m}" for m in SALES_METRICS),
    "sales/metrics/churn",
    "sales/metrics/renewal",
    "sales/metrics/conversion",
]


def make_client(sandbox: Sandbox) -> httpx.Client:
    return httpx.Client(
        transport=sandbox.transport(), base_url="https://sandbox.invalid/marketplace", auth=AUTH
    )


@pytest.fixture(name="sb", scope="module")
def sandbox_fixture() -> Sandbox:
    return Sandbox()


@pytest.fixture(name="client", scope="module")
def client_fixture(sb: Sandbox) -> Iterator[httpx.Client]:
    with make_client(sb) as c:
        yield c


def get(client: httpx.Client, path: str, params: Any = None) -> dict:
    response = client.get(f"{DEV}/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def week(**extra: str) -> dict:
    return {"startDate": WEEKS[0].isoformat(), "endDate": (WEEKS[0] + timedelta(days=6)).isoformat(), **extra}


def cells(body: dict) -> dict[tuple, float]:
    """(scope, dataset, (series, conversionType), date, field) -> value, over total and addons."""
    out = {}
    blocks = [("total", body["total"]), *((a["addonKey"], a) for a in body["addons"])]
    for scope, block in blocks:
        groups = [(d["name"], d["series"]) for d in block["datasets"]] if "datasets" in block else []
        for dataset, series_list in groups or [(None, block["series"])]:
            for series in series_list:
                label = (series["name"], series.get("conversionType"))
                for element in series["elements"]:
                    for key, value in element.items():
                        if key != "date":
                            out[(scope, dataset, label, element["date"], key)] = value
    return out
