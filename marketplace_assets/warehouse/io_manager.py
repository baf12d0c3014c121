"""The Dagster IO manager: asset ``[area, report]`` <-> warehouse table ``area.report``.

It translates a Dagster context into a `TableRef` and a `PartitionScope`, and leaves every storage
decision to the `Warehouse` backend. The partition column comes from the asset's definition metadata
``partition_expr``, the same convention as dagster-duckdb: a column name for single-dimension
partitions, ``{dimension_name: column}`` for multi-partitions.

The write mode comes from ``write_mode``: ``"replace"`` (the default) replaces the run's partitions;
``"merge"`` upserts the rows on the columns listed in ``merge_keys`` and never deletes a stored
version, e.g. ``metadata={"partition_expr": "last_updated", "write_mode": "merge",
"merge_keys": ["license_id", "last_updated"]}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from marketplace_assets.api.errors import TypeDriftError
from marketplace_assets.columns import describe_column
from marketplace_assets.field_types import check_stored_types
from marketplace_assets.warehouse.base import (
    TableRef,
    Warehouse,
    WarehouseBusyError,
    WriteResult,
    open_warehouse,
)
from marketplace_assets.warehouse.batches import Batches, Rows
from marketplace_assets.warehouse.scope import PartitionScope, TimeRange

PARTITION_EXPR = "partition_expr"
WRITE_MODE = "write_mode"
MERGE_KEYS = "merge_keys"
REPLACE = "replace"
MERGE = "merge"
COLUMN_SCHEMA = "dagster/column_schema"


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores each asset's polars frame in the warehouse table ``area.report``.

    Partitioned outputs replace exactly the rows of the partitions being materialized (one
    transaction); unpartitioned outputs replace the whole table. Assets with ``write_mode: "merge"``
    upsert on their ``merge_keys`` instead and keep every stored version. Inputs load the upstream
    rows of the requested partitions as a polars frame.
    """

    warehouse: str = Field(
        description="DuckDB file path (created on first write), or a postgresql://user@host:port/db URL."
    )
    password: str | None = Field(
        default=None,
        description="The PostgreSQL password, bound to MARKETPLACE_WAREHOUSE_PASSWORD; never shown",
    )
    # A write that found the warehouse locked by another process for the whole lock timeout is tried
    # again this many times, this many seconds later (the lock is held by a run that will finish).
    busy_retries: int = 2
    busy_retry_wait: float = 30.0

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame) -> None:
        table = _table(context)
        metadata = context.definition_metadata or {}
        merge_keys = merge_keys_from_metadata(context.asset_key.to_user_string(), metadata)
        frame = _as_frame(obj, context)
        scope = scope_from_context(context, metadata)
        where = f"{context.asset_key.to_user_string()}, {scope if scope is not None else 'whole table'}"

        def say_waiting(waited: float) -> None:
            context.log.info(f"{where}: waiting for the warehouse's write lock ({waited:.0f}s so far)")

        warehouse = open_warehouse(self.warehouse, on_wait=say_waiting, password=self.password)
        try:
            # Before anything is written, against what the table holds: a text amount for a number
            # column fails here naming the field, not as the database's conversion error mid-write.
            check_stored_types(frame, context.asset_key.to_user_string(), warehouse.table_columns(table))
            if merge_keys is None:
                result = warehouse.write(table, frame, scope)
            else:
                result = warehouse.merge(table, frame, merge_keys, scope)
            if isinstance(frame, Batches):
                frame.cleanup()  # staged on disk for this write only; a retry stages again
        except TypeDriftError as exc:
            if isinstance(frame, Batches):
                frame.cleanup()
            raise dg.Failure(description=f"{where}: {exc}", allow_retries=False) from None
        except WarehouseBusyError as exc:
            if self.busy_retries <= 0:
                raise
            # Dagster counts the attempts: past busy_retries the step fails with this error as cause.
            context.log.warning(f"{where}: {exc} Trying the step again in {self.busy_retry_wait:.0f}s.")
            raise dg.RetryRequested(
                max_retries=self.busy_retries, seconds_to_wait=self.busy_retry_wait
            ) from exc
        if result.duplicates_dropped and merge_keys is not None:
            context.log.warning(
                f"Dropped {result.duplicates_dropped} row(s) that repeat a key ({', '.join(merge_keys)}) "
                f"of {table}; kept the last row of each key"
            )
        if result.widened_columns:
            context.log.warning(
                f"Widened column(s) {', '.join(result.widened_columns)} of {table} to a fractional type: "
                "the API sent fractions where it had sent whole numbers"
            )
        if result.added_columns:
            context.log.info(
                f"Added column(s) {', '.join(result.added_columns)} to {table}; older rows read as null there"
            )
        if result.skipped_reason:
            context.log.warning(f"Nothing stored: {result.skipped_reason}")
        partitions = len(context.asset_partition_keys) if context.has_asset_partitions else 0
        if partitions > 1:
            context.log.info(f"{where}: {describe_write(result, merge_keys)}")
        declared = declared_descriptions(metadata)
        context.add_output_metadata(
            output_metadata(result, scope, merge_keys, partitions=partitions, descriptions=declared)
        )

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        table = _table(context)
        upstream = context.upstream_output
        metadata = (upstream.definition_metadata if upstream is not None else None) or {}
        scope = scope_from_context(context, metadata)
        return open_warehouse(self.warehouse, password=self.password).read(table, scope)


def output_metadata(
    result: WriteResult,
    scope: PartitionScope | None,
    merge_keys: Sequence[str] | None = None,
    *,
    partitions: int = 0,
    descriptions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Materialization metadata; ``merge_keys`` is given for merge writes, ``partitions`` is the number
    of partitions the output covers (0: unpartitioned); ``descriptions`` are the asset's own column
    descriptions, which come before the shared vocabulary of ``columns.py``.

    Dagster copies an output's metadata onto the materialization of every partition it covers. The
    table and its columns are true for each of them. The write's counts (rows written, replaced,
    inserted, ...) and its scope are the partition's own only when the output is one partition; for an
    output of several they describe the run, so they go to the run's log (`describe_write`) instead of
    drawing the run's total as a flat line beside the per-partition figures in the UI's plots."""
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=sql_type,
                # The table's own meaning of the column: `date`, `count`, ... differ between reports.
                description=(descriptions or {}).get(name)
                or describe_column(f"{result.table.schema}/{result.table.name}", name),
            )
            for name, sql_type in result.columns.items()
        ]
    )
    metadata: dict[str, Any] = {
        "dagster/table_name": str(result.table),
        COLUMN_SCHEMA: schema,
    }
    if merge_keys is not None:
        metadata |= {"write_mode": MERGE, "merge_keys": ", ".join(merge_keys)}
    if result.added_columns:
        metadata["added_columns"] = ", ".join(result.added_columns)
    if result.created_table:
        metadata["table_created"] = True
    if partitions > 1:
        return metadata
    # Rows of the output as stored: after a merge dropped repeated keys.
    metadata |= {
        "dagster/row_count": result.rows_written,
        "partition_scope": str(scope) if scope is not None else "whole table",
    }
    if merge_keys is None:
        metadata["rows_replaced"] = result.rows_deleted
    else:
        metadata |= {
            "rows_inserted": result.rows_inserted,
            "rows_updated": result.rows_updated,
            "duplicates_dropped": result.duplicates_dropped,
        }
    return metadata


def declared_descriptions(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Column -> description from the asset's own ``dagster/column_schema`` definition metadata (the
    metrics declare theirs), empty when it declares none."""
    schema = _unwrap(metadata.get(COLUMN_SCHEMA))
    if not isinstance(schema, dg.TableSchema):
        return {}
    return {column.name: column.description for column in schema.columns if column.description}


def describe_write(result: WriteResult, merge_keys: Sequence[str] | None) -> str:
    """The write in words, for the run's log: what a one-partition output carries as metadata."""
    if merge_keys is None:
        changed = f"replacing {result.rows_deleted:,} stored row(s)"
    else:
        changed = (
            f"{result.rows_inserted:,} inserted, {result.rows_updated:,} updated, "
            f"{result.duplicates_dropped:,} repeated key(s) dropped"
        )
    return f"wrote {result.rows_written:,} row(s) to {result.table}, {changed}."


def merge_keys_from_metadata(asset: str, metadata: Mapping[str, Any]) -> list[str] | None:
    """The key columns of a merge asset; None for a replace asset. Refuses unclear configurations."""
    mode = _unwrap(metadata.get(WRITE_MODE, REPLACE))
    raw_keys = _unwrap(metadata.get(MERGE_KEYS))
    example = f'metadata={{"{WRITE_MODE}": "{MERGE}", "{MERGE_KEYS}": ["<key column>", ...]}}'
    if mode not in (REPLACE, MERGE):
        raise dg.DagsterInvariantViolationError(
            f"Asset '{asset}' has '{WRITE_MODE}' {mode!r}; the warehouse knows '{REPLACE}' (the default: "
            f"replace the run's partitions) and '{MERGE}' (upsert on key columns, keep history). Set "
            f'"{WRITE_MODE}": "{REPLACE}", or {example}.'
        )
    if mode == REPLACE:
        if raw_keys is not None:
            # Probably a forgotten write_mode: replacing partitions would delete stored versions.
            raise dg.DagsterInvariantViolationError(
                f"Asset '{asset}' has '{MERGE_KEYS}' but writes in '{REPLACE}' mode, which deletes the "
                f"rows of its partitions on every run. To merge on those keys add "
                f'"{WRITE_MODE}": "{MERGE}"; otherwise remove \'{MERGE_KEYS}\'.'
            )
        return None
    if raw_keys is None:
        raise dg.DagsterInvariantViolationError(
            f"Asset '{asset}' has '{WRITE_MODE}': '{MERGE}' but no '{MERGE_KEYS}', so the warehouse cannot "
            f"tell which stored row a new row updates. Add the key columns, {example}."
        )
    if (
        isinstance(raw_keys, str)
        or not isinstance(raw_keys, Sequence)
        or not raw_keys
        or not all(isinstance(k, str) and k for k in raw_keys)
    ):
        raise dg.DagsterInvariantViolationError(
            f"Asset '{asset}' has '{MERGE_KEYS}' {raw_keys!r}; it must be a non-empty list of column "
            f'names, e.g. "{MERGE_KEYS}": ["license_id", "last_updated"].'
        )
    return list(raw_keys)


def scope_from_context(
    context: dg.OutputContext | dg.InputContext, metadata: Mapping[str, Any]
) -> PartitionScope | None:
    """The rows an output replaces or an input loads; None means the whole table.

    - time-window partitions: one half-open window spanning every partition of the run, so a
      single-run backfill replaces its whole range at once;
    - static or dynamic partitions: the run's partition keys;
    - multi-partitions: one (window or key, per dimension) cell per partition key of the run, touching
      windows of one key joined.
    """
    if not context.has_asset_partitions:
        return None
    columns, cells = partition_cells(
        context.asset_key.to_user_string(),
        context.asset_partitions_def,
        _unwrap(metadata.get(PARTITION_EXPR)),
        list(context.asset_partition_keys),
    )
    return PartitionScope.combinations(columns, cells)


def partition_cells(
    asset: str, partitions_def: dg.PartitionsDefinition, partition_expr: Any, keys: Sequence[str]
) -> tuple[list[str], list[tuple[TimeRange | str, ...]]]:
    """The partition columns, and one cell per partition key (in the order of ``keys``): per column a
    time range (time dimensions) or the key itself (static and dynamic ones). Refuses a
    ``partition_expr`` that does not fit the partitions definition."""
    if partition_expr is None:
        raise dg.DagsterInvariantViolationError(
            f"Asset '{asset}' is partitioned but has no '{PARTITION_EXPR}' metadata, so the warehouse "
            "cannot tell which column holds the partition and which rows to replace. Add "
            f'metadata={{"{PARTITION_EXPR}": "<column>"}} to the asset (for multi-partitions '
            f'{{"{PARTITION_EXPR}": {{"<dimension>": "<column>", ...}}}}).'
        )
    if not isinstance(partitions_def, dg.MultiPartitionsDefinition):
        if not isinstance(partition_expr, str):
            raise dg.DagsterInvariantViolationError(
                f"Asset '{asset}' has one partition dimension, so '{PARTITION_EXPR}' must be a column name "
                f"(a string); got {partition_expr!r}."
            )
        return [partition_expr], [(_cell_value(partitions_def, key),) for key in keys]
    dimensions = partitions_def.partitions_defs
    names = [d.name for d in dimensions]
    if not isinstance(partition_expr, Mapping) or set(partition_expr) != set(names):
        raise dg.DagsterInvariantViolationError(
            f"Asset '{asset}' is multi-partitioned by {names}, so '{PARTITION_EXPR}' must map each "
            f"dimension to its column, e.g. {{{', '.join(f'{n!r}: <column>' for n in names)}}}; "
            f"got {partition_expr!r}."
        )
    cells = []
    for key in keys:
        multi_key = (
            key if isinstance(key, dg.MultiPartitionKey) else partitions_def.get_partition_key_from_str(key)
        )
        by_dimension = multi_key.keys_by_dimension
        cells.append(tuple(_cell_value(d.partitions_def, by_dimension[d.name]) for d in dimensions))
    return [str(partition_expr[name]) for name in names], cells


def _cell_value(partitions_def: dg.PartitionsDefinition, key: str) -> TimeRange | str:
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return _time_range(partitions_def.time_window_for_partition_key(key))
    return key


def _time_range(window: dg.TimeWindow) -> TimeRange:
    """Day-aligned windows (daily, weekly, monthly) become dates, matching the DATE columns they
    partition; anything finer becomes naive UTC datetimes."""
    start, end = window.start, window.end
    if _is_midnight(start) and _is_midnight(end):
        return TimeRange(start.date(), end.date())
    return TimeRange(_naive_utc(start), _naive_utc(end))


def _is_midnight(value: dt.datetime) -> bool:
    return value.time() == dt.time(0, 0)


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _unwrap(value: Any) -> Any:
    # Definition metadata may arrive wrapped (e.g. a JsonMetadataValue for a dict).
    return value.value if isinstance(value, dg.MetadataValue) else value


def _table(context: dg.OutputContext | dg.InputContext) -> TableRef:
    if not context.has_asset_key:
        raise dg.DagsterInvariantViolationError(
            "WarehouseIOManager stores assets only: this output/input has no asset key, so there is no "
            "[area, report] to name its table after"
        )
    return TableRef.from_asset_key(context.asset_key.path)


def _as_frame(obj: Any, context: dg.OutputContext) -> Rows:
    if isinstance(obj, pl.LazyFrame):
        return obj.collect()
    if isinstance(obj, pl.DataFrame | Batches):
        return obj
    raise dg.DagsterInvariantViolationError(
        "WarehouseIOManager stores polars DataFrames (or staged Batches); asset "
        f"'{context.asset_key.to_user_string()}' returned {type(obj).__name__}"
    )


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse for code that is not an asset's input or output (sensors, checks, jobs)."""

    warehouse: str = Field(description="DuckDB file path, the same location the IO manager writes to.")

    password: str | None = Field(
        default=None,
        description="The PostgreSQL password, bound to MARKETPLACE_WAREHOUSE_PASSWORD; never shown",
    )

    def open(
        self, *, lock_timeout: float = 60.0, on_wait: Callable[[float], None] | None = None
    ) -> Warehouse:
        return open_warehouse(
            self.warehouse, lock_timeout=lock_timeout, on_wait=on_wait, password=self.password
        )
