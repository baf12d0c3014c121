"""Fixtures shared by the test modules, and the count of PostgreSQL tests that ran or were skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marketplace_assets_tests.postgres_server import REQUIRE_ENV, postgres_server

__all__ = ["postgres_server"]

# .ci/run sets this to a file path; the session writes "ran=N skipped=M" there (PostgreSQL tests only).
POSTGRES_COUNT_FILE_ENV = "MARKETPLACE_POSTGRES_TEST_COUNT_FILE"
_postgres_outcomes = {"ran": 0, "skipped": 0}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No MARKETPLACE_* variable set and no .env file in reach: the settings' defaults, then what a test
    sets with the returned monkeypatch."""
    for name in list(os.environ):
        if name.startswith("MARKETPLACE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    return monkeypatch


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that uses the server is a PostgreSQL test, marked or not.
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


def _in_xdist_worker() -> bool:
    # With pytest-xdist the controller sees every worker's reports and finishes last: it alone counts.
    return "PYTEST_XDIST_WORKER" in os.environ


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _in_xdist_worker() or "postgres" not in report.keywords:
        return
    if report.skipped:
        _postgres_outcomes["skipped"] += 1
    elif report.when == "call":
        _postgres_outcomes["ran"] += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _in_xdist_worker():
        return
    target = os.environ.get(POSTGRES_COUNT_FILE_ENV)
    if target:
        Path(target).write_text(f"ran={_postgres_outcomes['ran']} skipped={_postgres_outcomes['skipped']}\n")
    if os.environ.get(REQUIRE_ENV) == "1" and _postgres_outcomes["skipped"]:
        print(f"\n{_postgres_outcomes['skipped']} PostgreSQL test(s) were skipped although {REQUIRE_ENV}=1")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
