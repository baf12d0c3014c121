"""The sandbox's metrics, benchmark, insight and search endpoints at their edges: invalid parameters are
400 with a clear message, reversed and out-of-range windows answer empty, the same seed gives the same
bytes, and the volume scales the counts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace_assets.sandbox import Sandbox
from marketplace_assets.sandbox.data import today
from marketplace_assets_tests.sandbox_metrics_support import (  # noqa: F401 (fixtures)
    DEV,
    FOUR_WEEKS,
    Q1,
    TIME_SERIES,
    cells,
    client_fixture,
    get,
    make_client,
    sandbox_fixture,
    week,
)

# --- errors, empty windows, determinism, volume --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "allowed"),
    [
        ("feedback/metrics/country", {}, "reason"),
        ("sales/transactions/edition", {}, "tier"),
        ("sales/metrics/upgrade/details", {}, "renewal"),
        ("search-keywords/source/google", {}, "embedded-marketplace"),
        ("zero-search-results-keywords/source/embedded-marketplace", {}, "marketplace"),
        ("sales/metrics/churn", {"aggregation": "day"}, "month"),
        ("search-keywords", {"aggregation": "year"}, "week"),
        ("sales/transactions/hosting", {"startDate": "2025-13-01"}, None),
        ("sales/metrics/conversion", {"endDate": "20250101"}, None),
        ("benchmark/sales", {"startDate": "yesterday"}, None),
        ("customer-insights/regions", {"endDate": "2025-02-30"}, None),
        ("app-requests-and-approvals", {"startDate": "2025/01/01"}, None),
        ("sales/metrics/churn/details", {"limit": "ten"}, None),
        ("sales/metrics/churn/details", {"lastUpdated": "soon"}, None),
    ],
)
def test_invalid_parameters_are_400(client, path, params, allowed):
    response = client.get(f"{DEV}/{path}", params=params)
    assert response.status_code == 400
    message = response.json()["message"]
    assert message and (allowed is None or allowed in message)


def test_transactions_list_paths_are_not_taken_for_a_metric(client):
    response = client.get(
        f"{DEV}/sales/transactions/export", params={"startDate": "2025-01-01", "endDate": "2025-01-01"}
    )
    assert "Invalid metric" not in response.text


EMPTY = [
    ("feedback/metrics/reason", lambda b: b["total"]["series"] == [] and b["addons"] == []),
    ("sales/transactions/region", lambda b: b["total"]["series"] == [] and b["addons"] == []),
    ("sales/metrics/churn", lambda b: b["total"]["datasets"] == [] and b["addons"] == []),
    ("sales/metrics/conversion", lambda b: b["total"]["series"] == [] and b["addons"] == []),
    ("sales/metrics/renewal/details", lambda b: b["events"] == [] and "next" not in b["_links"]),
    ("sales/metrics/churn/benchmark", lambda b: b["churnBenchmarkPerApp"] == []),
    (
        "benchmark/evaluations",
        lambda b: (
            b["CloudEvaluationBenchmarkPerApp"] == []
            and not b["totals"]["CloudEvaluationBenchmarkPerVendorPerMonth"]
        ),
    ),
    ("benchmark/sales", lambda b: b["addons"] == [] and b["total"]["salesBenchmarkPerMonth"] == []),
    ("customer-insights/tiers", lambda b: b["usersDistributionPerProduct"] == []),
    ("search-keywords/source/marketplace", lambda b: b["details"] == []),
    ("zero-search-results-keywords/source/marketplace", lambda b: b["details"] == []),
    ("search-keywords", lambda b: b["addons"] == [] and b["total"]["searchAppearances"] == 0),
    (
        "app-requests-and-approvals",
        lambda b: b["addons"] == [] and b["total"]["appRequestsAndApprovalsPerMonth"] == [],
    ),
]


@pytest.mark.parametrize(("path", "is_empty"), EMPTY, ids=[e[0] for e in EMPTY])
def test_reversed_and_out_of_range_windows_answer_empty(client, path, is_empty):
    future = today() + timedelta(days=40)
    for start, end in [
        ("2025-03-01", "2025-02-01"),
        ("2017-01-01", "2017-12-31"),
        (str(future), str(future + timedelta(60))),
    ]:
        assert is_empty(get(client, path, {"startDate": start, "endDate": end})), (start, end)


DETERMINISM_PATHS = [
    *TIME_SERIES,
    "sales/metrics/churn/details",
    "sales/metrics/churn/benchmark",
    "benchmark/evaluations",
    "benchmark/sales",
    "customer-insights/editions",
    "search-keywords/source/marketplace",
    "zero-search-results-keywords/source/marketplace",
    "search-keywords",
    "app-requests-and-approvals",
]


def _bodies(sandbox: Sandbox) -> list[bytes]:
    with make_client(sandbox) as c:
        return [
            c.get(f"{DEV}/{p}", params=Q1 if "benchmark" in p else FOUR_WEEKS).content
            for p in DETERMINISM_PATHS
        ]


def test_same_seed_same_bytes_other_seed_other_data():
    first, again, other = _bodies(Sandbox(seed=7)), _bodies(Sandbox(seed=7)), _bodies(Sandbox(seed=8))
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_volume_scales_counts():
    def grand(sandbox: Sandbox) -> list[int]:
        with make_client(sandbox) as c:
            out = []
            for path in ("sales/transactions/hosting", "sales/metrics/churn", "feedback/metrics/type"):
                body = c.get(f"{DEV}/{path}", params=FOUR_WEEKS).json()
                out.append(sum(v for k, v in cells(body).items() if k[0] == "total" and k[-1] == "count"))
            out.append(
                c.get(f"{DEV}/search-keywords", params=FOUR_WEEKS).json()["total"]["searchAppearances"]
            )
            return out

    small, large = grand(Sandbox(volume=1.0)), grand(Sandbox(volume=4.0))
    assert all(big > 6 * little > 0 for big, little in zip(large, small, strict=True)), (small, large)
