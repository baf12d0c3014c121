"""`metrics/mrr_monthly`'s SQL on small hand-made `sales.transactions` tables whose right answers are
written out below, each run on DuckDB and on PostgreSQL: the same SQL text, the same answers.

The tables have only the columns the SQL reads, typed as the warehouse stores them (amounts DOUBLE on
DuckDB, numeric on PostgreSQL). The SQL on the sandbox's own transactions is tested in
test_metrics_mrr_sandbox.py, and the history columns in test_metrics_mrr_history.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import duckdb
import psycopg
import pytest

from marketplace_assets.metrics.mrr import MRR_MONTHLY_COLUMNS, MRR_MONTHLY_SQL
from marketplace_assets.metrics.sql import Backend, bind, parameters
from marketplace_assets_tests.postgres_server import PostgresServer
from marketplace_assets_tests.test_warehouse_copy import fresh_database

ALPHA, BETA = "com.acme.alpha", "com.acme.beta"
CLOUD, DATA_CENTER, SERVER = "Cloud", "Data Center", "Server"
MOVEMENTS = ("new", "reactivated", "expansion", "contraction", "churned")
COLUMNS = (
    ("transaction_line_item_id", "VARCHAR", "text"),
    ("addon_key", "VARCHAR", "text"),
    ("purchase_details_hosting", "VARCHAR", "text"),
    ("app_entitlement_number", "VARCHAR", "text"),
    ("purchase_details_vendor_amount", "DOUBLE", "numeric"),
    ("purchase_details_sale_date", "DATE", "date"),
    ("purchase_details_maintenance_start_date", "DATE", "date"),
    ("purchase_details_maintenance_end_date", "DATE", "date"),
)
INSERT = (
    f"INSERT INTO sales.transactions ({', '.join(c for c, _, _ in COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c, _, _ in COLUMNS)})"
)

Row = dict[str, Any]


@dataclass(frozen=True)
class Line:
    """One transaction line item: its license, vendor amount (USD) and maintenance period."""

    license: str | None
    amount: str
    starts: str | None
    ends: str | None
    sold: str | None = None  # the sale date; the maintenance start when not given
    app: str = ALPHA
    hosting: str = CLOUD

    def record(self, number: int, backend: Backend) -> dict[str, Any]:
        day, amount = date.fromisoformat, float(self.amount)
        return {
            "transaction_line_item_id": f"line-{number}",
            "addon_key": self.app,
            "purchase_details_hosting": self.hosting,
            "app_entitlement_number": self.license,
            # As the warehouse stores it: a DOUBLE on DuckDB, the float's shortest decimal on PostgreSQL.
            "purchase_details_vendor_amount": float(amount) if backend == "duckdb" else Decimal(repr(amount)),
            "purchase_details_sale_date": day(self.sold or self.starts or ""),
            "purchase_details_maintenance_start_date": day(self.starts) if self.starts else None,
            "purchase_details_maintenance_end_date": day(self.ends) if self.ends else None,
        }


Mrr = Callable[[Sequence[Line], str, str], list[Row]]


def month(text: str) -> date:
    return date.fromisoformat(text + "-01")


def row(
    when: str,
    mrr: str,
    arr: str,
    *,
    opening: str = "0.00",
    paying: int = 0,
    app: str = ALPHA,
    hosting: str = CLOUD,
    **moves: tuple[str, int],
) -> Row:
    """An expected row; `moves` maps a movement to (its amount, its licenses), the others are zero."""
    expected: Row = {
        "month": month(when),
        "addon_key": app,
        "hosting": hosting,
        "mrr": Decimal(mrr),
        "arr": Decimal(arr),
        "opening_mrr": Decimal(opening),
    }
    for name in MOVEMENTS:
        amount, licenses = moves.pop(name, ("0.00", 0))
        expected[f"{name}_mrr"], expected[f"{name}_licenses"] = Decimal(amount), licenses
    assert not moves, f"unknown movements {moves}"
    expected["paying_licenses"] = paying
    return expected


def query(con: Any, backend: Backend, start: str, end: str) -> list[Row]:
    """The SQL's rows for the months [start, end) (`YYYY-MM`) on a DuckDB or psycopg connection."""
    cursor = con.execute(bind(MRR_MONTHLY_SQL, backend), {"start": month(start), "end": month(end)})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def create_table(con: Any, backend: Backend, lines: Sequence[Line]) -> None:
    types = ", ".join(f"{c} {duck if backend == 'duckdb' else pg}" for c, duck, pg in COLUMNS)
    con.execute("CREATE SCHEMA sales")
    con.execute(f"CREATE TABLE sales.transactions ({types})")
    con.cursor().executemany(bind(INSERT, backend), [line.record(n, backend) for n, line in enumerate(lines)])


def connect(server: PostgresServer, url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """The tests' role on the database at `url` (a fresh_database)."""
    return psycopg.connect(url, password=server.password)


@pytest.fixture(scope="module")
def mrr_database(postgres_server: PostgresServer) -> str:
    """This module's database (its URL); each hand-made table lives in a transaction rolled back."""
    return fresh_database(postgres_server)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


# Said of each row's history, not of its figures: checked against the rule in test_metrics_mrr_history.py.
HISTORY = ("history_from", "mrr_complete", "movements_complete")


def without_history(rows: list[Row], lines: Sequence[Line]) -> list[Row]:
    """The rows without their history columns, once `history_from` is checked: the table's earliest sale
    date, on every row."""
    earliest = min(date.fromisoformat(line.sold or line.starts or "") for line in lines)
    assert {r["history_from"] for r in rows} <= {earliest}
    return [{k: v for k, v in r.items() if k not in HISTORY} for r in rows]


def mrr_query(request: pytest.FixtureRequest, backend: Backend) -> Mrr:
    """The SQL's rows, every column, for a table of line items and the months [start, end) (`YYYY-MM`)."""
    if backend == "duckdb":

        def duckdb_rows(lines: Sequence[Line], start: str, end: str) -> list[Row]:
            with duckdb.connect() as con:
                create_table(con, "duckdb", lines)
                return query(con, "duckdb", start, end)

        return duckdb_rows
    server, url = request.getfixturevalue("postgres_server"), request.getfixturevalue("mrr_database")

    def postgres_rows(lines: Sequence[Line], start: str, end: str) -> list[Row]:
        with connect(server, url) as con:
            create_table(con, "postgres", lines)
            rows = query(con, "postgres", start, end)
            con.rollback()  # the hand-made table goes with the transaction
            return rows

    return postgres_rows


@pytest.fixture
def mrr(request: pytest.FixtureRequest, backend: Backend) -> Mrr:
    """The SQL's rows for a table of line items and the months [start, end) (`YYYY-MM`), without the
    history columns."""
    rows = mrr_query(request, backend)
    return lambda lines, start, end: without_history(rows(lines, start, end), lines)


def test_the_sql_takes_the_window_and_returns_the_described_columns(mrr: Mrr) -> None:
    assert parameters(MRR_MONTHLY_SQL) == {"start", "end"}
    [only] = mrr([Line("E-1", "10.00", "2025-01-01", "2025-02-01")], "2025-01", "2025-02")
    # The history columns, the last ones, are checked and taken off by the fixture.
    assert [*only, *HISTORY] == list(MRR_MONTHLY_COLUMNS)


def test_an_annual_plan_across_a_year_end_counts_a_twelfth_in_each_of_its_months(mrr: Mrr) -> None:
    rows = mrr([Line("E-1", "1200.00", "2024-11-15", "2025-11-15")], "2024-10", "2026-01")
    held = ["2024-12", *(f"2025-{m:02d}" for m in range(1, 11))]
    assert rows == [
        row("2024-11", "100.00", "1200.00", paying=1, new=("100.00", 1)),
        *(row(m, "100.00", "1200.00", opening="100.00", paying=1) for m in held),
        row("2025-11", "0.00", "0.00", opening="100.00", churned=("100.00", 1)),
    ]


def test_monthly_billing_counts_in_the_month_of_its_maintenance_start(mrr: Mrr) -> None:
    lines = [
        Line("E-2", "30.00", "2025-01-10", "2025-02-10"),
        Line("E-2", "30.00", "2025-02-10", "2025-03-10"),
        Line("E-2", "45.00", "2025-03-10", "2025-04-10"),  # a bigger tier from March
    ]
    assert mrr(lines, "2025-01", "2025-05") == [
        row("2025-01", "30.00", "360.00", paying=1, new=("30.00", 1)),
        row("2025-02", "30.00", "360.00", opening="30.00", paying=1),
        row("2025-03", "45.00", "540.00", opening="30.00", paying=1, expansion=("15.00", 1)),
        row("2025-04", "0.00", "0.00", opening="45.00", churned=("45.00", 1)),
    ]


def test_a_mid_term_upgrade_spreads_its_prorated_amount_over_the_months_left(mrr: Mrr) -> None:
    lines = [
        Line("E-3", "120.00", "2025-01-01", "2026-01-01"),  # $10.00 a month
        # Upgraded on 20 April until the term's end: n = 12 x 1 + (1 - 4) = 9 months, April to December.
        Line("E-3", "50.00", "2025-04-20", "2026-01-01"),  # $5.555... a month
    ]
    assert mrr(lines, "2025-03", "2025-05") == [
        row("2025-03", "10.00", "120.00", opening="10.00", paying=1),
        row("2025-04", "15.56", "186.72", opening="10.00", paying=1, expansion=("5.56", 1)),
    ]
    assert mrr(lines, "2025-12", "2026-02") == [
        row("2025-12", "15.56", "186.72", opening="15.56", paying=1),
        row("2026-01", "0.00", "0.00", opening="15.56", churned=("15.56", 1)),
    ]


def test_refunds_are_netted_in_the_months_they_cover_whenever_they_are_sold(mrr: Mrr) -> None:
    sales = [
        Line("E-4", "60.00", "2025-02-01", "2026-02-01"),
        Line("E-5", "120.00", "2025-02-01", "2026-02-01"),
    ]
    refunds = [
        Line("E-4", "-60.00", "2025-02-01", "2026-02-01", sold="2025-03-05"),  # the whole sale
        Line("E-5", "-36.00", "2025-02-01", "2026-02-01", sold="2025-03-20"),  # part of it: $84 left
    ]
    assert mrr(sales, "2025-02", "2025-03") == [row("2025-02", "15.00", "180.00", paying=2, new=("15.00", 2))]
    # February's partition reads the refunds sold in March: E-4 never paid, E-5 pays $7.00 a month.
    assert mrr([*sales, *refunds], "2025-02", "2025-03") == [
        row("2025-02", "7.00", "84.00", paying=1, new=("7.00", 1)),
    ]
    assert mrr([*sales, *refunds], "2025-03", "2025-04") == [
        row("2025-03", "7.00", "84.00", opening="7.00", paying=1),
    ]


def test_a_downgrade_is_netted_as_contraction(mrr: Mrr) -> None:
    lines = [
        Line("E-6", "240.00", "2025-01-01", "2026-01-01", hosting=DATA_CENTER),  # $20.00 a month
        Line("E-6", "-60.00", "2025-07-01", "2026-01-01", hosting=DATA_CENTER),  # -$10.00 a month
    ]
    assert mrr(lines, "2025-06", "2025-08") == [
        row("2025-06", "20.00", "240.00", opening="20.00", paying=1, hosting=DATA_CENTER),
        row(
            "2025-07", "10.00", "120.00", opening="20.00", paying=1, hosting=DATA_CENTER,
            contraction=("10.00", 1),
        ),
    ]  # fmt: skip


def test_churn_and_reactivation_look_at_each_licenses_whole_history(mrr: Mrr) -> None:
    lines = [
        Line("E-7", "25.00", "2025-01-05", "2025-02-05"),
        Line("E-7", "25.00", "2025-03-05", "2025-04-05"),
        Line("E-8", "30.00", "2023-01-05", "2023-02-05"),  # paid 26 months before
        Line("E-8", "30.00", "2025-03-05", "2025-04-05"),
        Line("E-9", "40.00", "2025-03-05", "2025-04-05"),  # the first time
    ]
    assert mrr(lines, "2025-02", "2025-04") == [
        row("2025-02", "0.00", "0.00", opening="25.00", churned=("25.00", 1)),
        row("2025-03", "95.00", "1140.00", paying=3, new=("40.00", 1), reactivated=("55.00", 2)),
    ]


def test_mrr_is_summed_exactly_and_rounded_once_half_away_from_zero(mrr: Mrr) -> None:
    year = ("2025-01-01", "2026-01-01")
    lines = [
        # 100/12 + 100/12 = 16.666...: $16.67 (rounding each twelfth first would give $16.66).
        Line("E-10", "100.00", *year),
        Line("E-11", "100.00", *year),
        # 120.06/12 = 10.005 exactly: $10.01.
        Line("E-12", "120.06", *year, hosting=DATA_CENTER),
        # A refund whose sale is not in the warehouse: -10.005 rounds to -$10.01.
        Line("E-13", "-120.06", *year, app=BETA),
        # 0.30/12 = 0.025 exactly: $0.03 (in floating point 0.3/12 is 0.024999999999999998, $0.02).
        Line("E-14", "0.30", *year, app=BETA, hosting=SERVER),
    ]
    assert mrr(lines, "2025-01", "2025-02") == [
        row("2025-01", "16.67", "200.04", paying=2, new=("16.67", 2)),
        row("2025-01", "10.01", "120.12", paying=1, new=("10.01", 1), hosting=DATA_CENTER),
        row("2025-01", "-10.01", "-120.12", app=BETA, contraction=("10.01", 1)),
        row("2025-01", "0.03", "0.36", paying=1, new=("0.03", 1), app=BETA, hosting=SERVER),
    ]


def test_rounded_movements_add_up_to_the_rounded_mrr(mrr: Mrr) -> None:
    lines = [
        Line("E-10", "100.00", "2025-01-01", "2026-01-01"),
        Line("E-11", "100.00", "2025-02-01", "2026-02-01"),
    ]
    # December: 16.666... ($16.67); January: 8.333... ($8.33). Churned is the difference of the
    # rounded totals, $8.34, within a cent of the exact 8.333..., so the movements add up.
    assert mrr(lines, "2026-01", "2026-02") == [
        row("2026-01", "8.33", "99.96", opening="16.67", paying=1, churned=("8.34", 1)),
    ]


def test_a_line_item_without_license_is_one_without_dates_counts_in_its_sale_month(mrr: Mrr) -> None:
    lines = [
        Line(None, "12.00", "2025-01-01", "2025-02-01"),
        Line(None, "8.00", None, None, sold="2025-01-20"),
    ]
    assert mrr(lines, "2025-01", "2025-03") == [
        row("2025-01", "20.00", "240.00", paying=2, new=("20.00", 2)),
        row("2025-02", "0.00", "0.00", opening="20.00", churned=("20.00", 2)),
    ]


def test_periods_whose_common_denominator_passes_2_to_the_53_fail_loudly(mrr: Mrr) -> None:
    # Periods of 37, 41, ..., 73 months: their least common multiple is about 2.0e17, and d / n would
    # no longer be exact in DuckDB's floating-point division.
    primes = (37, 41, 43, 47, 53, 59, 61, 67, 71, 73)
    lines = [Line(f"E-{p}", "1.00", "2025-01-01", f"{2025 + p // 12}-{p % 12 + 1:02d}-01") for p in primes]
    with pytest.raises((duckdb.Error, psycopg.Error), match="MRR common denominator too large"):
        mrr(lines, "2025-01", "2025-02")


MIXED = [
    Line("E-1", "1200.00", "2024-11-15", "2025-11-15"),
    Line("E-1", "-100.01", "2025-03-15", "2025-11-15", sold="2025-03-15"),  # a downgrade
    Line("E-2", "30.00", "2025-01-10", "2025-02-10"),
    Line("E-2", "45.00", "2025-03-10", "2025-04-10"),
    Line("E-3", "120.00", "2025-01-01", "2026-01-01", hosting=DATA_CENTER),
    Line("E-3", "50.00", "2025-04-20", "2026-01-01", hosting=DATA_CENTER),
    Line("E-4", "60.00", "2025-02-01", "2026-02-01", app=BETA),
    Line("E-4", "-60.00", "2025-02-01", "2026-02-01", sold="2025-03-05", app=BETA),
    Line("E-5", "-36.07", "2025-02-01", "2026-02-01", sold="2025-03-20", app=BETA),
    Line("E-7", "25.01", "2025-01-05", "2025-02-05", app=BETA, hosting=SERVER),
    Line("E-7", "25.03", "2025-03-05", "2025-04-05", app=BETA, hosting=SERVER),
    *(Line(f"E-{n}", "0.10", "2025-01-01", "2026-01-01", app=BETA, hosting=SERVER) for n in (14, 15, 16)),
    Line("E-17", "99.99", "2024-12-31", "2027-12-31"),  # three years: n = 36
    Line("E-18", "77.77", "2025-02-28", "2025-09-01"),  # n = 7
]


def test_the_movements_add_up_every_month_and_a_window_equals_its_months(mrr: Mrr) -> None:
    rows = mrr(MIXED, "2024-10", "2028-02")
    assert {r["month"] for r in rows} >= {month("2024-11"), month("2027-12")}
    closing: dict[tuple[str, str], Row] = {}
    for r in rows:
        previous = closing.get((r["addon_key"], r["hosting"]))
        assert r["opening_mrr"] == (previous["mrr"] if previous else 0), r
        rise = r["new_mrr"] + r["reactivated_mrr"] + r["expansion_mrr"]
        assert r["opening_mrr"] + rise - r["contraction_mrr"] - r["churned_mrr"] == r["mrr"], r
        paying_before = previous["paying_licenses"] if previous else 0
        joined = r["new_licenses"] + r["reactivated_licenses"]
        assert paying_before + joined - r["churned_licenses"] == r["paying_licenses"], r
        assert r["arr"] == 12 * r["mrr"], r
        assert all(r[f"{name}_mrr"] >= 0 for name in MOVEMENTS), r
        closing[(r["addon_key"], r["hosting"])] = r
    months = [f"2025-{m:02d}" for m in range(1, 7)]
    one_by_one = [r for first, after in itertools.pairwise(months) for r in mrr(MIXED, first, after)]
    assert one_by_one == [r for r in rows if month(months[0]) <= r["month"] < month(months[-1])]
