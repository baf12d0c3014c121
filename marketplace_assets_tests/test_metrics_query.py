"""The warehouse's read-only query method, on DuckDB and PostgreSQL: one SELECT with `:name` parameters,
its rows as a polars frame, money as Decimal (never float), nothing written, clear refusals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from marketplace_assets.warehouse import (
    ColumnNotFoundError,
    TableNotFoundError,
    TableRef,
    Warehouse,
    open_warehouse,
)
from marketplace_assets_tests.postgres_server import PostgresServer
from marketplace_assets_tests.test_warehouse_contract import postgres_backend

SALES = TableRef("shop", "sales")
D = dt.date
# Amounts as the raw tables hold them: floats on DuckDB (DOUBLE), exact numeric on PostgreSQL.
ROWS = pl.DataFrame(
    {
        "day": [D(2025, 1, 31), D(2025, 2, 1), D(2025, 2, 1), D(2025, 2, 28), D(2025, 3, 1)],
        "app": ["a", "a", "b", "a", "a"],
        "amount": [99.0, 0.1, 10.0, 0.2, 7.0],
    }
)
TOTALS = """
SELECT app,
       CAST(sum(CAST(amount AS DECIMAL(18, 2))) AS DECIMAL(18, 2)) AS total,
       sum(CAST(amount AS DECIMAL(18, 2))) AS undeclared_scale,
       count(*) AS items,
       min(day) AS first_day,
       'a%' AS pattern,
       CAST(:start AS DATE)::text AS since
FROM shop.sales
WHERE day >= :start AND day < :end
GROUP BY app
ORDER BY app
"""
FEBRUARY = {"start": D(2025, 2, 1), "end": D(2025, 3, 1)}


# The metric tests run on both backends: `@pytest.fixture(params=BACKENDS)` around `empty_warehouse`.
BACKENDS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


def empty_warehouse(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Warehouse:
    """A new DuckDB file, or a new database on the session's PostgreSQL server, as `request.param` says."""
    if request.param == "duckdb":
        return open_warehouse(str(tmp_path / "wh.duckdb"))
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return postgres_backend(server, monkeypatch).open()


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    return empty_warehouse(request, tmp_path, monkeypatch)


def test_named_parameters_exact_money_and_types(warehouse: Warehouse) -> None:
    warehouse.write(SALES, ROWS, None)
    result = warehouse.query(TOTALS, FEBRUARY)
    assert result.columns == ["app", "total", "undeclared_scale", "items", "first_day", "pattern", "since"]
    assert result.schema["total"] == pl.Decimal(18, 2)
    # A sum without a declared scale keeps every decimal of its values (DuckDB widens to 38 digits;
    # PostgreSQL's numeric has no scale, so the values' largest one is used).
    assert result.schema["undeclared_scale"] == pl.Decimal(38, 2)
    assert result.schema["items"] == pl.Int64 and result.schema["first_day"] == pl.Date
    # February only: 0.1 + 0.2 for app a, exactly 0.30 (as floats they would add up to 0.30000000000000004).
    assert 0.1 + 0.2 != 0.3
    assert result.rows() == [
        ("a", Decimal("0.30"), Decimal("0.30"), 2, D(2025, 2, 1), "a%", "2025-02-01"),
        ("b", Decimal("10.00"), Decimal("10.00"), 1, D(2025, 2, 1), "a%", "2025-02-01"),
    ]


def test_an_empty_result_keeps_its_columns_and_types(warehouse: Warehouse) -> None:
    warehouse.write(SALES, ROWS, None)
    empty = warehouse.query(TOTALS, {"start": D(2030, 1, 1), "end": D(2030, 2, 1)})
    assert empty.height == 0
    assert empty.schema["total"] == pl.Decimal(18, 2)
    assert empty.schema["items"] == pl.Int64 and empty.schema["first_day"] == pl.Date


def test_a_query_cannot_write(warehouse: Warehouse) -> None:
    warehouse.write(SALES, ROWS, None)
    with pytest.raises(Exception, match=r"(?i)read.only"):
        warehouse.query("DELETE FROM shop.sales WHERE day >= :start", {"start": D(2025, 1, 1)})
    assert warehouse.read(SALES).height == 5


def test_a_missing_value_or_table_is_refused_by_name(warehouse: Warehouse) -> None:
    with pytest.raises(ValueError, match=r":end but no value"):
        warehouse.query(TOTALS, {"start": D(2025, 2, 1)})
    warehouse.write(SALES, ROWS, None)
    with pytest.raises(TableNotFoundError, match=r"(?i)refunds.*does not exist"):
        warehouse.query("SELECT * FROM shop.refunds WHERE day < :end", {"end": D(2025, 3, 1)})
    # A table written before a column the SQL reads existed: a missing input too, said as a column.
    with pytest.raises(ColumnNotFoundError, match=r"(?i)currency"):
        warehouse.query("SELECT currency FROM shop.sales")
    with pytest.raises(Exception, match=r"(?i)sum") as other:  # the SQL's own mistake is not one
        warehouse.query("SELECT sum(app, amount) AS wrong FROM shop.sales")
    assert not isinstance(other.value, TableNotFoundError)
    # Values the SQL does not use are left out rather than refused.
    assert warehouse.query("SELECT count(*) AS n FROM shop.sales", {"unused": 1}).rows() == [(5,)]


def test_duckdb_without_a_file_has_no_tables(tmp_path: Path) -> None:
    with pytest.raises(TableNotFoundError, match="No warehouse file"):
        open_warehouse(str(tmp_path / "none.duckdb")).query("SELECT 1 AS one")
    assert not (tmp_path / "none.duckdb").exists()
