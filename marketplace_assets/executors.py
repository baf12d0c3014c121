"""The executor of every job: a process per step only where steps that wait on exports can run at once.

Dagster's default executor starts a new process for every step, and each of those processes imports the
definitions again (1.3 to 3 s on 2 cores) to do what the run worker, which has them loaded already, could
do itself. Most runs here are one asset: a UI backfill of one asset is one run (single-run backfill
policy), and so is a sensor's export run or a manual materialization. A process per step pays only when
steps spend long waiting on the Marketplace at the same time, which is what an async export does (it is
prepared for seconds to minutes): two exports in one run then wait side by side instead of one after the
other. Measured by `bench/backfills.py`: licenses plus transactions for a month, 13.7 s with a process
per step against 19.1 s in one process; the four evaluations assets for 4 weeks, 9.0 s against 4.4 s.
So, in `auto` mode:

- a run with two or more export steps that could run at the same time gives each step its own process,
  as `dg.multiprocess_executor` does, as many at once as the `marketplace_api` pool lets through;
- any other run (one asset, a chain such as licenses/licenses then licenses/current, a schedule's run of
  a group of reports) runs its steps in the run worker, one after the other, as `dg.in_process_executor`.

In-process, a step claims its `marketplace_api` slot in a process that is already running, just before
it starts: no slot is held while a process starts. (With a process per step, the run worker claims the
slot, then starts the step's process.)

Run config can override the choice for one run: `execution: {config: {mode: multiprocess}}` (or
`in_process`). Built from public Dagster APIs: `@dg.executor`, `dg.Executor`, `dg.InitExecutorContext`
and the creation functions of the two executors it hands the run to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import dagster as dg

from marketplace_assets.reports.catalog import EXPORT_REPORTS

AUTO, IN_PROCESS, MULTIPROCESS = "auto", "in_process", "multiprocess"
MODES = (AUTO, IN_PROCESS, MULTIPROCESS)
# The steps that wait on an async export: the catalog's export-backed reports and licenses/current (a
# full licenses export). An asset's step is named by its key's parts joined with "__".
EXPORT_STEPS = (*("__".join(r.key.path) for r in EXPORT_REPORTS), "licenses__current")


class Step(Protocol):
    key: str


class StepLevels(Protocol):
    """What the choice reads of the execution plan `dg.Executor.execute` is given."""

    def get_steps_to_execute_by_level(self) -> Sequence[Sequence[Step]]: ...


def runs_in_process(
    mode: str, execution_plan: StepLevels, waiting_steps: Sequence[str] = EXPORT_STEPS
) -> bool:
    """Whether the run's steps run in its worker. In `auto` mode: unless two or more `waiting_steps` are in
    one level of the plan's dependency order (steps in one level depend on none of each other, so they
    could run at the same time)."""
    if mode != AUTO:
        return mode == IN_PROCESS
    levels = execution_plan.get_steps_to_execute_by_level()
    return all(sum(step.key in waiting_steps for step in level) < 2 for level in levels)


class ExportsInParallelExecutor(dg.Executor):
    """Hands the whole plan to the in-process or the multiprocess executor, chosen per run."""

    def __init__(self, mode: str, in_process: dg.Executor, multiprocess: dg.Executor) -> None:
        self.mode = mode
        self.in_process = in_process
        self.multiprocess = multiprocess

    @property
    def retries(self) -> Any:  # RetryMode; both executors are built with the same retries setting
        return self.multiprocess.retries

    def execute(self, plan_context: Any, execution_plan: StepLevels) -> Iterator[dg.DagsterEvent]:
        # Looked up on the module at each run, so a benchmark can force one executor for comparison.
        chosen = self.in_process if runs_in_process(self.mode, execution_plan) else self.multiprocess
        yield from chosen.execute(plan_context, execution_plan)


def _requirements(config: Mapping[str, Any]) -> Sequence[dg.ExecutorRequirement]:
    # A run may get a process per step, which needs what Dagster's default executor needs for it: a job
    # that can be loaded again in a new process, and an instance that is not ephemeral.
    return [] if config.get("mode") == IN_PROCESS else dg.multiple_process_executor_requirements()


@dg.executor(
    name="exports_in_parallel",
    config_schema={
        "mode": dg.Field(
            dg.Enum("ExecutionMode", [dg.EnumValue(mode) for mode in MODES]),
            default_value=AUTO,
            description="auto: a process per step when two or more steps that wait on exports could run "
            "at the same time, else every step in the run worker; in_process or multiprocess: always that.",
        ),
        "max_concurrent": dg.Field(
            dg.Noneable(int),
            default_value=None,
            description="With a process per step, at most this many at once (default: the CPU count). "
            "The marketplace_api pool bounds steps across runs anyway.",
        ),
        "retries": dg.Field(
            dg.Selector({"enabled": {}, "disabled": {}}),
            default_value={"enabled": {}},
            description="Whether op retry policies apply, as with Dagster's own executors.",
        ),
    },
    requirements=_requirements,
)
def exports_in_parallel_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    config = init_context.executor_config
    retries = config["retries"]

    def build(definition: dg.ExecutorDefinition, executor_config: Mapping[str, object]) -> dg.Executor:
        create = definition.executor_creation_fn
        assert create is not None, f"{definition.name} has no creation function"
        context = dg.InitExecutorContext(
            job=init_context.job,
            executor_def=definition,
            executor_config=executor_config,
            instance=init_context.instance,
        )
        return create(context)

    return ExportsInParallelExecutor(
        str(config["mode"]),
        in_process=build(dg.in_process_executor, {"retries": retries}),
        multiprocess=build(
            dg.multiprocess_executor, {"max_concurrent": config["max_concurrent"], "retries": retries}
        ),
    )
