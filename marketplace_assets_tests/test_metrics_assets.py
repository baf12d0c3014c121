"""The metric asset factory: keys, group, kinds, deps and the partitions their mappings give (asked of
Dagster's own partition mapping API), column descriptions, and the automation that refreshes the
metrics after their raw inputs (evaluated with Dagster's automation condition evaluator)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from marketplace_assets.definitions import build_definitions
from marketplace_assets.metrics.assets import AUTOMATION_SENSOR, build_metric_asset, build_metric_assets
from marketplace_assets.metrics.catalog import (
    ACTIVE_LICENSES_DAILY,
    LICENSES,
    METRICS,
    MRR_MONTHLY,
    REVENUE_MONTHLY,
    TRANSACTIONS,
    TRIAL_CONVERSION_MONTHLY,
    mrr_monthly_metric,
)
from marketplace_assets.metrics.metric import Metric
from marketplace_assets.partitions import partitions_for
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.report import Cadence
from marketplace_assets.settings import MarketplaceSettings
from marketplace_assets.warehouse import WarehouseIOManager, WarehouseResource

START = dt.date(2024, 1, 1)
NOW = dt.datetime(2025, 6, 10, 12, tzinfo=dt.UTC)
DAILY = partitions_for(Cadence.DAILY, START)
# An MRR SQL that reads a fixed number of months back (the real one reads every partition): the other
# shape `mrr_monthly_metric` takes. Its SQL is a stand-in, not the MRR rule.
PLACEHOLDER_MRR = mrr_monthly_metric(
    "SELECT CAST(:start AS DATE) AS month, addon_key, purchase_details_hosting AS hosting, "
    "CAST(sum(purchase_details_vendor_amount) AS DECIMAL(18, 2)) AS mrr, "
    "CAST(12 * sum(purchase_details_vendor_amount) AS DECIMAL(18, 2)) AS arr "
    "FROM sales.transactions "
    "WHERE purchase_details_sale_date >= :start AND purchase_details_sale_date < :end "
    "GROUP BY addon_key, purchase_details_hosting",
    {
        "month": "The month",
        "addon_key": "The app",
        "hosting": "The hosting",
        "mrr": "Monthly recurring revenue",
        "arr": "Annual recurring revenue",
    },
    "MRR per app and hosting.",
    months_before=11,
)


def _asset(metric: Metric) -> dg.AssetsDefinition:
    return build_metric_asset(metric, start_date=START, sandbox=True)


def _days(first: dt.date, last: dt.date) -> list[str]:
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _upstream_keys(metric: Metric, upstream: dg.AssetKey, key: str) -> tuple[list[str], list[str]]:
    """The raw partitions one metric partition reads, and those it needs that do not exist."""
    asset = _asset(metric)
    pd = asset.partitions_def
    assert pd is not None
    mapped = asset.get_partition_mapping(upstream).get_upstream_mapped_partitions_result_for_partitions(
        pd.empty_subset().with_partition_keys([key]), pd, DAILY, current_time=NOW
    )
    return sorted(mapped.partitions_subset.get_partition_keys()), sorted(
        mapped.required_but_nonexistent_subset.get_partition_keys()
    )


def _stale_after(metric: Metric, upstream: dg.AssetKey, raw_day: str) -> list[str]:
    """The metric partitions a backfill of one raw day marks stale."""
    asset = _asset(metric)
    subset = asset.get_partition_mapping(upstream).get_downstream_partitions_for_partitions(
        DAILY.empty_subset().with_partition_keys([raw_day]), DAILY, asset.partitions_def, current_time=NOW
    )
    return sorted(subset.get_partition_keys())


@pytest.mark.parametrize("metric", [*METRICS, PLACEHOLDER_MRR], ids=lambda m: f"{m.name}-{len(m.columns)}")
def test_each_metric_is_an_asset_of_the_metrics_group(metric: Metric) -> None:
    asset = _asset(metric)
    key = asset.key
    assert key == dg.AssetKey(["metrics", metric.name])
    assert asset.group_names_by_key[key] == "metrics"
    kinds = {t.removeprefix("dagster/kind/") for t in asset.tags_by_key[key] if t.startswith("dagster/kind/")}
    assert kinds == {"sql", "polars", "duckdb"}
    assert asset.op.pool is None, "a metric never calls the Marketplace: not in its pool"
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    expected_cron = "0 0 * * *" if metric.cadence is Cadence.DAILY else "0 0 1 * *"
    assert isinstance(asset.partitions_def, dg.TimeWindowPartitionsDefinition)
    assert asset.partitions_def.cron_schedule == expected_cron
    assert asset.partitions_def.get_first_partition_key() == "2024-01-01"
    assert asset.dependency_keys == {u.key for u in metric.upstream}
    metadata = asset.metadata_by_key[key]
    assert metadata["partition_expr"] == metric.period_column
    # Every column has a description, in the definition (the UI shows it before any run) and so in
    # every materialization's column schema (the IO manager takes the asset's own first).
    schema = metadata["dagster/column_schema"]
    assert [c.name for c in schema.columns] == list(metric.columns)
    assert all(c.description and c.description.strip() for c in schema.columns)
    assert "```sql" in metadata["sql"].value and ":start" in metadata["sql"].value
    description = asset.descriptions_by_key[key]
    assert metric.sql_location.split(" ")[0] in description and AUTOMATION_SENSOR in description
    assert "Sandbox mode" in description
    assert asset.automation_conditions_by_key[key] is not None
    checks = {c.name for c in asset.check_specs}
    assert {"unique_keys", "dates_in_partition", "identity_keys_present"} <= checks


def test_revenue_reads_the_daily_transactions_of_its_month() -> None:
    read, missing = _upstream_keys(REVENUE_MONTHLY, TRANSACTIONS, "2025-02-01")
    assert read == _days(dt.date(2025, 2, 1), dt.date(2025, 2, 28)) and missing == []
    assert _stale_after(REVENUE_MONTHLY, TRANSACTIONS, "2025-02-14") == ["2025-02-01"]
    assert _stale_after(REVENUE_MONTHLY, TRANSACTIONS, "2025-03-01") == ["2025-03-01"]


def test_active_licenses_read_the_days_license_partition() -> None:
    assert _upstream_keys(ACTIVE_LICENSES_DAILY, LICENSES, "2025-03-04") == (["2025-03-04"], [])
    assert _stale_after(ACTIVE_LICENSES_DAILY, LICENSES, "2025-03-04") == ["2025-03-04"]


def test_trial_conversion_reads_its_cohort_month_and_the_four_after_it() -> None:
    read, missing = _upstream_keys(TRIAL_CONVERSION_MONTHLY, LICENSES, "2025-01-01")
    # January to May: 31 + 28 + 31 + 30 + 31 days, so 31 January + 90 days (1 May) is read.
    assert len(read) == 151 and (read[0], read[-1]) == ("2025-01-01", "2025-05-31") and missing == []
    # The latest cohort (May, on 10 June) reads the days that exist so far, and needs no others.
    read, missing = _upstream_keys(TRIAL_CONVERSION_MONTHLY, LICENSES, "2025-05-01")
    assert read == _days(dt.date(2025, 5, 1), dt.date(2025, 6, 9)) and missing == []
    # A license version of 1 May can change the cohorts of January to May.
    stale = _stale_after(TRIAL_CONVERSION_MONTHLY, LICENSES, "2025-05-01")
    assert stale == ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2025-05-01"]


def test_mrr_reads_every_partition_of_the_transactions() -> None:
    # A refund sold after the month lowers it, and new / reactivated needs each license's history.
    read, missing = _upstream_keys(MRR_MONTHLY, TRANSACTIONS, "2025-01-01")
    assert read == _days(START, dt.date(2025, 6, 9)) and missing == []
    assert _stale_after(MRR_MONTHLY, TRANSACTIONS, "2025-03-15") == [
        f"{y}-{m:02d}-01" for y in (2024, 2025) for m in range(1, 13) if (y, m) <= (2025, 5)
    ]
    assert MRR_MONTHLY.money[:2] == ("mrr", "arr") and "paying_licenses" in MRR_MONTHLY.counts


def test_an_mrr_reading_some_months_back_reads_those_only() -> None:
    read, missing = _upstream_keys(PLACEHOLDER_MRR, TRANSACTIONS, "2025-05-01")
    assert (read[0], read[-1], len(read)) == ("2024-06-01", "2025-05-31", 365) and missing == []
    # The first month has no earlier partitions: none are required.
    assert _upstream_keys(PLACEHOLDER_MRR, TRANSACTIONS, "2024-01-01") == (
        _days(START, dt.date(2024, 1, 31)),
        [],
    )
    assert _stale_after(PLACEHOLDER_MRR, TRANSACTIONS, "2025-01-15")[:2] == ["2025-01-01", "2025-02-01"]
    assert len(_stale_after(PLACEHOLDER_MRR, TRANSACTIONS, "2024-01-15")) == 12


def test_the_metrics_are_registered_with_their_automation_sensor() -> None:
    settings = MarketplaceSettings(sandbox=True, start_date="2024-01-01", warehouse="unused.duckdb")
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    metrics = {k for k in graph.get_all_asset_keys() if k.path[0] == "metrics"}
    assert metrics == {m.key for m in METRICS}
    sensor = defs.resolve_sensor_def(AUTOMATION_SENSOR)
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.asset_selection.resolve(graph) == metrics
    # No schedule refreshes the metrics: the sensor does.
    scheduled = set().union(*(s.job.selection.resolve(graph) for s in defs.schedules or []))
    assert scheduled and not scheduled & metrics


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")  # Dagster's evaluator's own selection
def test_a_metric_partition_is_requested_once_the_raw_partitions_it_reads_are_all_updated() -> None:
    raw = [
        dg.AssetSpec(TRANSACTIONS, partitions_def=DAILY),
        dg.AssetSpec(LICENSES, partitions_def=DAILY),
    ]
    resources = {
        "warehouse": WarehouseIOManager(warehouse="unused.duckdb"),
        "warehouse_store": WarehouseResource(warehouse="unused.duckdb"),
        "pii": PiiPolicy(),
    }
    defs = dg.Definitions(
        assets=[*raw, *build_metric_assets(start_date=START, sandbox=False)], resources=resources
    )
    instance = dg.DagsterInstance.ephemeral()

    def materialized(key: dg.AssetKey, days: list[str]) -> None:
        for day in days:
            instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))

    def evaluate(
        cursor: dg.AssetDaemonCursor | None,
    ) -> tuple[dict[dg.AssetKey, list[str]], dg.AssetDaemonCursor]:
        result = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW, cursor=cursor)
        requested = {m.key: sorted(result.get_requested_partitions(m.key)) for m in METRICS}
        return {k: v for k, v in requested.items() if v}, result.cursor

    requested, cursor = evaluate(None)
    assert requested == {}, "nothing is read yet: nothing to compute"
    # May's transactions but its last day, and the license history of the last days.
    materialized(TRANSACTIONS, _days(dt.date(2025, 5, 1), dt.date(2025, 5, 30)))
    materialized(LICENSES, _days(dt.date(2025, 6, 5), dt.date(2025, 6, 9)))
    requested, cursor = evaluate(cursor)
    # The days whose license partition was updated, within the daily metric's lookback; no revenue for
    # May while one of its days is missing; no trial cohort while its license days are not all there.
    assert requested == {ACTIVE_LICENSES_DAILY.key: _days(dt.date(2025, 6, 5), dt.date(2025, 6, 9))}
    materialized(TRANSACTIONS, ["2025-05-31"])
    requested, cursor = evaluate(cursor)
    assert requested == {REVENUE_MONTHLY.key: ["2025-05-01"]}
    # MRR's latest 3 months read every day of transactions, but wait only for the days of the 124 days
    # back (those months and the one before): once they are loaded, 2024 missing holds nothing back.
    recent = _days(dt.date(2025, 2, 6), dt.date(2025, 4, 30)) + _days(
        dt.date(2025, 6, 1), dt.date(2025, 6, 9)
    )
    materialized(TRANSACTIONS, [day for day in recent if day != "2025-03-15"])
    requested, cursor = evaluate(cursor)
    assert requested == {}, "a day of March is missing"
    materialized(TRANSACTIONS, ["2025-03-15"])
    requested, cursor = evaluate(cursor)
    assert requested == {MRR_MONTHLY.key: ["2025-03-01", "2025-04-01", "2025-05-01"]}


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")  # Dagster's evaluator's own selection
@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_the_automation_keeps_exactly_the_latest_partitions_it_names(metric: Metric) -> None:
    # 6 days of active licenses, 3 months of MRR, 4 cohorts, 1 month of revenue: on any day of the year.
    expected = {"active_licenses_daily": 6, "mrr_monthly": 3, "trial_conversion_monthly": 4}
    assert metric.refresh_partitions == expected.get(metric.name, 1)
    partitions = partitions_for(metric.cadence, START)
    condition = dg.AutomationCondition.in_latest_time_window(metric.refresh_lookback)
    probe = dg.asset(key=["probe"], partitions_def=partitions, automation_condition=condition)(lambda: None)
    for day in (dt.date(2025, 3, 1), dt.date(2025, 3, 31), dt.date(2025, 8, 15), dt.date(2026, 1, 1)):
        now = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
        result = dg.evaluate_automation_conditions(
            [probe], dg.DagsterInstance.ephemeral(), evaluation_time=now
        )
        assert result.get_num_requested(probe.key) == metric.refresh_partitions, day
