"""Metric assets materialized with `dg.materialize`: per-partition figures, the summary on the latest
materialization and partitions replaced one by one (into DuckDB and PostgreSQL); then, into a temporary
DuckDB warehouse, the sandbox's raw transactions and licenses of a month and every metric, revenue's total
equal to the raw table's."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from marketplace_assets.dagster_conventions import range_tags
from marketplace_assets.definitions import build_assets
from marketplace_assets.metrics.assets import build_metric_asset, build_metric_assets
from marketplace_assets.metrics.catalog import REVENUE_MONTHLY
from marketplace_assets.metrics.revenue import REVENUE_MONTHLY_COLUMNS
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.sandbox.resource import SandboxMarketplaceResource
from marketplace_assets.settings import SANDBOX_DEVELOPER_ID, MarketplaceSettings
from marketplace_assets.warehouse import (
    DuckDBWarehouse,
    TableRef,
    Warehouse,
    WarehouseIOManager,
    WarehouseResource,
    open_warehouse,
)
from marketplace_assets_tests.resources import asset_resources
from marketplace_assets_tests.test_metrics_query import BACKENDS, empty_warehouse
from marketplace_assets_tests.test_metrics_revenue import LINE_ITEMS, transactions_frame

START = dt.date(2024, 1, 1)
TRANSACTIONS = TableRef("sales", "transactions")
SANDBOX = SandboxMarketplaceResource(developer_id=SANDBOX_DEVELOPER_ID, export_poll_interval=0.01)


def _by_partition(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        str(event.partition): {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def _summary_lines(metadata: dict[str, Any]) -> list[str]:
    return str(metadata["summary"]).splitlines()


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    return empty_warehouse(request, tmp_path, monkeypatch)


def test_figures_per_partition_a_summary_and_partitions_replaced(warehouse: Warehouse) -> None:
    warehouse.write(TRANSACTIONS, transactions_frame(LINE_ITEMS), None)
    asset = build_metric_asset(REVENUE_MONTHLY, start_date=START, sandbox=False)
    # The PostgreSQL password comes from MARKETPLACE_WAREHOUSE_PASSWORD, as in a deployment.
    location = str(warehouse.path) if isinstance(warehouse, DuckDBWarehouse) else warehouse.url
    resources = {
        "warehouse": WarehouseIOManager(warehouse=location),
        "warehouse_store": WarehouseResource(warehouse=location),
        "pii": PiiPolicy(),
    }
    instance = dg.DagsterInstance.ephemeral()

    backfill = dg.materialize(
        [asset], resources=resources, instance=instance, tags=range_tags("2025-01-01", "2025-02-01")
    )
    assert backfill.success
    assert all(c.passed for c in backfill.get_asset_check_evaluations())
    metadata = _by_partition(backfill)
    figures = (
        "vendor_amount",
        "purchase_price",
        "refund_amount",
        "line_items",
        "refunds",
        "dagster/row_count",
    )
    # By hand from the line items (test_metrics_revenue.py): January's one sale; February's seven line
    # items in five rows, two of them refunds (-80.10 and -5.55).
    assert tuple(metadata["2025-01-01"][f] for f in figures) == (999.99, 1200.0, 0.0, 1, 0, 1)
    assert tuple(metadata["2025-02-01"][f] for f in figures) == (1249.24, 1517.25, -85.65, 7, 2, 5)
    schema = metadata["2025-02-01"]["dagster/column_schema"]
    assert {c.name: c.description for c in schema.columns} == {
        name: column.description for name, column in REVENUE_MONTHLY_COLUMNS.items()
    }
    # Exact on both: DECIMAL(18,2) on DuckDB, numeric on PostgreSQL.
    stored = "DECIMAL(18,2)" if isinstance(warehouse, DuckDBWarehouse) else "numeric"
    assert {c.name: c.type for c in schema.columns}["vendor_amount"] == stored
    # The summary goes onto the run's last partition: the 12 months up to it, and its top apps.
    assert "summary" not in metadata["2025-01-01"]
    lines = _summary_lines(metadata["2025-02-01"])
    assert lines[2] == "| month | vendor_amount | purchase_price | refund_amount | line_items | refunds |"
    assert [line[2:12] for line in lines[4:16]] == [
        f"{y}-{m:02d}-01" for y, m in [*((2024, m) for m in range(3, 13)), (2025, 1), (2025, 2)]
    ]
    assert lines[4] == "| 2024-03-01 |  |  |  |  |  |", "a month without rows is empty"
    assert "| 2025-01-01 | 999.99 | 1,200.00 | 0.00 | 1 | 0 |" in lines
    assert "| 2025-02-01 | 1,249.24 | 1,517.25 | -85.65 | 7 | 2 |" in lines
    # app.a: 80.30 - 80.10 + 1234.56 = 1234.76 of 1249.24; app.b: 20.03 - 5.55 = 14.48.
    assert "| app.a | 1,234.76 | 98.8% |" in lines and "| app.b | 14.48 | 1.2% |" in lines

    march = dg.materialize([asset], resources=resources, instance=instance, partition_key="2025-03-01")
    assert march.success
    lines = _summary_lines(_by_partition(march)["2025-03-01"])
    # The stored months come from the table, the run's from its own rows.
    assert "| 2025-02-01 | 1,249.24 | 1,517.25 | -85.65 | 7 | 2 |" in lines
    assert "| 2025-03-01 | 50.00 | 60.00 | 0.00 | 1 | 0 |" in lines
    assert "| app.a | 50.00 | 100.0% |" in lines

    # A late refund of 10.01 on 27 February: February is replaced, the other months are kept.
    late = transactions_frame(
        [*LINE_ITEMS, (dt.date(2025, 2, 27), "app.b", "Cloud", "Refund", -10.01, -12.0)]
    )
    warehouse.write(TRANSACTIONS, late, None)
    again = dg.materialize([asset], resources=resources, instance=instance, partition_key="2025-02-01")
    assert _by_partition(again)["2025-02-01"]["vendor_amount"] == 1239.23
    months = warehouse.query(
        "SELECT month, count(*) AS line_rows, sum(vendor_amount) AS vendor_amount "
        "FROM metrics.revenue_monthly GROUP BY month ORDER BY month"
    )
    assert months.rows() == [
        (dt.date(2025, 1, 1), 1, Decimal("999.99")),
        (dt.date(2025, 2, 1), 6, Decimal("1239.23")),
        (dt.date(2025, 3, 1), 1, Decimal("50.00")),
    ]


def test_a_metric_whose_inputs_were_never_loaded_fails_saying_which(tmp_path: Path) -> None:
    open_warehouse(str(tmp_path / "wh.duckdb")).write(
        TableRef("other", "table"), transactions_frame(LINE_ITEMS), None
    )
    asset = build_metric_asset(REVENUE_MONTHLY, start_date=START, sandbox=False)
    with pytest.raises(
        dg.Failure,
        match=r"metrics/revenue_monthly, partition 2025-02-01: .*Materialize sales/transactions first",
    ):
        dg.materialize(
            [asset], resources=asset_resources(SANDBOX, tmp_path / "wh.duckdb"), partition_key="2025-02-01"
        )


def test_the_sandboxs_month_and_its_metrics(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    settings = MarketplaceSettings(sandbox=True, start_date="2025-01-01", warehouse=str(warehouse))
    raw = {a.key.to_user_string(): a for a in build_assets(settings)}
    metrics = {a.key.path[1]: a for a in build_metric_assets(start_date=settings.start_date, sandbox=True)}
    resources = asset_resources(SANDBOX, warehouse)
    instance = dg.DagsterInstance.ephemeral()
    february = range_tags("2025-02-01", "2025-02-28")
    assert dg.materialize(
        [raw["sales/transactions"]], resources=resources, instance=instance, tags=february
    ).success
    # The history as a one-off backfill stores it (each license as it is now, if it last changed in these
    # two months): January's evaluations that expired by February are in it.
    since_january = range_tags("2025-01-01", "2025-02-28")
    assert dg.materialize(
        [raw["licenses/licenses"]], resources=resources, instance=instance, tags=since_january
    ).success
    revenue = dg.materialize(
        [metrics["revenue_monthly"], metrics["mrr_monthly"]],
        resources=resources,
        instance=instance,
        partition_key="2025-02-01",
    )
    cohort = dg.materialize(
        [metrics["trial_conversion_monthly"]],
        resources=resources,
        instance=instance,
        partition_key="2025-01-01",
    )
    assert revenue.success and cohort.success
    daily = dg.materialize(
        [metrics["active_licenses_daily"]], resources=resources, instance=instance, tags=february
    )
    assert daily.success
    assert len(daily.get_asset_materialization_events()) == 28

    with duckdb.connect(str(warehouse), read_only=True) as con:
        raw_total = con.execute(
            "SELECT round(sum(purchase_details_vendor_amount), 2), "
            "round(sum(purchase_details_purchase_price), 2), count(*), "
            "count(*) FILTER (WHERE purchase_details_sale_type = 'Refund') FROM sales.transactions"
        ).fetchone()
        metric_total = con.execute(
            "SELECT sum(vendor_amount), sum(purchase_price), sum(line_items), sum(refunds) "
            "FROM metrics.revenue_monthly"
        ).fetchone()
        cohort = con.execute(
            "SELECT sum(evaluations), max(history_through) FROM metrics.trial_conversion_monthly"
        ).fetchone()
        history_through = con.execute("SELECT max(last_updated) FROM licenses.licenses").fetchone()
        mrr = con.execute("SELECT sum(mrr), sum(arr), count(*) FROM metrics.mrr_monthly").fetchone()
    assert (
        raw_total is not None
        and metric_total is not None
        and cohort is not None
        and history_through is not None
    )
    assert raw_total[2] > 100, "the sandbox sells every day"
    # The month's totals equal the raw table's to the cent (the raw amounts are DOUBLE, summed and rounded).
    assert metric_total[0] == Decimal(str(raw_total[0])) and metric_total[1] == Decimal(str(raw_total[1]))
    assert metric_total[2:] == raw_total[2:]
    assert cohort[0] > 0 and cohort[1] == history_through[0]
    assert mrr is not None and mrr[0] > 0 and mrr[1] == 12 * mrr[0] and mrr[2] > 0
