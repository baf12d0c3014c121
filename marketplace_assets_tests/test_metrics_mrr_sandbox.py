"""`metrics/mrr_monthly`'s SQL on the sandbox's own transactions as the warehouse loads them (every column
and type as stored), on DuckDB and PostgreSQL, against the MRR rule computed independently in Python
with exact fractions. The hand-made cases are in test_metrics_mrr.py."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import duckdb
import pytest

from marketplace_assets.metrics.sql import Backend
from marketplace_assets.warehouse.copy import copy_warehouse
from marketplace_assets.warehouse.postgres_connection import PASSWORD_ENV
from marketplace_assets_tests.postgres_server import PostgresServer
from marketplace_assets_tests.test_assets import materialize
from marketplace_assets_tests.test_metrics_mrr import backend, connect, month, query  # noqa: F401 (fixture)
from marketplace_assets_tests.test_warehouse_copy import fresh_database

SALES = ("2025-01-01", "2025-02-28")  # the sale dates loaded
WINDOW = ("2025-01", "2025-05")  # the months asked for


@pytest.fixture(scope="module")
def sandbox_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB warehouse holding the sandbox's sales/transactions of SALES, loaded by the asset."""
    warehouse = tmp_path_factory.mktemp("mrr") / "warehouse.duckdb"
    materialize("sales/transactions", warehouse, range_=SALES)
    return warehouse


def cents(value: Fraction) -> Decimal:
    """Rounded to cents, half away from zero."""
    hundredths = abs(value) * 100
    whole = (2 * hundredths.numerator + hundredths.denominator) // (2 * hundredths.denominator)
    return Decimal(whole if value >= 0 else -whole).scaleb(-2)


def rule_mrr(warehouse: Path) -> dict[tuple[date, str, str], Decimal]:
    """The MRR rule, in Python, on the stored line items: each month of WINDOW x app x hosting."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        items = con.sql(
            "SELECT addon_key, purchase_details_hosting, purchase_details_vendor_amount, "
            "purchase_details_maintenance_start_date, purchase_details_maintenance_end_date "
            "FROM sales.transactions"
        ).fetchall()
    totals: dict[tuple[date, str, str], Fraction] = defaultdict(Fraction)
    for app, hosting, amount, starts, ends in items:
        n = max(1, 12 * (ends.year - starts.year) + ends.month - starts.month)
        for number in range(starts.year * 12 + starts.month - 1, starts.year * 12 + starts.month - 1 + n):
            first_day = date(number // 12, number % 12 + 1, 1)
            if month(WINDOW[0]) <= first_day < month(WINDOW[1]):
                totals[(first_day, app, hosting)] += Fraction(Decimal(repr(amount))) / n
    return {key: cents(total) for key, total in totals.items()}


def test_on_the_sandboxs_transactions_each_month_is_the_rules_exact_sum_rounded_once(
    request: pytest.FixtureRequest,
    sandbox_warehouse: Path,
    backend: Backend,  # noqa: F811 (the fixture)
) -> None:
    if backend == "duckdb":
        with duckdb.connect(str(sandbox_warehouse), read_only=True) as con:
            rows = query(con, "duckdb", *WINDOW)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = fresh_database(server)
        request.getfixturevalue("monkeypatch").setenv(PASSWORD_ENV, server.password)
        copy_warehouse(str(sandbox_warehouse), url, tables="sales.transactions", log=lambda _: None)
        with connect(server, url) as con:
            rows = query(con, "postgres", *WINDOW)
    expected = rule_mrr(sandbox_warehouse)
    assert len(expected) >= 20 and len({app for _, app, _ in expected}) >= 2
    got = {(r["month"], r["addon_key"], r["hosting"]): r["mrr"] for r in rows}
    assert {key: got[key] for key in expected} == expected
    assert all(mrr == 0 for key, mrr in got.items() if key not in expected)
