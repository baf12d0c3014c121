"""Storage layer: one warehouse table ``area.report`` per asset ``[area, report]``.

`open_warehouse` picks the backend from the configured location (a DuckDB file path or a
``postgresql://`` URL); `WarehouseIOManager` connects it to Dagster. Backends share `PartitionScope`
(which rows a write replaces) and the `Warehouse` protocol: `write` replaces partitions, `merge`
upserts versions on a key and keeps history; both take a frame or `Batches` (``batches.py``).

The Dagster parts (`WarehouseIOManager`, `WarehouseResource`, `scope_from_context`) are imported on
first use, so a process that only writes (a worker, a test subprocess) does not pay for importing
Dagster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marketplace_assets.warehouse.base import (
    ColumnNotFoundError,
    MergeKeyError,
    RowsOutsideScopeError,
    TableNotFoundError,
    TableRef,
    Warehouse,
    WarehouseBusyError,
    WarehouseConnectionError,
    WarehouseError,
    WriteResult,
    check_rows_in_scope,
    open_warehouse,
    prepare_merge_frame,
)
from marketplace_assets.warehouse.batches import Batches, BatchWriter, Rows, iter_batches
from marketplace_assets.warehouse.duckdb import DuckDBWarehouse
from marketplace_assets.warehouse.scope import PartitionScope, TimeRange

if TYPE_CHECKING:
    from marketplace_assets.warehouse.io_manager import (
        WarehouseIOManager,
        WarehouseResource,
        scope_from_context,
    )
    from marketplace_assets.warehouse.postgres import PostgresWarehouse

_LAZY = {
    "WarehouseIOManager": "marketplace_assets.warehouse.io_manager",
    "WarehouseResource": "marketplace_assets.warehouse.io_manager",
    "scope_from_context": "marketplace_assets.warehouse.io_manager",
    "PostgresWarehouse": "marketplace_assets.warehouse.postgres",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BatchWriter",
    "Batches",
    "ColumnNotFoundError",
    "DuckDBWarehouse",
    "MergeKeyError",
    "PartitionScope",
    "PostgresWarehouse",
    "Rows",
    "RowsOutsideScopeError",
    "TableNotFoundError",
    "TableRef",
    "TimeRange",
    "Warehouse",
    "WarehouseBusyError",
    "WarehouseConnectionError",
    "WarehouseError",
    "WarehouseIOManager",
    "WarehouseResource",
    "WriteResult",
    "check_rows_in_scope",
    "iter_batches",
    "open_warehouse",
    "prepare_merge_frame",
    "scope_from_context",
]
