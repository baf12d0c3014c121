"""Drive a real `dagster dev` (webserver + daemon) the way the UI does: over its GraphQL API.

Used by the end-to-end tests and by `bench/`. Each instance gets its own DAGSTER_HOME and its own
process group, and everything it started is killed when it stops. The one the end-to-end tests share
when they need no instance of their own is conftest.py's `shared_dev`, with SHARED_SETTINGS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import httpx
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOCATION = "marketplace_assets"
FINISHED_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
FINISHED_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
T = TypeVar("T")

# Settings of the project's dagster.yaml that point at its storage: a test instance keeps its own.
STORAGE_KEYS = ("storage", "local_artifact_storage", "compute_logs")


def instance_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The project's instance settings (dagster.yaml) minus the storage paths, so a test instance runs
    with exactly the project's monitoring, retry and concurrency settings. `overrides` replaces single
    values, nested like the file: `{"run_monitoring": {"poll_interval_seconds": 5}}` changes that one
    value and keeps the rest of `run_monitoring`."""
    settings = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text()) or {}
    for key in STORAGE_KEYS:
        settings.pop(key, None)
    return _merge(settings, overrides or {})


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def instance_yaml(overrides: Mapping[str, Any] | None = None) -> str:
    return yaml.safe_dump(instance_settings(overrides), sort_keys=False)


def _selector(**name: str) -> dict[str, Any]:
    """A sensor or schedule selector in the project's code location, e.g. `_selector(sensorName=...)`."""
    return {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", **name}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DagsterDev:
    """`home` holds the log, and is DAGSTER_HOME unless `project_dir` is given: then `dagster dev` runs
    there with no DAGSTER_HOME, exactly as `uv run dagster dev` does for a user in the project root."""

    home: Path
    env: Mapping[str, str]
    project_dir: Path | None = None
    # Single values of the project's instance settings replaced for this instance (see instance_settings).
    instance_overrides: Mapping[str, Any] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "dagster-dev.log"

    def start(self, timeout: float = 180.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        if self.project_dir is None:
            (self.home / "dagster.yaml").write_text(instance_yaml(self.instance_overrides))
            env["DAGSTER_HOME"] = str(self.home)
        else:
            env.pop("DAGSTER_HOME", None)
        cwd = self.project_dir or PROJECT_ROOT
        command = [sys.executable, "-m", "dagster", "dev", "-w", str(cwd / "workspace.yaml")]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            # Its own process group, so stop() reaches the webserver, daemon, code server and run workers.
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_until_loaded(timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- GraphQL ---------------------------------------------------------------------------------------
    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        if response.is_error:
            raise AssertionError(f"GraphQL HTTP {response.status_code}: {response.text[:2000]}")
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def _wait_until_loaded(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        query = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
            locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"dagster dev exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError, AssertionError):
                entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
                entry = next((e for e in entries if e["name"] == LOCATION), None)
                if entry and entry["loadStatus"] == "LOADED":
                    loaded = entry["locationOrLoadError"]
                    if loaded["__typename"] == "PythonError":
                        raise RuntimeError(f"code location failed to load: {loaded['message']}")
                    return
            time.sleep(0.5)
        raise AssertionError(f"dagster dev did not load within {timeout}s:\n{self.log_tail()}")

    def asset_keys(self) -> dict[str, str]:
        """Asset path ("area/report") → group name, as the UI lists them."""
        data = self.graphql("{ assetNodes { assetKey { path } groupName } }")
        return {"/".join(n["assetKey"]["path"]): n["groupName"] for n in data["assetNodes"]}

    def launch_backfill(self, asset_paths: Sequence[Sequence[str]], partitions: Sequence[str]) -> str:
        mutation = """mutation($params: LaunchBackfillParams!) {
            launchPartitionBackfill(backfillParams: $params) { __typename
            ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
            ... on PartitionKeysNotFoundError { message } ... on InvalidSubsetError { message } } }"""
        params = {
            "assetSelection": [{"path": list(p)} for p in asset_paths],
            "partitionNames": list(partitions),
        }
        result = self.graphql(mutation, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise AssertionError(f"backfill not launched: {result}")
        return result["backfillId"]

    def wait_for_backfill(self, backfill_id: str, timeout: float = 300.0) -> str:
        query = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
            __typename ... on PartitionBackfill { status } ... on PythonError { message } } }"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            backfill = self.graphql(query, {"id": backfill_id})["partitionBackfillOrError"]
            if backfill.get("status") in FINISHED_BACKFILL:
                return backfill["status"]
            time.sleep(1.0)
        raise AssertionError(f"backfill {backfill_id} did not finish in {timeout}s:\n{self.log_tail()}")

    def runs(self, tags: Mapping[str, str]) -> list[dict[str, Any]]:
        query = """query($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
            ... on Runs { results { runId status startTime endTime tags { key value } } } } }"""
        run_filter = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
        return self.graphql(query, {"filter": run_filter})["runsOrError"]["results"]

    def run_errors(self, run_id: str) -> list[str]:
        query = """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events {
            __typename ... on MessageEvent { message level } } } } }"""
        events = self.graphql(query, {"id": run_id})["logsForRun"].get("events", [])
        return [e["message"] for e in events if e.get("level") in ("ERROR", "CRITICAL")]

    def launch_run(self, asset_path: Sequence[str], partition: str | None = None) -> str:
        mutation = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
            ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
            ... on RunConfigValidationInvalid { errors { message } } } }"""
        params = {
            "selector": _selector(jobName="__ASSET_JOB") | {"assetSelection": [{"path": list(asset_path)}]},
            "executionMetadata": {
                "tags": [{"key": "dagster/partition", "value": partition}] if partition else []
            },
        }
        result = self.graphql(mutation, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise AssertionError(f"run not launched: {result}")
        return result["run"]["runId"]

    def start_sensor(self, name: str) -> str:
        """Switch a sensor on, as the UI's toggle does; returns its new status."""
        mutation = """mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
            __typename ... on Sensor { sensorState { status } } ... on PythonError { message }
            ... on SensorNotFoundError { message } } }"""
        result = self.graphql(mutation, {"selector": _selector(sensorName=name)})["startSensor"]
        if result["__typename"] != "Sensor":
            raise AssertionError(f"sensor {name} not started: {result}")
        return result["sensorState"]["status"]

    def stop_sensor(self, state_id: str) -> str:
        """Switch a sensor off by its state id (`sensorState { id }`); returns its new status."""
        mutation = """mutation($id: String!) { stopSensor(id: $id) { __typename
            ... on StopSensorMutationResult { instigationState { status } }
            ... on PythonError { message } } }"""
        result = self.graphql(mutation, {"id": state_id})["stopSensor"]
        if result["__typename"] != "StopSensorMutationResult":
            raise AssertionError(f"sensor {state_id} not stopped: {result}")
        return result["instigationState"]["status"]

    def sensor_state(self, name: str) -> dict[str, Any]:
        """The sensor's state: id, selectorId, status and its latest ticks (newest first)."""
        query = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
            __typename ... on Sensor { sensorState { id selectorId status ticks(limit: 10) {
            tickId status timestamp skipReason runIds error { message } } } }
            ... on PythonError { message } } }"""
        result = self.graphql(query, {"selector": _selector(sensorName=name)})["sensorOrError"]
        if result["__typename"] != "Sensor":
            raise AssertionError(f"sensor {name} not found: {result}")
        return result["sensorState"]

    def start_schedule(self, name: str) -> dict[str, str]:
        """Switch a schedule on, as the UI's toggle does; returns its state: id, selectorId and status."""
        mutation = """mutation($selector: ScheduleSelector!) { startSchedule(scheduleSelector: $selector) {
            __typename ... on ScheduleStateResult { scheduleState { id selectorId status } }
            ... on PythonError { message } ... on ScheduleNotFoundError { message } } }"""
        result = self.graphql(mutation, {"selector": _selector(scheduleName=name)})["startSchedule"]
        if result["__typename"] != "ScheduleStateResult":
            raise AssertionError(f"schedule {name} not started: {result}")
        return result["scheduleState"]

    def stop_schedule(self, state_id: str) -> str:
        """Switch a schedule off by the state id `start_schedule` returned; returns its new status."""
        mutation = """mutation($id: String!) { stopRunningSchedule(id: $id) { __typename
            ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }"""
        result = self.graphql(mutation, {"id": state_id})["stopRunningSchedule"]
        if result["__typename"] != "ScheduleStateResult":
            raise AssertionError(f"schedule {state_id} not stopped: {result}")
        return result["scheduleState"]["status"]

    def schedule_ticks(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """The schedule's latest ticks, newest first: status, timestamp (the scheduled time), runIds,
        skipReason and error."""
        query = """query($selector: ScheduleSelector!, $limit: Int) { scheduleOrError(scheduleSelector:
            $selector) { __typename ... on Schedule { scheduleState { ticks(limit: $limit) {
            status timestamp runIds skipReason error { message } } } } ... on PythonError { message } } }"""
        variables = {"selector": _selector(scheduleName=name), "limit": limit}
        result = self.graphql(query, variables)["scheduleOrError"]
        if result["__typename"] != "Schedule":
            raise AssertionError(f"schedule {name} not found: {result}")
        return result["scheduleState"]["ticks"]

    def wait_for_tick(self, name: str, timeout: float = 300.0) -> dict[str, Any]:
        """The schedule's first tick (of its latest 100) that launched runs (its run ids are recorded once
        they are submitted); a tick that fails is reported at once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ticks = self.schedule_ticks(name)
            if failed := [t for t in ticks if t["status"] == "FAILURE"]:
                raise AssertionError(f"schedule {name} tick failed: {failed[-1]['error']}")
            if launched := [t for t in ticks if t["runIds"]]:
                return launched[-1]  # newest first: the last is the first
            time.sleep(1.0)
        raise AssertionError(f"schedule {name} launched no run within {timeout}s:\n{self.log_tail()}")

    def first_launch(self, name: str, timeout: float = 300.0) -> dict[str, Any]:
        """Switch the schedule on, wait for its first tick that launched runs, switch it off, and return
        that tick. Off at once: its next tick would launch the same range again (Dagster dedupes a
        schedule's run keys only within one tick time)."""
        state = self.start_schedule(name)
        assert state["status"] == "RUNNING", state
        try:
            return self.wait_for_tick(name, timeout)
        finally:
            self.stop_schedule(state["id"])

    def run_materializations(self, run_id: str) -> list[tuple[str, str | None]]:
        """(asset path "area/report", partition) of every materialization the run recorded."""
        query = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
            assetMaterializations { assetKey { path } partition } } } }"""
        run = self.graphql(query, {"id": run_id})["runOrError"]
        return [("/".join(m["assetKey"]["path"]), m["partition"]) for m in run["assetMaterializations"]]

    def wait_for_run(self, run_id: str, timeout: float = 300.0) -> dict[str, Any]:
        query = """query($id: ID!) { runOrError(runId: $id) { __typename
            ... on Run { runId status startTime endTime } } }"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.graphql(query, {"id": run_id})["runOrError"]
            if run.get("status") in FINISHED_RUN:
                return run
            time.sleep(0.5)
        raise AssertionError(f"run {run_id} did not finish in {timeout}s:\n{self.log_tail()}")


@contextlib.contextmanager
def dagster_dev(
    home: Path,
    env: Mapping[str, str],
    project_dir: Path | None = None,
    instance_overrides: Mapping[str, Any] | None = None,
) -> Iterator[DagsterDev]:
    dev = DagsterDev(home=home, env=env, project_dir=project_dir, instance_overrides=instance_overrides or {})
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


def live_settings(
    sandbox_url: str, warehouse: str | Path, credentials: tuple[str, str, str], **more: str
) -> dict[str, str]:
    """The MARKETPLACE_* settings of live mode against a sandbox served over HTTP: `credentials` is
    (developer id, email, API token); `more` adds or overrides settings (MARKETPLACE_ prefix included)."""
    developer, email, token = credentials
    return {
        "MARKETPLACE_SANDBOX": "0",
        "MARKETPLACE_BASE_URL": sandbox_url,
        "MARKETPLACE_DEVELOPER_ID": developer,
        "MARKETPLACE_EMAIL": email,
        "MARKETPLACE_API_TOKEN": token,
        "MARKETPLACE_WAREHOUSE": str(warehouse),
        "MARKETPLACE_START_DATE": "2025-01-01",
        **more,
    }


def read_duckdb(path: Path, read: Callable[[duckdb.DuckDBPyConnection], T], timeout: float = 60.0) -> T:
    """`read(connection)` on the DuckDB file, read-only, once no run holds it for writing (DuckDB lets no
    other process open a file that one process writes)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with duckdb.connect(str(path), read_only=True) as con:
                return read(con)
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- the session's shared instance ---------------------------------------------------------------------
SHARED_CREDENTIALS = ("e2e-developer", "e2e@example.com", "e2e-Token-5f0c2b9a7d")
# Sensors tick every 5 s (the sensor daemon's own loop) instead of every 30 s to an hour, so tests see them
# act in seconds; daily schedules tick every minute (only those switched on tick at all).
SHARED_SETTINGS = {"MARKETPLACE_SENSOR_INTERVAL": "5", "MARKETPLACE_CRON_DAILY": "* * * * *"}
