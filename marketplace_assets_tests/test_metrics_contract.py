"""What every metric's SQL keeps, on DuckDB and PostgreSQL: its declared column types (shown in the UI
before any run) are the types it returns (money as Decimal with cents, counts as integers, periods as
dates, never a float), and a window of several periods (a backfill's run) gives the rows of a query per
period."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from marketplace_assets.metrics.catalog import METRICS
from marketplace_assets.metrics.metric import COUNT, DATE, FLAG, MONEY, TEXT, Metric
from marketplace_assets.partitions import partitions_for
from marketplace_assets.warehouse import TableRef, Warehouse
from marketplace_assets_tests.test_metrics_licenses import EVALUATION_VERSIONS, KEYS, licenses_frame
from marketplace_assets_tests.test_metrics_query import BACKENDS, empty_warehouse
from marketplace_assets_tests.test_metrics_revenue import LINE_ITEMS, transactions_frame

KIND = {MONEY: "money", COUNT: "count", DATE: "date", TEXT: "text", FLAG: "flag"}


def _kind(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Decimal):
        return "money"
    if dtype == pl.Int64:
        return "count"
    return {pl.Date: "date", pl.String: "text", pl.Boolean: "flag"}.get(type(dtype), str(dtype))


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    wh = empty_warehouse(request, tmp_path, monkeypatch)
    wh.write(TableRef("sales", "transactions"), transactions_frame(LINE_ITEMS), None)
    wh.merge(TableRef("licenses", "licenses"), licenses_frame(EVALUATION_VERSIONS), KEYS)
    return wh


def test_the_declared_types_are_the_sqls(warehouse: Warehouse) -> None:
    # A month (or a day) with rows for every metric: February 2025.
    windows = {
        "monthly": (dt.date(2025, 2, 1), dt.date(2025, 3, 1)),
        "daily": (dt.date(2025, 2, 20), dt.date(2025, 2, 21)),
    }
    for metric in METRICS:
        start, end = windows[metric.cadence.value]
        result = warehouse.query(metric.sql, {"start": start, "end": end})
        assert result.height > 0, metric.name
        declared = {name: KIND[column.sql_type] for name, column in metric.columns.items()}
        assert {name: _kind(dtype) for name, dtype in result.schema.items()} == declared, metric.name
        _money_is_cents(metric, result)


# December to March for the monthly metrics (sales, evaluations and conversions in several of them), a
# week of February for the daily one: (first partition, partitions).
RANGES = {"monthly": ("2024-12-01", 4), "daily": ("2025-02-18", 7)}


def _periods(metric: Metric) -> list[tuple[dt.date, dt.date]]:
    partitions = partitions_for(metric.cadence, dt.date(2024, 1, 1))
    assert partitions is not None
    first, count = RANGES[metric.cadence.value]
    keys = partitions.get_partition_keys()
    windows = [partitions.time_window_for_partition_key(k) for k in keys[keys.index(first) :][:count]]
    return [(w.start.date(), w.end.date()) for w in windows]


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_a_window_of_periods_gives_each_periods_rows(warehouse: Warehouse, metric: Metric) -> None:
    periods = _periods(metric)
    each = [warehouse.query(metric.sql, {"start": s, "end": e}) for s, e in periods]
    whole = warehouse.query(metric.sql, {"start": periods[0][0], "end": periods[-1][1]})
    grain = list(metric.grain)
    expected = pl.concat(each, how="vertical_relaxed").sort(grain, nulls_last=True)
    assert sum(1 for frame in each if frame.height) >= 2, "rows in several periods"
    assert whole.sort(grain, nulls_last=True).rows() == expected.rows()


def _money_is_cents(metric: Metric, result: pl.DataFrame) -> None:
    for name in metric.money:
        dtype = result.schema[name]
        assert isinstance(dtype, pl.Decimal) and dtype.scale == 2, (metric.name, name, dtype)
