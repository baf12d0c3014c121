"""End to end: a run whose run worker dies is marked FAILED and retried once; a run that fails because a
step failed is not retried. A real `dagster dev` with the project's instance settings (dagster.yaml minus
storage), the sandbox served over HTTP in live mode, runs launched over GraphQL as the UI does.

With the default run launcher the run worker is a `multiprocessing` child of the code server
(`dagster api grpc`), so its command line does not name the run: it is found as the code server's child
whose descendants do (the step's compute-log `tail -F .../<run id>/compute_logs/...`)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets_tests.dagster_dev import DagsterDev, dagster_dev, instance_settings, live_settings

pytestmark = pytest.mark.e2e

DEV, EMAIL, TOKEN = "e2e-developer", "e2e@example.com", "e2e-Token-5f0c2b9a7d"
ENDPOINT = f"/rest/3/reporting/developer-space/{DEV}/evaluations/hosting"
ASSET = ["evaluations", "by_hosting"]
POOL = "marketplace_api"
SETTINGS = instance_settings()  # exactly what the test instance runs with
CRASH_MESSAGE = "Run execution process for {run_id} was terminated by signal 9 (SIGKILL)"
NOT_RETRIED_MESSAGE = "Not retrying run since it failed due to an asset or op failure"

RUN = """query($id: ID!) { runOrError(runId: $id) { __typename
    ... on Run { runId status startTime endTime tags { key value } } } }"""
EVENTS = """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events {
    __typename ... on MessageEvent { message level } } } } }"""
POOL_CLAIMS = """query($key: String!) { instance { concurrencyLimit(concurrencyKey: $key) {
    claimedSlots { runId stepKey } } } }"""


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with serve(Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN), port=0) as url:
        yield url


@pytest.fixture(scope="module")
def dev(sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    warehouse = tmp_path_factory.mktemp("warehouse") / "marketplace.duckdb"
    env = live_settings(sandbox_url, warehouse, (DEV, EMAIL, TOKEN))
    with dagster_dev(tmp_path_factory.mktemp("dagster_home"), env) as running:
        yield running


# -- helpers ---------------------------------------------------------------------------------------------
def _processes(session: int) -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of the live processes in `session` (the `dagster dev` under test
    runs in its own session: other tests' processes on the machine are never touched)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == session:
            found[int(entry)] = (int(fields[1]), cmdline)
    return found


def _run_worker(dev: DagsterDev, run_id: str, timeout: float = 60.0) -> tuple[int, list[int]]:
    """The pid of the run's worker and of its children (the step processes), once they are running."""
    assert dev.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = _processes(dev.process.pid)
        # A launcher that starts `dagster api execute_run` names the run on the worker's command line.
        workers = {pid for pid, (_, cmd) in procs.items() if "execute_run" in cmd and run_id in cmd}
        if not workers:  # the default launcher: the code server's child with a descendant naming the run
            servers = {pid for pid, (_, cmd) in procs.items() if "dagster api grpc" in cmd}
            for pid, (_, cmd) in procs.items():
                while run_id in cmd and pid in procs and procs[pid][0] not in servers:
                    pid = procs[pid][0]
                if run_id in cmd and pid in procs:
                    workers.add(pid)
        assert len(workers) <= 1, f"several run workers for {run_id}: {workers}"
        if workers:
            worker = workers.pop()
            return worker, [pid for pid, (parent, _) in procs.items() if parent == worker]
        time.sleep(0.2)
    raise AssertionError(f"no run worker for {run_id} within {timeout}s:\n{dev.log_tail()}")


def _run(dev: DagsterDev, run_id: str) -> dict[str, Any]:
    run = dev.graphql(RUN, {"id": run_id})["runOrError"]
    assert run["__typename"] == "Run", run
    return run | {"tags": {t["key"]: t["value"] for t in run["tags"]}}


def _wait_status(dev: DagsterDev, run_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = _run(dev, run_id)
        if run["status"] in statuses:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} not {statuses} within {timeout}s: {run}\n{dev.log_tail()}")


def _wait_tag(dev: DagsterDev, run_id: str, key: str, timeout: float = 30.0) -> str:
    """The run's tag `key` once set: `dagster/will_retry` is added just after the run turns FAILURE."""
    deadline = time.monotonic() + timeout
    while (value := _run(dev, run_id)["tags"].get(key)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert value is not None, f"run {run_id} has no tag {key} after {timeout}s"
    return value


def _messages(dev: DagsterDev, run_id: str) -> list[str]:
    events = dev.graphql(EVENTS, {"id": run_id})["logsForRun"].get("events", [])
    return [e["message"] for e in events if e.get("message")]


def _children(dev: DagsterDev, run_id: str) -> list[dict[str, Any]]:
    """Runs re-executing `run_id` (the retry daemon's, or a manual re-execution)."""
    return dev.runs({"dagster/parent_run_id": run_id})


def _wait_for_requests(sandbox_url: str, count: int, timeout: float = 90.0) -> None:
    """Until the sandbox has seen `count` requests to the endpoint: the step is then inside its API call."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{sandbox_url}/_sandbox/stats").json()["by_path"].get(ENDPOINT, 0) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"the step did not call {ENDPOINT} {count} times within {timeout}s")


def _pool_claims(dev: DagsterDev) -> set[str]:
    """Run ids holding a slot of the API pool."""
    info = dev.graphql(POOL_CLAIMS, {"key": POOL})["instance"]["concurrencyLimit"]
    return {slot["runId"] for slot in info["claimedSlots"]}


def _kill_worker(dev: DagsterDev, run_id: str) -> tuple[float, dict[str, Any], list[int]]:
    """kill -9 the run's worker; the seconds until the run read FAILURE, the run, and the step processes
    the worker leaves behind (still alive)."""
    worker, steps = _run_worker(dev, run_id)
    assert _run(dev, run_id)["status"] == "STARTED"
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    # The configuration's promise: within one monitoring poll interval (the code server sees it sooner).
    run = _wait_status(
        dev, run_id, {"FAILURE", "SUCCESS", "CANCELED"}, SETTINGS["run_monitoring"]["poll_interval_seconds"]
    )
    detected = time.monotonic() - killed
    assert dev.process is not None
    orphans = [pid for pid in steps if pid in _processes(dev.process.pid)]
    return detected, run, orphans


# -- tests -----------------------------------------------------------------------------------------------
def test_a_step_failure_is_not_retried(dev: DagsterDev, sandbox_url: str) -> None:
    # Runs first, before the worker kills below: dead workers keep their slots of the API pool until the
    # monitoring daemon frees them (free_slots_after_run_end_seconds), which would only make this wait.
    httpx.post(f"{sandbox_url}/_sandbox/reset").raise_for_status()
    fault = {"path": "evaluations/hosting", "kind": "status", "status": 400, "times": 5}
    httpx.post(f"{sandbox_url}/_sandbox/faults", json=[fault]).raise_for_status()
    run_id = dev.launch_run(ASSET, "2025-02-09")
    run = _wait_status(dev, run_id, {"FAILURE", "SUCCESS", "CANCELED"}, 180)
    assert run["status"] == "FAILURE", dev.run_errors(run_id)
    assert _wait_tag(dev, run_id, "dagster/failure_reason") == "STEP_FAILURE"
    assert _wait_tag(dev, run_id, "dagster/will_retry") == "false"

    # The retry daemon looks at the failure and says why it does not retry it.
    deadline = time.monotonic() + 60
    while not any(NOT_RETRIED_MESSAGE in m for m in _messages(dev, run_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert any(NOT_RETRIED_MESSAGE in m for m in _messages(dev, run_id)), dev.log_tail()
    assert _children(dev, run_id) == []


def test_a_killed_run_worker_fails_the_run_within_seconds_and_the_run_is_retried_once(
    dev: DagsterDev, sandbox_url: str
) -> None:
    assert SETTINGS["run_retries"] == {
        "enabled": True,
        "max_retries": 1,
        "retry_on_asset_or_op_failure": False,
    }
    httpx.post(f"{sandbox_url}/_sandbox/reset").raise_for_status()
    # The first two calls (the run and its retry) hang for a minute: each run is busy in its step.
    fault = {"path": "evaluations/hosting", "kind": "slow", "delay": 60, "times": 2}
    httpx.post(f"{sandbox_url}/_sandbox/faults", json=[fault]).raise_for_status()

    run_id = dev.launch_run(ASSET, "2025-02-02")
    _wait_for_requests(sandbox_url, 1)
    detected, run, orphans = _kill_worker(dev, run_id)
    print(f"\nkill -9 of the run worker -> run {run['status']} after {detected:.1f}s")
    assert run["status"] == "FAILURE"
    crash = CRASH_MESSAGE.format(run_id=run_id)
    assert any(crash in m for m in _messages(dev, run_id)), _messages(dev, run_id)
    assert _wait_tag(dev, run_id, "dagster/will_retry") == "true"
    # The dead worker could not give back its slot of the API pool.
    assert run_id in _pool_claims(dev)
    # Its step process outlives it (it would finish its call and write); stop it to keep the test bounded.
    print(f"step processes left behind by the dead worker: {orphans}")
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)

    # The retry daemon re-executes it once, from the failure.
    deadline, failed_at = time.monotonic() + 60, time.monotonic()
    while not (retries := _children(dev, run_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(retries) == 1, f"no retry of {run_id}:\n{dev.log_tail()}"
    retry = _run(dev, retries[0]["runId"])
    print(f"retry {retry['runId']} launched {time.monotonic() - failed_at:.1f}s after the failure")
    assert retry["tags"]["dagster/retry_number"] == "1"
    assert retry["tags"]["dagster/root_run_id"] == run_id

    # The retry's worker dies too: it fails the same way, and max_retries: 1 means no second retry.
    _wait_for_requests(sandbox_url, 2)
    detected, retry, orphans = _kill_worker(dev, retry["runId"])
    print(f"kill -9 of the retry's run worker -> run {retry['status']} after {detected:.1f}s")
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert retry["status"] == "FAILURE"
    assert _wait_tag(dev, retry["runId"], "dagster/will_retry") == "false"
