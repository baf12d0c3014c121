"""What every Marketplace asset shares: the decorator's settings, the sandbox note, the run's metadata.

Every asset body fetches and parses, then returns `run.output(frame)`. The decorator does the rest the
same way for all of them (`_finish`): the PII policy, the asset checks, per-partition figures, a
preview, and a failure message that names the report, the partitions and the API's answer.
"""

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.errors import MarketplaceError, MarketplaceUnavailableError
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.checks import check_specs, evaluate_checks, failed_before_write
from marketplace_assets.field_types import check_field_types
from marketplace_assets.monitoring import (
    PREVIEW_ROWS,
    figures_by_partition,
    freshness_policy_for,
    preview_markdown,
)
from marketplace_assets.partitions import time_dimension, to_window
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.invariants import Invariants
from marketplace_assets.warehouse import WarehouseResource
from marketplace_assets.warehouse.base import TableRef
from marketplace_assets.warehouse.batches import Batches, BatchWriter, Rows

# Every asset that calls the Marketplace shares this pool, so big backfills cannot hammer the API.
API_POOL = "marketplace_api"
KINDS = {"python", "polars", "duckdb"}
SANDBOX_NOTE = "**Sandbox mode**: this asset reads the built-in simulated Marketplace, not your account."


def describe(summary: str, window: str, endpoint: str, *, sandbox: bool) -> str:
    parts = [summary, window, f"Source: `{endpoint}`."]
    if sandbox:
        parts.append(SANDBOX_NOTE)
    return "\n\n".join(p for p in parts if p)


def marketplace_asset(
    *,
    key: Sequence[str],
    description: str,
    sandbox: bool,
    partitions_def: dg.PartitionsDefinition | None = None,
    partition_expr: str | Mapping[str, str] | None = None,
    single_run_backfills: bool = True,
    deps: Sequence[dg.AssetKey] = (),
    automation_condition: dg.AutomationCondition | None = None,
    invariants: Invariants | None = None,
    **metadata: Any,
) -> Callable[[Callable[..., dg.Output[pl.DataFrame]]], dg.AssetsDefinition]:
    """`dg.asset` with what every Marketplace asset has: its area as group, the kinds, the API pool, the
    warehouse IO manager, the source in its metadata, a freshness policy for its cadence, its checks,
    and (when partitioned) single-run backfills, so a backfill of any range is one run."""
    definition_metadata: dict[str, Any] = {"source": "sandbox" if sandbox else "live", **metadata}
    if partition_expr is not None:
        definition_metadata["partition_expr"] = partition_expr
    single_run = partitions_def is not None and single_run_backfills
    monitoring = _Monitoring(
        dg.AssetKey(list(key)),
        invariants or Invariants(),
        _date_column(partitions_def, partition_expr),
        partition_expr,
        tuple(metadata.get("merge_keys") or ()),
    )
    asset = dg.asset(
        key=list(key),
        group_name=key[0],
        description=description,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if single_run else None,
        metadata=definition_metadata,
        kinds=KINDS,
        pool=API_POOL,
        io_manager_key="warehouse",
        deps=list(deps),
        automation_condition=automation_condition,
        freshness_policy=freshness_policy_for(partitions_def),
        check_specs=check_specs(monitoring.key, monitoring.invariants, date_column=monitoring.date_column),
    )

    def decorate(body: Callable[..., dg.Output[pl.DataFrame]]) -> dg.AssetsDefinition:
        @functools.wraps(body)
        def run_and_finish(
            context: dg.AssetExecutionContext,
            *args: Any,
            pii: PiiPolicy,
            warehouse_store: WarehouseResource,
            **kwargs: Any,
        ) -> Iterator[Any]:
            marketplace: MarketplaceResource | None = kwargs.get("marketplace")
            try:
                output = body(context, *args, **kwargs)
                yield from _finish(context, output, monitoring, pii, warehouse_store)
            except MarketplaceError as exc:
                raise _failure_or_retry(context, monitoring.label, exc, marketplace) from exc

        _add_parameters(run_and_finish, body, pii=PiiPolicy, warehouse_store=WarehouseResource)
        return asset(run_and_finish)

    return decorate


@dataclass(frozen=True)
class _Monitoring:
    """What `_finish` needs to know about an asset beyond its context."""

    key: dg.AssetKey
    invariants: Invariants
    date_column: str | None
    partition_expr: str | Mapping[str, str] | None
    merge_keys: tuple[str, ...]

    @property
    def label(self) -> str:
        return "/".join(self.key.path)


def _failure_or_retry(
    context: dg.AssetExecutionContext,
    label: str,
    error: MarketplaceError,
    marketplace: MarketplaceResource | None,
) -> dg.Failure | dg.RetryRequested:
    """The step's end: the API's own words with the report and partitions, enough to act on from the
    run page. Only an API that stayed unavailable is transient: the step is tried again later. A 4xx,
    a wrong shape, lost records or type drift will not fix themselves, so they fail at once."""
    scope = _run_scope(context)
    message = f"{label}, {scope}: {error}"
    if marketplace is not None:
        message = marketplace.redact(message)
    retries = marketplace.transient_retries if marketplace is not None else 0
    if isinstance(error, MarketplaceUnavailableError) and context.retry_number < retries:
        wait = marketplace.transient_retry_wait if marketplace is not None else 0.0
        context.log.warning(
            f"{message} Trying the step again in {wait:.0f}s (retry {context.retry_number + 1} of {retries})."
        )
        return dg.RetryRequested(max_retries=retries, seconds_to_wait=wait)
    return dg.Failure(
        description=message,
        metadata={"report": label, "partitions": scope, "error": type(error).__name__},
        allow_retries=False,
    )


def _add_parameters(wrapper: Callable[..., Any], body: Callable[..., Any], **resources: type) -> None:
    """Give the wrapper the body's signature plus the resources `_finish` needs, so Dagster (which reads
    the signature to bind resources) passes them in without every asset body declaring them."""
    signature = inspect.signature(body)
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=t) for n, t in resources.items()]
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**body.__annotations__, **resources}


def _finish(
    context: dg.AssetExecutionContext,
    output: dg.Output[Rows],
    monitoring: _Monitoring,
    pii: PiiPolicy,
    warehouse_store: WarehouseResource,
) -> Iterator[dg.Output[Rows] | dg.AssetCheckResult]:
    """Apply the PII policy, check types, evaluate the checks, attach per-partition figures, then hand
    the rows to the IO manager. A failed blocking check stops the run before anything is written.

    Staged batches (`Batches`) go through the same steps batch by batch, and the checks and figures
    read them lazily, so memory stays bounded by a batch whatever the row count."""
    where = f"{monitoring.label}, {_run_scope(context)}"

    def say_waiting(waited: float) -> None:
        context.log.info(
            f"{where}: waiting for the warehouse's lock to read its columns ({waited:.0f}s so far)"
        )

    stored = warehouse_store.open(on_wait=say_waiting).table_columns(
        TableRef.from_asset_key(monitoring.key.path)
    )
    numeric = monitoring.invariants.numeric_columns()

    def prepare(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
        frame, changed = pii.apply(frame)
        # Before any figure is computed on it: a text amount would fail there with a raw polars error.
        check_field_types(frame, monitoring.label, stored, numeric)
        return frame, changed

    rows, changed = _prepared(output.value, prepare)
    try:
        yield from _check_and_describe(
            context, rows, monitoring, stored, output.metadata, pii.describe(changed)
        )
    except BaseException:
        if isinstance(rows, Batches):
            rows.cleanup()
        raise


def _prepared(
    rows: Rows, prepare: Callable[[pl.DataFrame], tuple[pl.DataFrame, list[str]]]
) -> tuple[Rows, list[str]]:
    """`prepare` applied to a frame, or to each staged batch (staged again, the originals removed)."""
    if not isinstance(rows, Batches):
        return prepare(rows)
    writer, changed = BatchWriter(), []
    try:
        for batch in rows:
            batch, changed = prepare(batch)
            writer.add(batch)
    except BaseException:
        writer.discard()
        raise
    finally:
        rows.cleanup()
    return writer.finish(), changed


def _check_and_describe(
    context: dg.AssetExecutionContext,
    rows: Rows,
    monitoring: _Monitoring,
    stored: Mapping[str, str],
    metadata: Mapping[str, Any],
    pii_described: str,
) -> Iterator[dg.Output[Rows] | dg.AssetCheckResult]:
    frame = rows.lazy() if isinstance(rows, Batches) else rows
    # Partitioned by time whenever there is a date column, so the run always has a time window.
    window = to_window(context.partition_time_window) if monitoring.date_column else None
    results = evaluate_checks(
        frame, monitoring.invariants, date_column=monitoring.date_column, window=window, stored_columns=stored
    )
    blocked = failed_before_write(results, monitoring.invariants, monitoring.date_column)
    if blocked is not None:
        yield from results
        raise dg.Failure(
            description=f"{monitoring.label}, {_run_scope(context)}: blocking check {blocked.check_name} "
            f"failed: {blocked.description} Nothing was written.",
            metadata={"report": monitoring.label, "partitions": _run_scope(context)},
            allow_retries=False,
        )
    if context.has_partition_key or context.has_partition_key_range:
        keys = list(monitoring.merge_keys)
        counted = frame.unique(keys, keep="last", maintain_order=True) if keys else frame
        assert monitoring.partition_expr is not None
        per_partition = figures_by_partition(
            counted,
            context.assets_def.partitions_def,  # type: ignore[arg-type]
            list(context.partition_keys),
            monitoring.partition_expr,
            monitoring.invariants.all_figures(),
            monitoring.label,
        )
        for partition_key, values in per_partition.items():
            context.add_asset_metadata(values, partition_key=partition_key)
    head = frame.head(PREVIEW_ROWS)
    metadata = {
        **metadata,
        "pii": pii_described,
        "preview": dg.MetadataValue.md(
            preview_markdown(head if isinstance(head, pl.DataFrame) else head.collect())
        ),
    }
    yield dg.Output(rows, metadata=metadata)
    yield from results


def _date_column(
    partitions_def: dg.PartitionsDefinition | None, partition_expr: str | Mapping[str, str] | None
) -> str | None:
    """The column the time partitions are cut on, if the asset has one."""
    if time_dimension(partitions_def) is None or partition_expr is None:
        return None
    if isinstance(partition_expr, str):
        return partition_expr
    assert isinstance(partitions_def, dg.MultiPartitionsDefinition)
    return partition_expr.get(partitions_def.time_window_dimension.name)


def _run_scope(context: dg.AssetExecutionContext) -> str:
    if context.has_partition_key_range:
        key_range = context.partition_key_range
        if key_range.start == key_range.end:
            return f"partition {key_range.start}"
        return f"partitions {key_range.start}..{key_range.end}"
    if context.has_partition_key:
        return f"partition {context.partition_key}"
    return "whole table"


@dataclass
class ApiRun:
    """One asset run's use of the API: the client, and the requests it made."""

    marketplace: MarketplaceResource
    client: MarketplaceClient
    requests_before: int

    def output(self, frame: Rows, **metadata: Any) -> dg.Output[Rows]:
        requests = self.client.request_count - self.requests_before
        return dg.Output(
            frame, metadata={"source": self.marketplace.source, "api_requests": requests, **metadata}
        )


def start_run(context: dg.AssetExecutionContext, marketplace: MarketplaceResource, label: str) -> ApiRun:
    """The run's client, after saying plainly where the data comes from."""
    if marketplace.sandbox:
        context.log.info(f"Sandbox mode: {label} comes from the built-in simulated Marketplace.")
    client = marketplace.get_client()
    return ApiRun(marketplace, client, client.request_count)
