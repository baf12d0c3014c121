"""Metric assets, generated from the metrics catalog: one asset per `Metric` row, one factory for all.

A metric asset runs its SQL in the warehouse once for the run's partitions (their window as `:start` and
`:end`), and hands the rows to the shared steps of every asset (`MarketplaceAsset.finish`: the
checks, per-partition figures, the preview) and then to the project's IO manager, which replaces the
run's partitions of `metrics.<name>` in one transaction. Before that, the 12 latest periods' figures and
the top apps go onto the run's last partition as a markdown `summary`.

No `from __future__ import annotations` here: Dagster reads the asset function's annotations at
definition time and refuses a `context` annotation it sees as a string.
"""

from collections.abc import Collection, Iterator, Sequence
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.assets.common import SANDBOX_NOTE, MarketplaceAsset
from marketplace_assets.metrics.catalog import METRICS
from marketplace_assets.metrics.metric import GROUP, Metric
from marketplace_assets.metrics.reconcile import Reconciliation, not_reconciled, reconciliation_result
from marketplace_assets.metrics.summary import PERIODS, summary_markdown
from marketplace_assets.partitions import partitions_for
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.settings import sensor_interval_seconds
from marketplace_assets.warehouse import (
    ColumnNotFoundError,
    TableNotFoundError,
    TableRef,
    Warehouse,
    WarehouseResource,
)
from marketplace_assets.warehouse.io_manager import COLUMN_SCHEMA

METRIC_KINDS = {"sql", "polars", "duckdb"}
AUTOMATION_SENSOR = "metrics_after_raw_inputs"


def refresh_after_inputs(metric: Metric) -> dg.AutomationCondition:
    """Dagster's eager condition over the metric's latest partitions (`refresh_partitions`): a partition
    is requested once any partition it reads was updated, or once it exists and is missing, as soon as
    none of the partitions it reads is being materialized, nor missing among the recent ones
    (`Metric.input_lookback`: the days of the periods it refreshes, and of the period before).

    Eager alone waits for every partition a partition reads. MRR reads every day of transactions since
    `MARKETPLACE_START_DATE`, so it would wait until years of history were backfilled; instead it runs on
    the history loaded, and each row says whether that history covers it (`mrr_complete`)."""
    latest = dg.AutomationCondition.in_latest_time_window(metric.refresh_lookback)
    recent_input = dg.AutomationCondition.in_latest_time_window(metric.input_lookback)
    recent_missing = dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.missing() & ~dg.AutomationCondition.will_be_requested() & recent_input
    ).with_label("any_recent_deps_missing")
    eager = (
        dg.AutomationCondition.eager()
        .replace(dg.AutomationCondition.in_latest_time_window(), latest)
        .replace("any_deps_missing", recent_missing)
    )
    return eager.with_label(f"after its inputs refresh ({_latest_in_words(metric)})")


def _latest_in_words(metric: Metric) -> str:
    if metric.refresh_partitions == 1:
        return "its latest partition"
    return f"its latest {metric.refresh_partitions} partitions"


def describe_metric(metric: Metric, *, sandbox: bool) -> str:
    reads = "; ".join(f"`{u.key.to_user_string()}`: {u.reads}" for u in metric.upstream)
    parts = [
        metric.description,
        f"**Reads** {reads}.",
        f"**SQL**: `{metric.sql_location}`, in the definition's `sql` metadata; it runs in the warehouse "
        "(DuckDB or PostgreSQL), once per run, the run's partitions as the window [`:start`, `:end`).",
        f"**Refresh**: runs after its inputs refresh ({_latest_in_words(metric)}), once none of the "
        "recent partitions it reads (those of these periods and the one before) is missing or being "
        f"materialized, through the sensor `{AUTOMATION_SENSOR}` under Automation, on "
        "by default. Other partitions: materialize them (a backfill of any range is one run). Each "
        "partition's materialization carries "
        f"its figures ({', '.join(metric.headline)}) for the Plots tab, and the latest one a `summary` of "
        "the last 12 periods and the top apps.",
    ]
    if sandbox:
        parts.append(
            SANDBOX_NOTE.replace("reads the built-in", "is computed from raw tables of the built-in")
        )
    return "\n\n".join(parts)


def build_metric_asset(metric: Metric, *, start_date: date, sandbox: bool) -> dg.AssetsDefinition:
    partitions_def = partitions_for(metric.cadence, start_date)
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    shape = MarketplaceAsset(metric.key, metric.invariants, partitions_def, metric.period_column)
    source = "sandbox" if sandbox else "live"

    @shape.define(
        description=describe_metric(metric, sandbox=sandbox),
        sandbox=sandbox,
        deps=[upstream.dep() for upstream in metric.upstream],
        automation_condition=refresh_after_inputs(metric),
        kinds=METRIC_KINDS,
        pool=None,  # it never calls the Marketplace
        sql=dg.MetadataValue.md(f"```sql\n{metric.sql.strip()}\n```"),
        **{COLUMN_SCHEMA: metric.column_schema()},
    )
    def _metric_asset(
        context: dg.AssetExecutionContext, warehouse_store: WarehouseResource, pii: PiiPolicy
    ) -> Iterator[Any]:
        label = metric.key.to_user_string()

        def say_waiting(waited: float) -> None:
            context.log.info(f"{label}: waiting for the warehouse's lock ({waited:.0f}s so far)")

        warehouse = warehouse_store.open(on_wait=say_waiting)
        keys = list(context.partition_keys)
        # One query for the run's whole range (a backfill of a year is one statement): the SQL returns
        # one row per period and dimensions for every period in [start, end).
        start, end = (moment.date() for moment in context.partition_time_window)
        try:
            frame = warehouse.query(metric.sql, {"start": start, "end": end})
        except TableNotFoundError as exc:
            inputs = ", ".join(u.key.to_user_string() for u in metric.upstream)
            scope = f"partition {keys[0]}" if len(keys) == 1 else f"partitions {keys[0]}..{keys[-1]}"
            raise dg.Failure(
                description=f"{label}, {scope}: {_what_is_missing(exc)}: {exc}. Materialize {inputs} "
                f"{'again' if isinstance(exc, ColumnNotFoundError) else 'first'}.",
                allow_retries=False,
            ) from exc
        periods = last_periods(partitions_def, keys[-1])
        recent = _recent_rows(warehouse, metric, frame, periods, start)
        context.add_asset_metadata(
            {"summary": dg.MetadataValue.md(summary_markdown(metric, recent, periods))},
            partition_key=keys[-1],
        )
        yield from shape.finish(context, dg.Output(frame, metadata={"source": source}), pii)

    return _metric_asset


def _what_is_missing(exc: TableNotFoundError) -> str:
    """A table that was never materialized, or one written before a column the SQL reads existed."""
    return (
        "a column it reads is missing"
        if isinstance(exc, ColumnNotFoundError)
        else "a table it reads is missing"
    )


def last_periods(partitions_def: dg.TimeWindowPartitionsDefinition, last_key: str) -> list[date]:
    """The first days of the `PERIODS` partitions ending with `last_key` (fewer near the first one)."""
    keys = partitions_def.get_partition_keys()
    end = keys.index(last_key) + 1
    return [
        partitions_def.time_window_for_partition_key(k).start.date()
        for k in keys[max(0, end - PERIODS) : end]
    ]


def _recent_rows(
    warehouse: Warehouse, metric: Metric, frame: pl.DataFrame, periods: Sequence[date], run_start: date
) -> pl.DataFrame:
    """The metric's rows over `periods`: those stored before the run's first period, then the run's."""
    if not periods or periods[0] >= run_start:
        return frame
    table = TableRef.from_asset_key(metric.key.path)
    period = metric.period_column
    sql = f'SELECT * FROM {table.schema}.{table.name} WHERE "{period}" >= :since AND "{period}" < :until'
    try:
        stored = warehouse.query(sql, {"since": periods[0], "until": run_start})
    except TableNotFoundError:
        return frame
    columns = [c for c in frame.columns if c in stored.columns]
    return pl.concat([stored.select(columns), frame.select(columns)], how="vertical_relaxed")


def build_metric_assets(*, start_date: date, sandbox: bool) -> list[dg.AssetsDefinition]:
    """One asset per row of the metrics catalog."""
    return [build_metric_asset(m, start_date=start_date, sandbox=sandbox) for m in METRICS]


def reconcile_after_either_side(metric: Metric, reconciliation: Reconciliation) -> dg.AutomationCondition:
    """Run the check on its own once the metric or Atlassian's side was materialized by a run that did
    not run it, as soon as neither side (nor any table it reads) is being materialized, nor is about to
    be on this tick. A refresh of only Atlassian's report is then compared too.

    Dagster leaves a check with its own condition out of the automation's runs of its asset, so the
    metric's automated refreshes are reconciled this way, on the next tick after they end. Runs a person
    or a backfill launches still run the check with the metric (and it is then not run again). The raw
    tables the comparison also reads do not trigger it: their refresh leads to the metric's, which does.
    """
    sides = dg.AssetSelection.assets(metric.key, reconciliation.against)
    # Dagster's any_deps_updated leaves out an update by a run that also ran this check; it is also true
    # on a tick that requests the metric, which the last clause but one then holds back until the
    # metric's run has ended (the trigger stays set until the check is requested). An execution of the
    # check does not reset it: an execution and a later refresh of Atlassian's side can fall between
    # the same two ticks, and the refresh would then go unreconciled (seen in the browser tour).
    handled = dg.AutomationCondition.newly_requested() | dg.AutomationCondition.initial_evaluation()
    return (
        dg.AutomationCondition.any_deps_updated().allow(sides).since(handled)
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.any_deps_match(dg.AutomationCondition.will_be_requested())
        & ~dg.AutomationCondition.in_progress()
    ).with_label(
        f"after {metric.key.to_user_string()} or {reconciliation.against.to_user_string()} is refreshed"
    )


def build_reconciliation_check(metric: Metric, reconciliation: Reconciliation) -> dg.AssetChecksDefinition:
    """The asset check that reconciles `metric` with Atlassian's figure (`reconciliations.py`). It runs
    with every materialization of the metric a person or backfill launches, for the run's months, and on
    its own for every month the metric holds: from the UI, or by the automation after either side was
    refreshed without it (`reconcile_after_either_side`). Never blocking: a difference is a WARN for a
    person to look into."""

    @dg.asset_check(
        asset=metric.key,
        name=reconciliation.name,
        description=reconciliation.description,
        blocking=False,
        # The tables it reads besides the metric's own: the UI draws them as the check's inputs.
        additional_deps=list(reconciliation.reads),
        automation_condition=reconcile_after_either_side(metric, reconciliation),
        metadata={"sql": dg.MetadataValue.md(f"```sql\n{reconciliation.sql.strip()}\n```")},
    )
    def _reconcile(
        context: dg.AssetCheckExecutionContext, warehouse_store: WarehouseResource
    ) -> dg.AssetCheckResult:
        def say_waiting(waited: float) -> None:
            context.log.info(
                f"{reconciliation.name}: waiting for the warehouse's lock ({waited:.0f}s so far)"
            )

        warehouse = warehouse_store.open(on_wait=say_waiting)
        months: list[date] = []
        try:
            months = _months_to_reconcile(context, warehouse, metric)
            if not months:
                return not_reconciled(reconciliation, [], f"{metric.key.to_user_string()} holds no month")
            end = _next_month(months[-1])
            rows = warehouse.query(reconciliation.sql, {"start": months[0], "end": end})
        except TableNotFoundError as exc:
            return not_reconciled(reconciliation, months, f"{_what_is_missing(exc)}: {exc}")
        return reconciliation_result(reconciliation, rows, months)

    return _reconcile


def _months_to_reconcile(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse, metric: Metric
) -> list[date]:
    """The run's months; run on its own (no partitions), every month the metric's table holds."""
    if context.has_partition_key or context.has_partition_key_range:
        start, end = (moment.date() for moment in context.partition_time_window)
    else:
        table = TableRef.from_asset_key(metric.key.path)
        period = metric.period_column
        held = warehouse.query(
            f'SELECT min("{period}") AS first, max("{period}") AS last FROM {table.schema}.{table.name}'
        )
        first, last = held.row(0)
        if first is None:
            return []
        start, end = first, _next_month(last)
    months = [start]
    while (following := _next_month(months[-1])) < end:
        months.append(following)
    return months


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def build_reconciliation_checks(defined: Collection[dg.AssetKey]) -> list[dg.AssetChecksDefinition]:
    """One check per reconciliation of the metrics catalog whose tables are all `defined` (a deployment
    whose partner-metrics queries leave out recurring revenue gets no check against it)."""
    return [
        build_reconciliation_check(metric, reconciliation)
        for metric in METRICS
        for reconciliation in metric.reconciliations
        if set(reconciliation.reads) <= set(defined)
    ]


# The metrics' automation conditions are evaluated by this sensor, not Dagster's default one, which would
# ship stopped: it only acts after raw inputs were materialized, so it ships running (like
# `current_licenses_after_license_history` in sensors.py) and is listed under Automation.
metrics_automation = dg.AutomationConditionSensorDefinition(
    name=AUTOMATION_SENSOR,
    target=dg.AssetSelection.groups(GROUP),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_interval_seconds(30),
    description="Materializes the metrics group's partitions after the raw partitions they read are "
    "materialized (each metric's automation condition), and runs their reconciliation checks after the "
    "metric or Atlassian's report it is compared with was refreshed without them. On by default; switch it "
    "off here to stop.",
)
