"""The executor of every job: a process per step only where steps can run side by side.

Dagster's default executor starts a new process for every step, and each of those processes imports the
definitions again (about 3 s on 2 cores) to do what the run worker, which has them loaded already, could
do itself. Most runs here are one asset: a UI backfill of one asset is one run (single-run backfill
policy), and so is a sensor's export run or a manual materialization. So:

- a run whose steps could never run at the same time (one asset; or a chain, such as licenses/licenses
  then licenses/current) runs them in the run worker, as `dg.in_process_executor` does;
- a run with steps that can run side by side (a schedule's run of a whole group, licenses plus
  transactions whose exports should start together) gives each its own process, as
  `dg.multiprocess_executor` does, as many at once as the `marketplace_api` pool lets through.

In-process, a step claims its `marketplace_api` slot in a process that is already running, just before
it starts: the slot is not held while a process starts. (With a process per step, the run worker claims
the slot, then starts the step's process.)

Run config can override the choice for one run: `execution: {config: {mode: multiprocess}}` (or
`in_process`). Built from public Dagster APIs only: `@dg.executor`, `dg.Executor`,
`dg.InitExecutorContext` and the creation functions of the two executors it delegates to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import dagster as dg

AUTO, IN_PROCESS, MULTIPROCESS = "auto", "in_process", "multiprocess"
MODES = (AUTO, IN_PROCESS, MULTIPROCESS)


class StepLevels(Protocol):
    """What the choice reads of the execution plan `dg.Executor.execute` is given."""

    def get_steps_to_execute_by_level(self) -> Sequence[Sequence[object]]: ...


def runs_in_process(mode: str, execution_plan: StepLevels) -> bool:
    """Whether the run's steps run in its worker. In `auto` mode: when no two of them could ever run at
    the same time. The plan's steps by dependency level have at most one step per level exactly when they
    form a chain (each level's step depends on the one before), so a process per step would only add
    each process's start."""
    if mode != AUTO:
        return mode == IN_PROCESS
    return max((len(level) for level in execution_plan.get_steps_to_execute_by_level()), default=0) <= 1


class ParallelStepsOnlyExecutor(dg.Executor):
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
    # A run may get a process per step, which needs what the default executor needs for it: a job that
    # can be loaded again in a new process and an instance that is not ephemeral.
    return [] if config.get("mode") == IN_PROCESS else dg.multiple_process_executor_requirements()


@dg.executor(
    name="parallel_steps_only",
    config_schema={
        "mode": dg.Field(
            dg.Enum("ExecutionMode", [dg.EnumValue(mode) for mode in MODES]),
            default_value=AUTO,
            description="auto: run the steps in the run worker unless some of them can run at the same "
            "time, then a process per step; in_process or multiprocess: always that.",
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
            description="Whether op retry policies apply, as for Dagster's own executors.",
        ),
    },
    requirements=_requirements,
)
def parallel_steps_only_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
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

    return ParallelStepsOnlyExecutor(
        str(config["mode"]),
        in_process=build(dg.in_process_executor, {"retries": retries}),
        multiprocess=build(
            dg.multiprocess_executor, {"max_concurrent": config["max_concurrent"], "retries": retries}
        ),
    )
