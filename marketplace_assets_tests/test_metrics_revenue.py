"""metrics/revenue_monthly's SQL on a hand-made sales.transactions, on DuckDB and PostgreSQL: refunds as
the negative amounts the API reports, the month's totals equal to the raw table's to the cent, and
nothing from the months around it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from marketplace_assets.metrics.revenue import REVENUE_MONTHLY_SQL
from marketplace_assets.warehouse import TableRef, Warehouse
from marketplace_assets_tests.test_metrics_query import BACKENDS, empty_warehouse

D = dt.date
TRANSACTIONS = TableRef("sales", "transactions")
# (sale date, app, hosting, sale type, vendor amount, purchase price), as the API reports them.
LINE_ITEMS = [
    (D(2025, 1, 31), "app.a", "Cloud", "New", 999.99, 1200.00),  # January: not in February
    (D(2025, 2, 1), "app.a", "Cloud", "New", 80.10, 100.00),
    (D(2025, 2, 10), "app.a", "Cloud", "New", 0.20, 0.25),
    (D(2025, 2, 14), "app.a", "Cloud", "Refund", -80.10, -100.00),
    (D(2025, 2, 15), "app.a", "Data Center", "Renewal", 1234.56, 1500.00),
    (D(2025, 2, 28), "app.b", "Cloud", "Renewal", 10.01, 12.00),  # two lines of one invoice
    (D(2025, 2, 28), "app.b", "Cloud", "Renewal", 10.02, 12.00),
    (D(2025, 2, 20), "app.b", "Cloud", "refund", -5.55, -7.00),  # a refund, however it is spelled
    (D(2025, 3, 1), "app.a", "Cloud", "New", 50.00, 60.00),  # March: not in February
]
FEBRUARY = {"start": D(2025, 2, 1), "end": D(2025, 3, 1)}
M = D(2025, 2, 1)
# month, app, hosting, sale type, vendor amount, purchase price, line items, refunds, refund amount
EXPECTED = sorted(
    [
        (M, "app.a", "Cloud", "New", Decimal("80.30"), Decimal("100.25"), 2, 0, Decimal("0.00")),
        (M, "app.a", "Cloud", "Refund", Decimal("-80.10"), Decimal("-100.00"), 1, 1, Decimal("-80.10")),
        (M, "app.a", "Data Center", "Renewal", Decimal("1234.56"), Decimal("1500.00"), 1, 0, Decimal("0.00")),
        (M, "app.b", "Cloud", "Renewal", Decimal("20.03"), Decimal("24.00"), 2, 0, Decimal("0.00")),
        (M, "app.b", "Cloud", "refund", Decimal("-5.55"), Decimal("-7.00"), 1, 1, Decimal("-5.55")),
    ]
)


def transactions_frame(items: list[tuple]) -> pl.DataFrame:
    """Line items in the raw table's shape: the columns the metrics read (each line its own license, with
    a year of maintenance from its sale date), and an id per line."""
    return pl.DataFrame(
        {
            "transaction_line_item_id": [f"line-{i}" for i in range(len(items))],
            "app_entitlement_number": [f"E-{i}" for i in range(len(items))],
            "purchase_details_maintenance_start_date": [i[0] for i in items],
            "purchase_details_maintenance_end_date": [i[0].replace(year=i[0].year + 1) for i in items],
            "addon_key": [i[1] for i in items],
            "purchase_details_sale_date": [i[0] for i in items],
            "purchase_details_hosting": [i[2] for i in items],
            "purchase_details_sale_type": [i[3] for i in items],
            "purchase_details_vendor_amount": [i[4] for i in items],
            "purchase_details_purchase_price": [i[5] for i in items],
        }
    )


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    wh = empty_warehouse(request, tmp_path, monkeypatch)
    wh.write(TRANSACTIONS, transactions_frame(LINE_ITEMS), None)
    return wh


def test_one_row_per_month_app_hosting_and_sale_type(warehouse: Warehouse) -> None:
    result = warehouse.query(REVENUE_MONTHLY_SQL, FEBRUARY)
    assert result.columns == [
        "month", "addon_key", "hosting", "sale_type", "vendor_amount", "purchase_price", "line_items",
        "refunds", "refund_amount",
    ]  # fmt: skip
    for money in ("vendor_amount", "purchase_price", "refund_amount"):
        assert result.schema[money] == pl.Decimal(18, 2)
    assert sorted(result.rows()) == EXPECTED


def test_the_months_total_equals_the_raw_tables_to_the_cent(warehouse: Warehouse) -> None:
    result = warehouse.query(REVENUE_MONTHLY_SQL, FEBRUARY)
    raw = warehouse.query(
        "SELECT round(sum(CAST(purchase_details_vendor_amount AS DECIMAL(18, 2))), 2) AS vendor_amount, "
        "round(sum(CAST(purchase_details_purchase_price AS DECIMAL(18, 2))), 2) AS purchase_price, "
        "count(*) AS line_items FROM sales.transactions "
        "WHERE purchase_details_sale_date >= :start AND purchase_details_sale_date < :end",
        FEBRUARY,
    ).row(0)
    # By hand: 80.10 + 0.20 - 80.10 + 1234.56 + 10.01 + 10.02 - 5.55 and 100 + 0.25 - 100 + 1500 + 24 - 7.
    assert raw == (Decimal("1249.24"), Decimal("1517.25"), 7)
    totals = result.select(pl.col("vendor_amount", "purchase_price").sum(), pl.col("line_items").sum()).row(0)
    assert totals == raw
    # The refunds, also on their own: two line items, -80.10 - 5.55.
    assert result.select(pl.col("refunds").sum(), pl.col("refund_amount").sum()).row(0) == (
        2,
        Decimal("-85.65"),
    )


def test_a_month_without_sales_has_no_rows(warehouse: Warehouse) -> None:
    assert warehouse.query(REVENUE_MONTHLY_SQL, {"start": D(2025, 4, 1), "end": D(2025, 5, 1)}).height == 0
