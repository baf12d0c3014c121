"""What `metrics/mrr_monthly` says of the history it was computed from: `history_from`, `mrr_complete`
and `movements_complete` on hand-made tables (right answers written out by hand, DuckDB and PostgreSQL),
then what a materialization shows of them: the count per partition and the months the summary marks.

The rule (mrr.py): a month's MRR needs the sales since the month in which the longest maintenance period
starting in or before it would start to cover it (n - 1 months before it); its movements one month more.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from marketplace_assets.dagster_conventions import range_tags
from marketplace_assets.metrics.assets import build_metric_asset
from marketplace_assets.metrics.catalog import MRR_MONTHLY
from marketplace_assets.metrics.sql import Backend
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.warehouse import (
    DuckDBWarehouse,
    TableRef,
    Warehouse,
    WarehouseIOManager,
    WarehouseResource,
)
from marketplace_assets_tests.test_metrics_mrr import (  # noqa: F401 (fixtures)
    Line,
    Row,
    backend,
    month,
    mrr_database,
    mrr_query,
)
from marketplace_assets_tests.test_metrics_query import BACKENDS, empty_warehouse

HISTORY = ("month", "history_from", "mrr_complete", "movements_complete")


@pytest.fixture
def history(request: pytest.FixtureRequest, backend: Backend) -> Any:  # noqa: F811 (the fixture)
    """(month, history_from, mrr_complete, movements_complete) of each row, for the months [start, end),
    on each backend (test_metrics_mrr.py's `backend` fixture)."""
    rows = mrr_query(request, backend)

    def of(lines: list[Line], start: str, end: str) -> list[tuple[Any, ...]]:
        return [tuple(r[c] for c in HISTORY) for r in rows(lines, start, end)]

    return of


def test_an_annual_plan_needs_11_months_of_sales_before_the_month_and_its_movements_12(history: Any) -> None:
    # The only sale: an annual plan from 15 November 2024, so the loaded history starts that day.
    lines = [Line("E-1", "1200.00", "2024-11-15", "2025-11-15")]
    sold = dt.date(2024, 11, 15)
    assert history(lines, "2025-09", "2025-12") == [
        # September: a plan starting in October 2024 would cover it, and no sale before November is loaded.
        (month("2025-09"), sold, False, False),
        # October: every plan that can cover it started in November 2024 or later; September's cannot.
        (month("2025-10"), sold, True, False),
        (month("2025-11"), sold, True, True),  # the month the plan's lapse shows as churn
    ]


def test_monthly_billing_alone_needs_only_the_month_and_the_one_before(history: Any) -> None:
    lines = [
        Line("E-2", "30.00", "2025-01-10", "2025-02-10"),
        Line("E-2", "30.00", "2025-02-10", "2025-03-10"),
        Line("E-2", "30.00", "2025-03-10", "2025-04-10"),
    ]
    january = dt.date(2025, 1, 10)
    assert history(lines, "2025-01", "2025-04") == [
        (month("2025-01"), january, True, False),  # December's MRR, January's opening, is not loaded
        (month("2025-02"), january, True, True),
        (month("2025-03"), january, True, True),
    ]


def test_a_longer_period_counts_from_the_month_it_starts_in(history: Any) -> None:
    # Monthly billing from January, and a 24-month plan from March: February is complete, March is not
    # (a 24-month plan from April 2023 on would cover it).
    lines = [
        Line("E-3", "30.00", "2025-01-01", "2025-02-01"),
        Line("E-3", "30.00", "2025-02-01", "2025-03-01"),
        Line("E-4", "2400.00", "2025-03-01", "2027-03-01"),
    ]
    january = dt.date(2025, 1, 1)
    rows = history(lines, "2025-02", "2025-04")
    assert rows == [
        (month("2025-02"), january, True, True),
        (month("2025-03"), january, False, False),  # E-3's churn and E-4's start: one app, one hosting
    ]
    # The same flags month by month as for the window: a later plan never changes an earlier month.
    assert history(lines, "2025-02", "2025-03") + history(lines, "2025-03", "2025-04") == rows


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    return empty_warehouse(request, tmp_path, monkeypatch)


def _transactions(lines: list[tuple[str, str, float, str, str]]) -> pl.DataFrame:
    """(license, app, vendor amount, maintenance start, maintenance end) -> sales.transactions rows."""
    day = dt.date.fromisoformat
    return pl.DataFrame(
        {
            "transaction_line_item_id": [f"line-{n}" for n in range(len(lines))],
            "addon_key": [app for _, app, *_ in lines],
            "purchase_details_hosting": ["Cloud"] * len(lines),
            "app_entitlement_number": [license for license, *_ in lines],
            "purchase_details_vendor_amount": [amount for _, _, amount, _, _ in lines],
            "purchase_details_sale_date": [day(starts) for *_, starts, _ in lines],
            "purchase_details_maintenance_start_date": [day(starts) for *_, starts, _ in lines],
            "purchase_details_maintenance_end_date": [day(ends) for *_, ends in lines],
        }
    )


def test_a_materialization_counts_and_marks_the_months_the_history_does_not_cover(
    warehouse: Warehouse,
) -> None:
    # Sales from 10 March 2024: an annual plan renewed a year later, and monthly billing in 2025.
    lines = [
        ("E-1", "app.a", 1200.0, "2024-03-10", "2025-03-10"),
        ("E-1", "app.a", 1200.0, "2025-03-10", "2026-03-10"),
        ("E-2", "app.b", 30.0, "2025-01-05", "2025-02-05"),
        ("E-2", "app.b", 30.0, "2025-02-05", "2025-03-05"),
    ]
    warehouse.write(TableRef("sales", "transactions"), _transactions(lines), None)
    location = str(warehouse.path) if isinstance(warehouse, DuckDBWarehouse) else warehouse.url
    resources = {
        "warehouse": WarehouseIOManager(warehouse=location),
        "warehouse_store": WarehouseResource(warehouse=location),
        "pii": PiiPolicy(),
    }
    asset = build_metric_asset(MRR_MONTHLY, start_date=dt.date(2024, 1, 1), sandbox=False)
    result = dg.materialize(
        [asset],
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        tags=range_tags("2025-01-01", "2025-03-01"),
    )
    assert result.success
    metadata = {
        str(e.partition): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    # By hand: MRR is complete from February 2025 (11 months after March 2024), movements from March.
    # January: app.a's and app.b's rows; February: both; March: both (app.b's churn).
    counts = {
        k: (m["rows_with_incomplete_mrr"], m["rows_with_incomplete_movements"]) for k, m in metadata.items()
    }
    assert counts == {"2025-01-01": (2, 2), "2025-02-01": (0, 2), "2025-03-01": (0, 0)}
    summary = str(metadata["2025-03-01"]["summary"]).splitlines()
    # Amounts, then license counts: two tables, the marks with the first.
    assert summary[2] == (
        "| month | mrr | arr | opening_mrr | new_mrr | reactivated_mrr | expansion_mrr | contraction_mrr "
        "| churned_mrr | complete |"
    )
    # March: app.a's renewal keeps its 100.00 a month; app.b's 30.00 monthly billing lapses.
    assert "| 2025-03-01 | 100.00 | 1,200.00 | 130.00 | 0.00 | 0.00 | 0.00 | 0.00 | 30.00 | yes |" in summary
    counts = summary.index(
        "| month | paying_licenses | new_licenses | reactivated_licenses | expansion_licenses "
        "| contraction_licenses | churned_licenses |"
    )
    assert "| 2025-03-01 | 1 | 0 | 0 | 0 | 0 | 1 |" in summary[counts:]
    by_month = {line[2:12]: line.rsplit("|", 2)[-2].strip() for line in summary[4:16]}
    assert by_month["2024-12-01"] == "", "a month without rows says nothing"
    assert by_month["2025-01-01"] == "**MRR incomplete**, **movements incomplete**"
    assert by_month["2025-02-01"] == "**movements incomplete**"
    assert by_month["2025-03-01"] == "yes"
    # Under the table, what each mark means.
    assert any(line.startswith("**MRR incomplete**: the sales loaded") for line in summary)
    assert any(line.startswith("**movements incomplete**: the sales loaded") for line in summary)
