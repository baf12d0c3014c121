"""Storage layer: one warehouse table ``area.report`` per asset ``[area, report]``.

`open_warehouse` picks the backend from the configured location; `WarehouseIOManager` connects it to
Dagster. Backends share `PartitionScope` (which rows a write replaces) and the `Warehouse` protocol.
"""

from marketplace_assets.warehouse.base import (
    RowsOutsideScopeError,
    TableNotFoundError,
    TableRef,
    Warehouse,
    WarehouseError,
    WriteResult,
    check_rows_in_scope,
    open_warehouse,
)
from marketplace_assets.warehouse.duckdb import DuckDBWarehouse
from marketplace_assets.warehouse.io_manager import WarehouseIOManager, WarehouseResource, scope_from_context
from marketplace_assets.warehouse.scope import PartitionScope, TimeRange

__all__ = [
    "DuckDBWarehouse",
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
    "scope_from_context",
]
