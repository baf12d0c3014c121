"""What every Marketplace asset shares: the decorator's settings, the sandbox note, the run's metadata.

An asset is described once by a `MarketplaceAsset` (its key, invariants, partitions and write mode).
Its body declares the resources it uses in its signature, like any Dagster asset, and has the same
shape everywhere:

    with shape.api_run(context, marketplace) as run:
        frame = ...  # fetch and parse with run.client
        yield from shape.finish(context, run.output(frame), pii)

`finish` does the rest the same way for every asset: the PII policy, the declared-type check, the asset
checks, per-partition figures and a preview, then the rows go to the IO manager. `api_run` turns an API
failure into a message that names the report, the partitions and the API's answer.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.errors import MarketplaceError, MarketplaceUnavailableError
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.checks import check_specs, evaluate_checks, failed_before_write, new_fields_written
from marketplace_assets.dagster_conventions import beta_parameters
from marketplace_assets.field_types import check_field_types
from marketplace_assets.monitoring import (
    PREVIEW_ROWS,
    figures_by_partition,
    figures_markdown,
    freshness_policy_for,
    preview_markdown,
    run_summary_markdown,
)
from marketplace_assets.partitions import describe_keys, time_dimension, to_window
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.fetch import Window
from marketplace_assets.reports.invariants import Invariants
from marketplace_assets.warehouse.batches import Batches, BatchWriter, Rows

# Every asset that calls the Marketplace shares this pool, so big backfills cannot hammer the API.
API_POOL = "marketplace_api"
KINDS = {"python", "polars", "duckdb"}
# What an asset's output metadata says of each partition it covers; the rest describes the run.
PER_PARTITION_FACTS = ("source", "pii")
SANDBOX_NOTE = "**Sandbox mode**: this asset reads the built-in simulated Marketplace, not your account."


def describe(summary: str, window: str, endpoint: str, *, sandbox: bool) -> str:
    parts = [summary, window, f"Source: `{endpoint}`."]
    if sandbox:
        parts.append(SANDBOX_NOTE)
    return "\n\n".join(p for p in parts if p)


@dataclass(frozen=True)
class MarketplaceAsset:
    """What the shared steps need to know about an asset: its key, what must hold of its rows, how it
    is partitioned and cut (`partition_expr`), and its merge keys (empty: the run replaces its
    partitions)."""

    key: dg.AssetKey
    invariants: Invariants = field(default_factory=Invariants)
    partitions_def: dg.PartitionsDefinition | None = None
    partition_expr: str | Mapping[str, str] | None = None
    merge_keys: tuple[str, ...] = ()
    # Partitions that are no time windows but are each named by the date of their rows (the catalog's
    # snapshots, dynamic): `dates_in_partition` checks the rows against the run's days all the same.
    dated_keys: bool = False

    @property
    def label(self) -> str:
        return "/".join(self.key.path)

    @property
    def date_column(self) -> str | None:
        """The column the time partitions (or date-named ones) are cut on, if the asset has one."""
        if self.dated_keys and isinstance(self.partition_expr, str):
            return self.partition_expr
        if time_dimension(self.partitions_def) is None or self.partition_expr is None:
            return None
        if isinstance(self.partition_expr, str):
            return self.partition_expr
        assert isinstance(self.partitions_def, dg.MultiPartitionsDefinition)
        return self.partition_expr.get(self.partitions_def.time_window_dimension.name)

    def define(
        self,
        *,
        description: str,
        sandbox: bool,
        single_run_backfills: bool = True,
        deps: Sequence[dg.AssetKey | dg.AssetDep] = (),
        automation_condition: dg.AutomationCondition | None = None,
        kinds: set[str] = KINDS,
        pool: str | None = API_POOL,
        **metadata: Any,
    ) -> Callable[[Callable[..., Iterator[Any]]], dg.AssetsDefinition]:
        """`dg.asset` with what every Marketplace asset has: its area as group, the kinds, the API pool,
        the warehouse IO manager, the source in its metadata, a freshness policy for its cadence, its
        checks, and (when partitioned) single-run backfills, so a backfill of any range is one run.
        Assets that never call the API (the metrics) pass their own `kinds` and `pool=None`."""
        definition_metadata: dict[str, Any] = {"source": "sandbox" if sandbox else "live", **metadata}
        if self.partition_expr is not None:
            definition_metadata["partition_expr"] = self.partition_expr
        if self.merge_keys:
            definition_metadata |= {"write_mode": "merge", "merge_keys": list(self.merge_keys)}
        single_run = self.partitions_def is not None and single_run_backfills
        # The keys in words (the Sunday that starts the week, ...): the UI shows only "Weekly, starting ...".
        description = "\n\n".join(p for p in (description, describe_keys(self.partitions_def)) if p)
        with beta_parameters():  # backfill_policy: a backfill of any range is one run
            return dg.asset(
                key=self.key,
                group_name=self.key.path[0],
                description=description,
                partitions_def=self.partitions_def,
                backfill_policy=dg.BackfillPolicy.single_run() if single_run else None,
                metadata=definition_metadata,
                kinds=kinds,
                pool=pool,
                io_manager_key="warehouse",
                deps=list(deps),
                automation_condition=automation_condition,
                freshness_policy=freshness_policy_for(self.partitions_def),
                check_specs=check_specs(self.key, self.invariants, date_column=self.date_column),
            )

    @contextmanager
    def api_run(
        self, context: dg.AssetExecutionContext, marketplace: MarketplaceResource
    ) -> Iterator["ApiRun"]:
        """The run's client, after saying plainly where the data comes from. An API failure inside the
        block ends the step with the report, the partitions and the API's own words (or a retry, when
        the API stayed unavailable)."""
        if marketplace.sandbox:
            context.log.info(f"Sandbox mode: {self.label} comes from the built-in simulated Marketplace.")
        client = marketplace.get_client()
        try:
            yield ApiRun(marketplace, client, client.request_count)
        except MarketplaceError as exc:
            raise _failure_or_retry(context, self.label, exc, marketplace) from exc

    def finish(
        self, context: dg.AssetExecutionContext, output: dg.Output[Rows], pii: PiiPolicy
    ) -> Iterator[dg.Output[Rows] | dg.AssetCheckResult]:
        """Apply the PII policy, check declared types, evaluate the checks, attach per-partition
        figures, then hand the rows to the IO manager. A failed blocking check stops the run before
        anything is written.

        Staged batches (`Batches`) go through the same steps batch by batch, and the checks and figures
        read them lazily, so memory stays bounded by a batch whatever the row count."""
        numeric = self.invariants.numeric_columns()

        def prepare(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
            frame, changed = pii.apply(frame)
            # Before any figure is computed on it: a text amount would fail there with a raw polars
            # error. Types against the stored table are checked by the IO manager, which has it open.
            check_field_types(frame, self.label, {}, numeric)
            return frame, changed

        rows, changed = _prepared(output.value, prepare)
        try:
            yield from _check_and_describe(context, rows, self, output.metadata, pii.describe(changed))
        except BaseException:
            if isinstance(rows, Batches):
                rows.cleanup()
            raise


def _failure_or_retry(
    context: dg.AssetExecutionContext,
    label: str,
    error: MarketplaceError,
    marketplace: MarketplaceResource,
) -> dg.Failure | dg.RetryRequested:
    """The step's end: the API's own words with the report and partitions, enough to act on from the
    run page. Only an API that stayed unavailable is transient: the step is tried again later. A 4xx,
    a wrong shape, lost records or type drift will not fix themselves, so they fail at once."""
    scope = _run_scope(context)
    message = marketplace.redact(f"{label}, {scope}: {error}")
    retries = marketplace.transient_retries
    if isinstance(error, MarketplaceUnavailableError) and context.retry_number < retries:
        wait = marketplace.transient_retry_wait
        context.log.warning(
            f"{message} Trying the step again in {wait:.0f}s (retry {context.retry_number + 1} of {retries})."
        )
        return dg.RetryRequested(max_retries=retries, seconds_to_wait=wait)
    return dg.Failure(
        description=message,
        metadata={"report": label, "partitions": scope, "error": type(error).__name__},
        allow_retries=False,
    )


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
    shape: MarketplaceAsset,
    metadata: Mapping[str, Any],
    pii_described: str,
) -> Iterator[dg.Output[Rows] | dg.AssetCheckResult]:
    frame = rows.lazy() if isinstance(rows, Batches) else rows
    # Partitioned by time (or by dates) whenever there is a date column, so the run always has its days.
    window = _run_days(context, shape) if shape.date_column else None
    results = evaluate_checks(frame, shape.invariants, date_column=shape.date_column, window=window)
    blocked = failed_before_write(results, shape.invariants, shape.date_column)
    if blocked is not None:
        yield from results
        raise dg.Failure(
            description=f"{shape.label}, {_run_scope(context)}: blocking check {blocked.check_name} "
            f"failed: {blocked.description} Nothing was written.",
            metadata={"report": shape.label, "partitions": _run_scope(context)},
            allow_retries=False,
        )
    head = frame.head(PREVIEW_ROWS)
    preview = preview_markdown(head if isinstance(head, pl.DataFrame) else head.collect())
    metadata = {**metadata, "pii": pii_described, "preview": dg.MetadataValue.md(preview)}
    if context.has_partition_key or context.has_partition_key_range:
        keys = list(shape.merge_keys)
        counted = frame.unique(keys, keep="last", maintain_order=True) if keys else frame
        assert shape.partition_expr is not None
        per_partition = figures_by_partition(
            counted,
            context.assets_def.partitions_def,  # type: ignore[arg-type]
            list(context.partition_keys),
            shape.partition_expr,
            shape.invariants.all_figures(),
            shape.label,
        )
        for partition_key, values in per_partition.items():
            context.add_asset_metadata(values, partition_key=partition_key)
        if len(per_partition) > 1:
            metadata = _summarize_once(context, metadata, per_partition)
    fields = frame.width if isinstance(frame, pl.DataFrame) else len(frame.collect_schema())
    # The IO manager writes the rows while this generator waits here; its write result is then in the
    # event log, where `no_new_fields` reads the columns the write added.
    yield dg.Output(rows, metadata=metadata)
    yield from results
    yield _new_fields_check(context, shape.key, fields)


def _summarize_once(
    context: dg.AssetExecutionContext,
    metadata: Mapping[str, Any],
    per_partition: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """A run of several partitions: the metadata true of each partition (where the rows came from, the
    PII mode) stays on every materialization; the run's own facts (requests, the export, the preview)
    go to its log and, with every partition's figures, once onto its last partition, the asset's latest
    materialization. Returns the metadata for every partition."""
    every_partition = {name: metadata[name] for name in PER_PARTITION_FACTS if name in metadata}
    facts = {
        name: value.value if isinstance(value, dg.MetadataValue) else value
        for name, value in metadata.items()
        if name not in every_partition and name != "preview"
    }
    scope = _run_scope(context)
    said = ", ".join(f"{name} {value}" for name, value in facts.items())
    context.log.info(
        f"{scope}: {said} (the run's figures; each partition has its own on its materialization)"
    )
    summary = run_summary_markdown(context.run.run_id, scope, facts, per_partition)
    context.add_asset_metadata(
        {
            "run_summary": dg.MetadataValue.md(summary),
            "figures_by_partition": dg.MetadataValue.md(figures_markdown(per_partition)),
            "preview": metadata["preview"],
        },
        partition_key=context.partition_keys[-1],
    )
    return every_partition


def _run_days(context: dg.AssetExecutionContext, shape: MarketplaceAsset) -> Window:
    """The run's days: its time window, or the first to the last of its date-named partitions."""
    if shape.dated_keys:
        days = sorted(date.fromisoformat(key) for key in context.partition_keys)
        return Window(days[0], days[-1])
    return to_window(context.partition_time_window)


def _new_fields_check(
    context: dg.AssetExecutionContext, key: dg.AssetKey, fields: int
) -> dg.AssetCheckResult:
    """`no_new_fields` from this run's write: the `added_columns` and `table_created` the IO manager
    recorded on the materialization."""
    # The newest materializations of the asset, newest first: this run's come first unless another run
    # wrote the asset since, so one small query finds them (each record carries its whole metadata).
    records = context.instance.fetch_materializations(key, limit=25).records
    materialization = next((r.asset_materialization for r in records if r.run_id == context.run.run_id), None)
    written = materialization.metadata if materialization is not None else {}
    added = written.get("added_columns")
    created = written.get("table_created")
    return new_fields_written(
        fields,
        [c for c in str(added.value).split(", ") if c] if added is not None else [],
        table_created=bool(created.value) if created is not None else False,
    )


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
