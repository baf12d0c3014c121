"""Fixtures shared by the test modules, the count of PostgreSQL tests that ran or were skipped, and how
the tests are ordered and spread over the pytest-xdist workers (`--dist loadfile`, see pyproject.toml).

The end-to-end tests that need no `dagster dev` of their own share one (`shared_dev`). pytest-xdist's
workers are sessions of their own, so those tests must all go to one worker: the scheduler below sends
every module that names the `shared_dev` fixture to one worker as one unit, and every other module as a
unit of its own, as plain `--dist loadfile` does. (`--dist loadgroup` and an `xdist_group` mark would say
the same, but pytest-xdist 3.8 ignores the mark under pytest 9.2: it records a test's group in its node
id, which pytest 9.2 no longer lets it change; pytest-xdist issue #1386.)
Units are queued slowest kind first (the shared tests, the other end-to-end modules, then the rest), so
that no worker is left with a long end-to-end module while the other one idles.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadFileScheduling

from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets.sandbox.exports import configure_exports
from marketplace_assets_tests.dagster_dev import (
    SHARED_CREDENTIALS,
    SHARED_SETTINGS,
    DagsterDev,
    dagster_dev,
    live_settings,
)
from marketplace_assets_tests.postgres_server import REQUIRE_ENV, postgres_server

__all__ = ["postgres_server"]

SHARED_SCOPE = "shared_dev"
# How the scheduler tells a module that uses the shared instance: it names the fixture.
_NAMES_SHARED_DEV = re.compile(r"\bshared_dev\b")
# The test after which the shared instance is stopped: the last one in the session's order that uses it.
_LAST_SHARED_USER = pytest.StashKey[pytest.Item]()
_SHARED_INSTANCE = pytest.StashKey["SharedInstance"]()

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


@dataclass
class SharedInstance:
    """One `dagster dev` for the end-to-end tests that need no instance of their own: live mode against
    one sandbox served on loopback, one DuckDB warehouse, SHARED_SETTINGS. Others' runs write beside a
    test's own: it asserts on its own runs, backfills, tables and partitions, and reads with read_duckdb."""

    dev: DagsterDev
    sandbox: Sandbox
    sandbox_url: str
    warehouse: Path
    # Schedule name -> its first launching tick (DagsterDev.first_launch), watched from the start.
    first_launches: dict[str, Future[dict[str, Any]]]
    _stack: contextlib.ExitStack

    def stop(self) -> None:
        """Stop `dagster dev` and the sandbox server; again is a no-op."""
        self._stack.close()


def start_shared_instance(root: Path, schedules: Sequence[str] = ()) -> SharedInstance:
    """Start the sandbox server and `dagster dev` under `root`, and watch `schedules` launch their first
    run (`first_launch`, in threads). A cron tick comes at a minute boundary: switched on now, their first
    tick falls while the tests before the one that asserts on it run, instead of in a wait of its own."""
    developer, email, token = SHARED_CREDENTIALS
    sandbox = Sandbox(developer_id=developer, email=email, token=token)
    # Exports are ready on their first status read: the tests are about what runs do with them.
    configure_exports(sandbox, polls_to_complete=1)
    warehouse = root / "marketplace.duckdb"
    stack = contextlib.ExitStack()
    try:
        sandbox_url = stack.enter_context(serve(sandbox, port=0))
        # Shut down after `dagster dev` stops (a stack closes last in, first out): a watcher still
        # waiting then fails on the stopped webserver at once, instead of being waited for.
        watchers = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, len(schedules))))
        env = live_settings(sandbox_url, warehouse, SHARED_CREDENTIALS, **SHARED_SETTINGS)
        dev = stack.enter_context(dagster_dev(root / "dagster_home", env))
        launches = {name: watchers.submit(dev.first_launch, name) for name in schedules}
    except BaseException:
        stack.close()
        raise
    return SharedInstance(dev, sandbox, sandbox_url, warehouse, launches, stack)


@pytest.fixture(scope="session")
def shared_dev(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedInstance]:
    """The session's shared `dagster dev` (see SharedInstance). The schedules named by the session's
    `shared_schedule` marks are switched on as it starts; it stops after the last test that uses it."""
    schedules = sorted(
        {mark.args[0] for item in request.session.items for mark in item.iter_markers("shared_schedule")}
    )
    shared = start_shared_instance(tmp_path_factory.mktemp("shared_dev"), schedules)
    request.config.stash[_SHARED_INSTANCE] = shared
    yield shared
    shared.stop()


def _uses_shared_dev(item: pytest.Item) -> bool:
    return "shared_dev" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test that uses the server is a PostgreSQL test, marked or not.
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
    # Stable: within each kind, the collection's order (a module's tests keep theirs).
    items.sort(key=lambda item: 0 if _uses_shared_dev(item) else 1 if item.get_closest_marker("e2e") else 2)
    if shared := [item for item in items if _uses_shared_dev(item)]:
        config.stash[_LAST_SHARED_USER] = shared[-1]


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down: they may still use it
def pytest_runtest_teardown(item: pytest.Item) -> None:
    # The shared instance stops after the last test that uses it, in the collection's order, which is the
    # order each worker runs its tests in: its daemon and sensors would otherwise keep part of a core busy
    # under every test that follows on this worker.
    shared = item.config.stash.get(_SHARED_INSTANCE, None)
    if shared is not None and item is item.config.stash.get(_LAST_SHARED_USER, None):
        shared.stop()


class SharedDevScheduling(LoadFileScheduling):
    """`--dist loadfile`, with the modules that name `shared_dev` as one unit. The controller knows the
    tests by node id only, so a module's text tells: a module uses a fixture by naming it (a fixture of
    conftest.py that uses it for them would not be seen: its modules then get an instance of their own)."""

    def __init__(self, config: pytest.Config, log: object = None) -> None:
        super().__init__(config, log)
        self._root = config.rootpath
        self._names_shared_dev: dict[str, bool] = {}

    def _split_scope(self, nodeid: str) -> str:
        module = super()._split_scope(nodeid)
        if module not in self._names_shared_dev:
            path = self._root / module
            text = path.read_text(errors="replace") if path.suffix == ".py" and path.is_file() else ""
            self._names_shared_dev[module] = bool(_NAMES_SHARED_DEV.search(text))
        return SHARED_SCOPE if self._names_shared_dev[module] else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LoadFileScheduling | None:
    return SharedDevScheduling(config, log) if config.getvalue("dist") == "loadfile" else None


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
