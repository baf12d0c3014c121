"""Storage layer: one warehouse table ``area.report`` per asset ``[area, report]``.

`open_warehouse` picks the backend from the configured location; `WarehouseIOManager` connects it to
Dagster. Backends share `PartitionScope` (which rows a write replaces) and the `Warehouse` protocol:
`write` replaces partitions, `merge` upserts versions on a key and keeps history.
"""

from marketplace_assets.warehouse.base import (
    MergeKeyError,
    RowsOutsideScopeError,
    TableNotFoundError,
    TableRef,
    Warehouse,
    WarehouseError,
    WriteResult,
    check_rows_in_scope,
    open_warehouse,
    prepare_merge_frame,
)
from marketplace_assets.warehouse.duckdb import DuckDBWarehouse
from marketplace_assets.warehouse.io_manager import WarehouseIOManager, WarehouseResource, scope_from_context
from marketplace_assets.warehouse.scope import PartitionScope, TimeRange

__all__ = [
    "DuckDBWarehouse",
    "MergeKeyError",
    "PartitionScope",
    "RowsOutsideScopeError",
    "TableNotFoundError",
    "TableRef",
    "TimeRange",
    "Warehouse",
    "WarehouseError",
    "WarehouseIOManager",
    "WarehouseResource",
    "WriteResult",
    "check_rows_in_scope",
    "open_warehouse",
    "prepare_merge_frame",
    "scope_from_context",
]
