"""The reconciliation checks (metrics/reconcile*.py) on hand-made tables of both sides, on DuckDB and
PostgreSQL: within tolerance passes, over tolerance warns naming the app and month, a month the other
side lacks is reported as not compared. The checks in Dagster runs and against the sandbox are in
test_metrics_reconcile_runs.py.

Every expected figure below is worked out by hand in the comments beside it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from marketplace_assets.metrics.reconcile import reconciliation_result
from marketplace_assets.metrics.reconciliations import (
    MRR_VS_RECURRING_REVENUE,
    REVENUE_VS_TRANSACTIONS_BY_HOSTING,
    TRIAL_CONVERSION_VS_CONVERSION,
)
from marketplace_assets.warehouse import TableRef, Warehouse
from marketplace_assets_tests.test_metrics_query import BACKENDS, empty_warehouse

D = dt.date
JAN, FEB, MAR, APR = D(2025, 1, 1), D(2025, 2, 1), D(2025, 3, 1), D(2025, 4, 1)


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    return empty_warehouse(request, tmp_path, monkeypatch)


def write(warehouse: Warehouse, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    """`rows` (tuples in the order of the space-separated `columns`) as the table `schema.name`."""
    schema, name = table.split(".")
    frame = pl.DataFrame(rows, schema=columns.split(), orient="row")
    warehouse.write(TableRef(schema, name), frame, None)


def check(warehouse: Warehouse, reconciliation: Any, months: Sequence[dt.date]) -> dg.AssetCheckResult:
    end = months_later(months[-1], 1)
    rows = warehouse.query(reconciliation.sql, {"start": months[0], "end": end})
    return reconciliation_result(reconciliation, rows, months)


def value(result: dg.AssetCheckResult | dg.AssetCheckEvaluation, key: str) -> Any:
    entry = result.metadata[key]
    return entry.value if isinstance(entry, dg.MetadataValue) else entry


def table_rows(result: dg.AssetCheckResult | dg.AssetCheckEvaluation) -> list[list[str]]:
    """The comparison table's rows as cells (header and rule left out)."""
    lines = str(value(result, "comparison")).splitlines()[2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def outside(result: dg.AssetCheckResult | dg.AssetCheckEvaluation) -> list[list[str]]:
    return [row for row in table_rows(result) if row[-1] == "**outside**"]


# -- MRR against partner_metrics/recurring_revenue --------------------------------------------------------
def write_items(warehouse: Warehouse, items: list[tuple[str, dt.date, int]]) -> None:
    """sales.transactions line items (app, sale and maintenance start date, months of maintenance)."""
    write(
        warehouse,
        "sales.transactions",
        "addon_key purchase_details_sale_date purchase_details_maintenance_start_date "
        "purchase_details_maintenance_end_date",
        [(app, day, day, months_later(day, months)) for app, day, months in items],
    )


def months_later(day: dt.date, months: int) -> dt.date:
    """The same day `months` months later (the days used here exist in every month)."""
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1)


# mrr_monthly's rows as the metric writes them: with the history they were computed from, complete.
MRR_COLUMNS = "month addon_key hosting mrr history_from mrr_complete"
COMPLETE = (D(2024, 1, 1), True)


def test_mrr_within_tolerance_over_it_and_a_month_atlassian_lacks(warehouse: Warehouse) -> None:
    mrr = [("app.a", "Cloud", "100.00"), ("app.a", "Data Center", "50.00"), ("app.b", "Cloud", "80.00")]
    write(
        warehouse,
        "metrics.mrr_monthly",
        MRR_COLUMNS,
        [(JAN, app, hosting, Decimal(amount), *COMPLETE) for app, hosting, amount in mrr]
        + [(FEB, "app.a", "Cloud", Decimal("70.00"), *COMPLETE)],
    )
    # Atlassian's January only: app.a 150.01 (ours 100 + 50 = 150.00), app.b 90.00 (ours 80.00).
    write(
        warehouse,
        "partner_metrics.recurring_revenue",
        "date app_key closing_mrr",
        [(JAN, "app.a", 150.01), (JAN, "app.b", 90.0)],
    )
    # Monthly line items (n = 1): five of app.a's and one of app.b's cover January, so the tolerance
    # is $0.005 x (5 line items + 2 hostings) = $0.035 for app.a, shown and applied as $0.03 (both sides
    # are whole cents: rounded down, it passes the same differences), and $0.005 x (1 + 1) = $0.01 for
    # app.b.
    january = [D(2025, 1, day) for day in (5, 9, 12, 20, 27)]
    write_items(warehouse, [*(("app.a", day, 1) for day in january), ("app.b", D(2025, 1, 7), 1)])
    result = check(warehouse, MRR_VS_RECURRING_REVENUE, [JAN, FEB])
    assert not result.passed and result.severity is dg.AssetCheckSeverity.WARN
    description = result.description or ""
    assert (
        "app.b in 2025-01 (MRR, all hostings: ours 80.00, Atlassian 90.00, difference -10.00" in description
    )
    assert "app.a in" not in description, "0.01 off is within app.a's $0.03"
    assert "2025-02: partner_metrics/recurring_revenue has no row for the month" in description
    assert table_rows(result) == [
        ["2025-01", "app.b", "MRR, all hostings", "80.00", "90.00", "-10.00", "0.01", "**outside**"],
        ["2025-01", "app.a", "MRR, all hostings", "150.00", "150.01", "-0.01", "0.03", "within"],
    ]
    # Totals over the rows compared (January): 230.00 against 240.01, with their cents and unit.
    assert value(result, "ours_total") == "230.00 USD"
    assert value(result, "atlassian_total") == "240.01 USD"
    assert value(result, "difference_total") == "-10.01 USD"
    assert value(result, "largest_difference") == "10.00 USD"
    assert (value(result, "rows_compared"), value(result, "rows_outside_tolerance")) == (2, 1)
    assert value(result, "months_not_compared") == 1
    assert value(result, "outside_tolerance") == "app.b 2025-01"


def test_mrr_agreeing_passes_and_a_month_the_metric_cannot_vouch_for_is_not_compared(
    warehouse: Warehouse,
) -> None:
    write(warehouse, "partner_metrics.recurring_revenue", "date app_key closing_mrr", [(MAR, "app.a", 10.0)])
    write_items(warehouse, [("app.a", D(2025, 3, 4), 12)])
    # Computed from sales since 4 March 2025, the row says its MRR may be short (the metric's verdict,
    # test_metrics_mrr_history.py): the month is not compared.
    short_row = (MAR, "app.a", "Cloud", Decimal(10), D(2025, 3, 4), False)
    write(warehouse, "metrics.mrr_monthly", MRR_COLUMNS, [short_row])
    short = check(warehouse, MRR_VS_RECURRING_REVENUE, [MAR])
    assert not short.passed and value(short, "rows_compared") == 0
    assert (
        "2025-03: metrics/mrr_monthly was computed from sales since 2025-03-04, too late for every line "
        "item that counts in the month (mrr_complete is false): ours may be short"
    ) in (short.description or "")
    # Computed again from a longer history, it vouches for the month: compared, and agrees.
    complete_row = (MAR, "app.a", "Cloud", Decimal(10), D(2024, 4, 28), True)
    write(warehouse, "metrics.mrr_monthly", MRR_COLUMNS, [complete_row])
    agreed = check(warehouse, MRR_VS_RECURRING_REVENUE, [MAR])
    assert agreed.passed, agreed.description
    assert agreed.description == (
        "Within tolerance: 1 row(s), 1 app(s), 2025-03; the largest difference is 0.00 USD."
    )
    # A month Atlassian has MRR for and the metric has no row for was not materialized: not compared.
    write(warehouse, "partner_metrics.recurring_revenue", "date app_key closing_mrr", [(APR, "app.a", 10.0)])
    april = check(warehouse, MRR_VS_RECURRING_REVENUE, [APR])
    assert "2025-04: metrics/mrr_monthly has no row for the month: materialize it for the month" in (
        april.description or ""
    )


# -- revenue against sales/transactions_by_hosting --------------------------------------------------------
# March 2025 starts on a Saturday: its weeks start on Sundays 2, 9, 16, 23 and 30 March, the last one ends
# on Saturday 5 April. 1 March belongs to the week of 23 February (February's), 1-5 April to March's.
MARCH_WEEKS = [D(2025, 3, d) for d in (2, 9, 16, 23, 30)]
SALES = [  # sale date, app, hosting, vendor amount
    (D(2025, 3, 1), "app.a", "Cloud", 10.00),  # in February's last week
    (D(2025, 3, 10), "app.a", "Cloud", 100.00),
    (D(2025, 4, 2), "app.a", "Cloud", 5.25),  # in March's last week
    (D(2025, 4, 6), "app.a", "Cloud", 7.00),  # April's
    (D(2025, 3, 15), "app.b", "Data Center", 200.40),
    (D(2025, 3, 20), "app.b", "Data Center", -50.00),  # a refund
]


def by_hosting(cells: list[tuple[dt.date, str, str, float]]) -> list[tuple[Any, ...]]:
    """sales/transactions_by_hosting rows: every March week for app.a's Cloud (zeros included, as the API
    serves them), plus `cells` (week, app, hosting, revenue)."""
    filled = {(w, "app.a", "Cloud"): 0.0 for w in MARCH_WEEKS} | {(w, a, h): r for w, a, h, r in cells}
    return [("app", *key, revenue) for key, revenue in filled.items()]


BY_HOSTING = "scope date addon_key series revenue"
REVENUE = "month addon_key hosting sale_type vendor_amount"


def write_sales(warehouse: Warehouse, sales: list[tuple[dt.date, str, str, float]]) -> None:
    columns = "purchase_details_sale_date addon_key purchase_details_hosting purchase_details_vendor_amount"
    write(warehouse, "sales.transactions", columns, sales)


def test_revenue_on_atlassians_weeks(warehouse: Warehouse) -> None:
    write_sales(warehouse, SALES)
    # The metric's March (by sale date): app.a Cloud 10 + 100 = 110.00; app.b Data Center 200.40 - 50.
    revenue = [("app.a", "Cloud", "New", "110.00"), ("app.b", "Data Center", "New", "200.40")]
    revenue += [("app.b", "Data Center", "Refund", "-50.00")]
    write(warehouse, "metrics.revenue_monthly", REVENUE, [(MAR, *r[:3], Decimal(r[3])) for r in revenue])
    write(
        warehouse,
        "sales.transactions_by_hosting",
        BY_HOSTING,
        by_hosting(
            [
                (D(2025, 3, 9), "app.a", "Cloud", 100.00),
                (D(2025, 3, 30), "app.a", "Cloud", 5.25),
                (D(2025, 3, 9), "app.b", "Data Center", 200.00),  # whole dollars: 200.40 -> 200
                (D(2025, 3, 16), "app.b", "Data Center", -50.00),
                (D(2025, 3, 23), "app.b", "Cloud", 3000.00),  # a sale ours does not have
            ]
        ),
    )
    result = check(warehouse, REVENUE_VS_TRANSACTIONS_BY_HOSTING, [MAR, APR])
    assert not result.passed
    # app.a Cloud: 110.00 - 10.00 (1 March) + 5.25 (2 April) = 105.25 = 100 + 5.25. app.b Data Center:
    # 150.40 against 150.00, within 5 weeks x $0.50. app.b Cloud: 0 against 3,000.00.
    assert table_rows(result) == [
        ["2025-03", "app.b", "revenue, Cloud", "0.00", "3,000.00", "-3,000.00", "0.50", "**outside**"],
        ["2025-03", "app.a", "revenue, Cloud", "105.25", "105.25", "0.00", "2.50", "within"],
        ["2025-03", "app.b", "revenue, Data Center", "150.40", "150.00", "+0.40", "1.00", "within"],
    ]
    description = result.description or ""
    assert "app.b in 2025-03 (revenue, Cloud: ours 0.00, Atlassian 3,000.00" in description
    assert "2025-04: sales/transactions_by_hosting has no week starting in the month" in description
    assert value(result, "outside_tolerance") == "app.b 2025-03"


def test_revenue_needs_every_week_and_our_sales_through_the_last_one(warehouse: Warehouse) -> None:
    # Sales only up to 2 April: March's last week ends on 5 April.
    write_sales(warehouse, SALES[:3])
    write(warehouse, "metrics.revenue_monthly", REVENUE, [(MAR, "app.a", "Cloud", "New", Decimal(110))])
    write(warehouse, "sales.transactions_by_hosting", BY_HOSTING, by_hosting([]))
    result = check(warehouse, REVENUE_VS_TRANSACTIONS_BY_HOSTING, [MAR])
    assert not result.passed and value(result, "rows_compared") == 0
    assert (
        "2025-03: sales/transactions ends on 2025-04-02, before the month's last week ends (2025-04-05)"
    ) in (result.description or "")
    # Four of March's five weeks on Atlassian's side.
    write_sales(warehouse, SALES)
    write(warehouse, "sales.transactions_by_hosting", BY_HOSTING, by_hosting([])[:4])
    result = check(warehouse, REVENUE_VS_TRANSACTIONS_BY_HOSTING, [MAR])
    assert "2025-03: sales/transactions_by_hosting has 4 of the 5 weeks starting in the month" in (
        result.description or ""
    )


# -- trial conversion against sales/conversion ------------------------------------------------------------
LICENSE_VERSIONS = [  # license, app, hosting, type, maintenance start, last updated
    ("E1", "app.a", "Cloud", "net_new_evaluation", D(2025, 3, 1), D(2025, 3, 1)),  # February's week
    ("E1", "app.a", "Cloud", "COMMERCIAL", D(2025, 3, 31), D(2025, 3, 31)),  # converts in March's
    ("E2", "app.a", "Cloud", "upgrade_evaluation", D(2025, 3, 10), D(2025, 3, 10)),
    ("E3", "app.a", "Cloud", "EVALUATION", D(2025, 4, 3), D(2025, 4, 3)),  # April cohort, March's week
    ("E4", "app.a", "Data Center", "EVALUATION", D(2025, 3, 12), D(2025, 3, 12)),  # not Cloud
    ("E5", "app.b", "Cloud", "net_new_evaluation", D(2025, 2, 20), D(2025, 2, 20)),
    ("E5", "app.b", "Cloud", "COMMERCIAL", D(2025, 3, 22), D(2025, 3, 22)),  # converts in March
    ("E6", "app.b", "Cloud", "COMMERCIAL", D(2025, 4, 7), D(2025, 4, 7)),  # the history reaches 7 April
]


def test_conversion_counts_the_same_evaluations_and_conversions_on_both_sides(warehouse: Warehouse) -> None:
    columns = "app_entitlement_number addon_key hosting license_type maintenance_start_date last_updated"
    # The data insights say NA where they do not apply: the evaluations here are all in the history.
    columns += " evaluation_start_date days_to_convert_eval"
    write(warehouse, "licenses.licenses", columns, [(*v, "NA", "NA") for v in LICENSE_VERSIONS])
    # The metric's March cohort (by start day): app.a Cloud E1 and E2, app.a Data Center E4.
    cohort = [("Cloud", "net_new_evaluation"), ("Cloud", "upgrade_evaluation"), ("Data Center", "EVALUATION")]
    write(
        warehouse,
        "metrics.trial_conversion_monthly",
        "month addon_key hosting evaluation_type evaluations",
        [(MAR, "app.a", hosting, kind, 1) for hosting, kind in cohort],
    )
    # Atlassian's March weeks: app.a evaluations E2 (Upgrade, 9 March) and E3 (Net new, 30 March), app.a's
    # conversion of E1 (30 March); app.b: no evaluation, 2 conversions where ours has E5 only.
    weeks = [w.isoformat() for w in MARCH_WEEKS]
    cells = {(w, "app.a", "Evaluations", "Net new"): 0 for w in weeks} | {
        (weeks[1], "app.a", "Evaluations", "Upgrade"): 1,
        (weeks[4], "app.a", "Evaluations", "Net new"): 1,
        (weeks[4], "app.a", "Conversions", "Net new"): 1,
        (weeks[0], "app.b", "Evaluations", "Net new"): 0,
        (weeks[2], "app.b", "Conversions", "Net new"): 2,
    }
    write(
        warehouse,
        "sales.conversion",
        "scope date addon_key series conversion_type count",
        [("app", D.fromisoformat(k[0]), *k[1:], count) for k, count in cells.items()],
    )
    result = check(warehouse, TRIAL_CONVERSION_VS_CONVERSION, [MAR])
    assert not result.passed
    # app.a evaluations: the cohort's 2 (E1, E2) - E1 (1 March) + E3 (3 April) = 2; conversions: E1 (31
    # March). app.b: E5 converted on 22 March; its start (20 February) is in February's weeks.
    assert table_rows(result) == [
        ["2025-03", "app.b", "Cloud conversions", "1", "2", "-1", "0", "**outside**"],
        ["2025-03", "app.a", "Cloud conversions", "1", "1", "0", "0", "within"],
        ["2025-03", "app.a", "Cloud evaluations", "2", "2", "0", "0", "within"],
        ["2025-03", "app.b", "Cloud evaluations", "0", "0", "0", "0", "within"],
    ]
    assert "app.b in 2025-03 (Cloud conversions: ours 1, Atlassian 2, difference -1, tolerance 0)" in (
        result.description or ""
    )
    assert (value(result, "ours_total"), value(result, "atlassian_total")) == (4, 5)

    # April: no week of sales/conversion, and the history ends (7 April) before April's last week does.
    april = check(warehouse, TRIAL_CONVERSION_VS_CONVERSION, [APR])
    assert not april.passed and value(april, "rows_compared") == 0
    assert "2025-04: sales/conversion has no week starting in the month" in (april.description or "")
