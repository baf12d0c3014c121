"""Which executor a run gets, and the instance's pool settings.

A run runs its steps in its worker (no step process) unless two or more steps that wait on exports could
run at the same time; then each step gets its own process. Proven from the run's events: the pid each
step started in, and the STEP_WORKER_STARTING events that only a process per step emits. Runs go through
`dg.execute_job` with a real (temporary, non-ephemeral) instance, the way a run worker or `dagster asset
materialize` executes a run; `execute_in_process` would not do: it swaps the executor for its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from marketplace_assets.executors import EXPORT_STEPS, exports_in_parallel_executor
from marketplace_assets_tests.dagster_dev import PROJECT_ROOT, instance_yaml

POOL = "test_pool"


# Stand-ins, keyed like the project's export-backed assets: the executor knows them by their steps' names.
@dg.asset(key=["sales", "transactions"], pool=POOL)
def transactions() -> int:
    return 1


@dg.asset(key=["licenses", "licenses"], pool=POOL)
def licenses() -> int:
    return 2


@dg.asset(pool=POOL)
def solo() -> int:
    return 1


@dg.asset(pool=POOL)
def left() -> int:
    return 1


@dg.asset(pool=POOL)
def right() -> int:
    return 2


@dg.asset(pool=POOL)
def first() -> int:
    return 1


@dg.asset(pool=POOL)
def second(first: int) -> int:
    return first + 1


JOBS = {
    "one_asset": [solo],
    "side_by_side": [left, right],
    "chain": [first, second],
    "two_exports": [transactions, licenses],
}
DEFS = dg.Definitions(
    assets=[transactions, licenses, solo, left, right, first, second],
    jobs=[dg.define_asset_job(name, selection) for name, selection in JOBS.items()],
    executor=exports_in_parallel_executor,
)


# Module-level so that a step process can load the job again (dg.reconstructable).
def one_asset() -> dg.JobDefinition:
    return DEFS.resolve_job_def("one_asset")


def side_by_side() -> dg.JobDefinition:
    return DEFS.resolve_job_def("side_by_side")


def chain() -> dg.JobDefinition:
    return DEFS.resolve_job_def("chain")


def two_exports() -> dg.JobDefinition:
    return DEFS.resolve_job_def("two_exports")


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    # The project's instance settings (pool limit included) in a temporary home: a step process needs
    # an instance it can reach, as in `dagster dev` or the CLI.
    (tmp_path / "dagster.yaml").write_text(instance_yaml())
    with dg.instance_for_test(temp_dir=str(tmp_path)) as test_instance:
        yield test_instance


def _run(
    instance: dg.DagsterInstance, job: Any, run_config: Mapping[str, Any] | None = None
) -> list[dg.EventLogEntry]:
    with dg.execute_job(dg.reconstructable(job), instance=instance, run_config=run_config) as result:
        assert result.success
        return instance.all_logs(result.run_id)


def _step_pids(entries: list[dg.EventLogEntry]) -> dict[str, int]:
    """step key → the pid of the process its STEP_START event came from."""
    return {
        entry.step_key: entry.dagster_event.pid
        for entry in entries
        if entry.dagster_event and entry.dagster_event.event_type is dg.DagsterEventType.STEP_START
    }


def _step_processes_started(entries: list[dg.EventLogEntry]) -> list[str]:
    return [
        entry.step_key or ""
        for entry in entries
        if entry.dagster_event and entry.dagster_event.event_type is dg.DagsterEventType.STEP_WORKER_STARTING
    ]


def test_a_run_of_one_asset_runs_its_step_in_the_run_worker(instance: dg.DagsterInstance) -> None:
    entries = _run(instance, one_asset)
    # execute_job runs the run in this process: the step started here, and no step process was started.
    assert _step_pids(entries) == {"solo": os.getpid()}
    assert _step_processes_started(entries) == []
    assert any(e.user_message.startswith("Executing steps in process") for e in entries)


def test_a_chain_and_quick_steps_side_by_side_run_in_the_run_worker(instance: dg.DagsterInstance) -> None:
    for job, steps in ((chain, ("first", "second")), (side_by_side, ("left", "right"))):
        entries = _run(instance, job)
        assert _step_pids(entries) == dict.fromkeys(steps, os.getpid())
        assert _step_processes_started(entries) == []


def test_exports_that_can_wait_side_by_side_get_a_process_each(instance: dg.DagsterInstance) -> None:
    assert {"sales__transactions", "licenses__licenses", "licenses__current"} <= set(EXPORT_STEPS)
    entries = _run(instance, two_exports)
    pids = _step_pids(entries)
    assert set(pids) == {"sales__transactions", "licenses__licenses"}
    assert os.getpid() not in pids.values()
    assert len(set(pids.values())) == 2
    assert sorted(_step_processes_started(entries)) == ["licenses__licenses", "sales__transactions"]
    assert any(e.user_message.startswith("Executing steps using multiprocess executor") for e in entries)


def test_run_config_can_choose_the_executor_for_one_run(instance: dg.DagsterInstance) -> None:
    forced = _run(instance, one_asset, {"execution": {"config": {"mode": "multiprocess"}}})
    assert _step_processes_started(forced) == ["solo"]
    assert _step_pids(forced)["solo"] != os.getpid()

    serial = _run(instance, two_exports, {"execution": {"config": {"mode": "in_process"}}})
    assert set(_step_pids(serial).values()) == {os.getpid()}


def test_every_job_of_the_project_uses_it(clean_env: pytest.MonkeyPatch) -> None:
    from marketplace_assets.definitions import build_definitions
    from marketplace_assets.settings import load_settings

    clean_env.setenv("MARKETPLACE_SANDBOX", "1")
    defs = build_definitions(load_settings())
    jobs = defs.resolve_all_job_defs()
    # The asset job that UI backfills and `dagster asset materialize` run, the schedules' jobs, the op job.
    assert {"__ASSET_JOB", "update_app_listing"} <= {job.name for job in jobs}
    assert {job.name: job.executor_def.name for job in jobs} == {
        job.name: "exports_in_parallel" for job in jobs
    }
    # The steps the executor treats as waiting on exports are the project's export-backed assets' steps.
    exports = [
        dg.AssetKey(p.split("/")) for p in ("sales/transactions", "licenses/licenses", "licenses/current")
    ]
    exports.append(dg.AssetKey(["marketing", "attribution"]))
    assert sorted(defs.resolve_assets_def(key).op.name for key in exports) == sorted(EXPORT_STEPS)


def test_a_one_asset_cli_run_of_the_project_has_no_step_process(tmp_path: Path) -> None:
    """`dagster asset materialize` of the real definitions, in sandbox mode: the step runs in the CLI's
    own process (its events come from one pid) and no step process is started."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")}
    env |= {"MARKETPLACE_SANDBOX": "1", "MARKETPLACE_WAREHOUSE": str(tmp_path / "w.duckdb")}
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "marketplace_assets.definitions",
        "--select", "evaluations/by_hosting", "--partition", "2025-02-02",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env | {"DAGSTER_HOME": str(home)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        entries = instance.all_logs(run.run_id)
    assert _step_processes_started(entries) == []
    run_start = next(e for e in entries if e.dagster_event_type is dg.DagsterEventType.RUN_START)
    assert set(_step_pids(entries).values()) == {run_start.dagster_event.pid}


# -- the pool settings -------------------------------------------------------------------------------------
def _settings(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_runs_start_while_the_api_pool_is_busy() -> None:
    """Runs are not held in the queue while the pool's slots are taken: as many runs as may run at once
    can start their workers meanwhile, and each step waits for a slot inside its run, once its process is
    up. A slot is then held only while a step runs, never while a process starts."""
    settings = _settings(PROJECT_ROOT / "dagster.yaml")
    pools, runs = settings["concurrency"]["pools"], settings["concurrency"]["runs"]
    assert pools["granularity"] == "op"  # "run" would hold a slot for the run's whole life, start included
    assert pools["default_limit"] == 2
    assert pools["op_granularity_run_buffer"] == runs["max_concurrent_runs"] - pools["default_limit"]
    assert settings["run_queue"]["dequeue_interval_seconds"] <= 2


def test_the_instance_accepts_the_settings(tmp_path: Path) -> None:
    # Dagster refuses some combinations at load (run_queue limits beside `concurrency`, for one).
    (tmp_path / "dagster.yaml").write_text(instance_yaml())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"


def test_the_deployments_have_the_same_pool_and_queue_settings() -> None:
    project = _settings(PROJECT_ROOT / "dagster.yaml")
    deploy = _settings(PROJECT_ROOT / "deploy" / "dagster.yaml")
    assert deploy["concurrency"] == project["concurrency"]
    assert deploy["run_coordinator"]["config"] == project["run_queue"]
    helm = _settings(PROJECT_ROOT / "deploy" / "helm" / "values.yaml")
    pools = project["concurrency"]["pools"]
    assert helm["concurrency"]["pools"] == {
        "defaultLimit": pools["default_limit"],
        "granularity": pools["granularity"],
        "opGranularityRunBuffer": pools["op_granularity_run_buffer"],
    }
    queued = helm["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["dequeueIntervalSeconds"] == project["run_queue"]["dequeue_interval_seconds"]
