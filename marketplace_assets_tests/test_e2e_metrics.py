"""The metrics and their reconciliation checks through a real `dagster dev` (the shared instance, live
mode against the sandbox over HTTP, the sandbox's clock being today).

One backfill loads the raw inputs of the last two whole months, and of what those months' metrics and
checks read; a second one materializes the metrics, whose runs execute the reconciliation checks. (Two,
because a check's other side is not an input of its metric: in one backfill the metric, and so its check,
could run before Atlassian's report is loaded.) The checks' results are then read over the GraphQL the
UI's asset checks page queries, and compared with what the sandbox's raw records say must differ:

- the late refund (docs/sandbox-aggregates.md, "Injected differences"): the first app's latest refund
  as of the clock is in sales/transactions but not in Atlassian's figures. So MRR differs for the first
  app in every compared month its maintenance period covers, and revenue in the month of its week if
  that month is compared (a month is compared once its last week is over);
- line items sold today: Atlassian's MRR has them, our warehouse cannot yet (today is no partition);
- the rounding differences of the second app: within tolerance, never flagged.

With a year of sales before the first month, every MRR row says its figures are complete. A refresh of
Atlassian's MRR alone then makes the automation sensor run the MRR check on its own.

The license history is loaded by a backfill, which holds an evaluation converted before it as a paid
license only; its data insights still say it was an evaluation, so the conversion check counts it.

Only this test's own runs are asserted on; other tests of the shared instance write beside them.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from marketplace_assets_tests.conftest import SharedInstance
from marketplace_assets_tests.dagster_dev import SHARED_CREDENTIALS, read_duckdb

pytestmark = pytest.mark.e2e

METRICS = {
    "reconciles_with_recurring_revenue": ["metrics", "mrr_monthly"],
    "reconciles_with_transactions_by_hosting": ["metrics", "revenue_monthly"],
    "reconciles_with_conversion": ["metrics", "trial_conversion_monthly"],
}

# The check's unpartitioned executions (partition ""): a partitioned run also records, per partition it
# covers, a planned execution of a check that is not partitioned, which stays SKIPPED; the result is the
# run's one unpartitioned execution.
CHECK_EXECUTIONS = """query($assetKey: AssetKeyInput!, $checkName: String!) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, limit: 50, partition: "") {
    runId status partition
    evaluation {
      severity description
      metadataEntries {
        label
        ... on MarkdownMetadataEntry { mdStr }
        ... on IntMetadataEntry { intValue }
        ... on TextMetadataEntry { text }
      }
    }
  }
}"""

LINEAGE = """query($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    dependencyKeys { path }
    assetChecksOrError { ... on AssetChecks { checks { name blocking additionalAssetKeys { path } } } }
  }
}"""


def month_start(day: dt.date, months_back: int = 0) -> dt.date:
    index = day.year * 12 + day.month - 1 - months_back
    return dt.date(index // 12, index % 12 + 1, 1)


def sundays_of(month: dt.date) -> list[dt.date]:
    first = month + dt.timedelta(days=(6 - month.weekday()) % 7)
    return [d for d in (first + dt.timedelta(weeks=i) for i in range(5)) if d.month == month.month]


def covered_months(item: dict[str, Any]) -> set[dt.date]:
    """The months a line item's maintenance period covers, by the MRR rule (docs/sandbox-aggregates.md)."""
    details = item["purchaseDetails"]
    start = dt.date.fromisoformat(details.get("maintenanceStartDate") or details["saleDate"])
    end = dt.date.fromisoformat(details["maintenanceEndDate"])
    months = max(1, 12 * (end.year - start.year) + end.month - start.month)
    return {month_start(month_start(start), -i) for i in range(months)}


def sold(shared: SharedInstance, **params: str) -> list[dict[str, Any]]:
    developer, email, token = SHARED_CREDENTIALS
    response = httpx.get(
        f"{shared.sandbox_url}/rest/3/reporting/developer-space/{developer}/sales/transactions/export",
        params={"accept": "json", **params},
        auth=(email, token),
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


def backfill(shared: SharedInstance, ranges: dict[str, tuple[str, str]]) -> list[str]:
    """One backfill of `ranges` (asset path -> first and last partition key); its runs' ids."""
    mutation = """mutation($params: LaunchBackfillParams!) {
        launchPartitionBackfill(backfillParams: $params) { __typename
            ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": path.split("/")}, "partitions": {"range": {"start": first, "end": last}}}
            for path, (first, last) in ranges.items()
        ]
    }
    launched = shared.dev.graphql(mutation, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    status = shared.dev.wait_for_backfill(backfill_id, timeout=420)
    assert status == "COMPLETED_SUCCESS", f"{status}\n{shared.dev.log_tail()}"
    return [run["runId"] for run in shared.dev.runs({"dagster/backfill": backfill_id})]


def flagged(evaluation: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(month, app, what) of the rows outside tolerance, from the check's comparison table."""
    table = next(m["mdStr"] for m in evaluation["metadataEntries"] if m["label"] == "comparison")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return {(r[0], r[1], r[2]) for r in rows if r[-1] == "**outside**"}


def comparison_rows(evaluation: dict[str, Any]) -> list[list[str]]:
    table = next(m["mdStr"] for m in evaluation["metadataEntries"] if m["label"] == "comparison")
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


@dataclass(frozen=True)
class Window:
    """What the e2e (and scripts/ui_tour.py --metrics) loads to reconcile the last two whole months: the
    months, those whose weekly reports are complete, and the ranges of two backfills (the raw inputs and
    Atlassian's reports, then the metrics; two, because a check's other side is no input of its metric,
    so in one backfill the check could run before it is loaded)."""

    today: dt.date
    months: list[dt.date]
    weekly: list[dt.date]  # weekly reports compare a month once its last week is over
    raw: dict[str, tuple[dt.date, dt.date]]
    metrics: dict[str, tuple[dt.date, dt.date]]


def reconciliation_window(today: dt.date) -> Window:
    yesterday = today - dt.timedelta(days=1)
    months = [month_start(today, 2), month_start(today, 1)]  # the last two whole months
    weekly = [m for m in months if sundays_of(m)[-1] + dt.timedelta(days=6) < today]
    weeks = (sundays_of(weekly[0])[0], sundays_of(weekly[-1])[-1])
    raw = {
        # A month's MRR reads every line item whose 12-month period covers it (11 months back), and its
        # movements the month before's MRR too: sales from 12 months back, so every figure is complete.
        "sales/transactions": (month_start(months[0], 12), yesterday),
        "licenses/licenses": (month_start(weekly[0], 1), yesterday),
        "partner_metrics/recurring_revenue": (months[0], months[-1]),
        "sales/transactions_by_hosting": weeks,
        "sales/conversion": weeks,
    }
    metrics = {
        "metrics/mrr_monthly": (months[0], months[-1]),
        "metrics/revenue_monthly": (weekly[0], weekly[-1]),
        "metrics/trial_conversion_monthly": (weekly[0], weekly[-1]),
    }
    return Window(today, months, weekly, raw, metrics)


def as_keys(ranges: dict[str, tuple[dt.date, dt.date]]) -> dict[str, tuple[str, str]]:
    return {path: (first.isoformat(), last.isoformat()) for path, (first, last) in ranges.items()}


@pytest.fixture(scope="module")
def reconciled(shared_dev: SharedInstance) -> dict[str, Any]:
    window = reconciliation_window(dt.datetime.now(dt.UTC).date())  # the sandbox's clock: the real date
    today, months, weekly = window.today, window.months, window.weekly
    backfill(shared_dev, as_keys(window.raw))
    runs = backfill(shared_dev, as_keys(window.metrics))
    results = {}
    for check, path in METRICS.items():
        found = shared_dev.dev.graphql(CHECK_EXECUTIONS, {"assetKey": {"path": path}, "checkName": check})[
            "assetCheckExecutions"
        ]
        mine = [e for e in found if e["runId"] in runs]
        assert len(mine) == 1, [(e["runId"], e["status"], e["partition"]) for e in mine]
        results[check] = mine[0]
    return {"today": today, "months": months, "weekly": weekly, "results": results}


def test_the_late_refund_is_flagged_for_its_app_and_months_and_rounding_is_not(
    shared_dev: SharedInstance, reconciled: dict[str, Any]
) -> None:
    today, months, weekly = reconciled["today"], reconciled["months"], reconciled["weekly"]
    first_app, second_app = (app.addon_key for app in shared_dev.sandbox.apps[:2])
    product = shared_dev.sandbox.apps[0].product_id
    refunds = sold(shared_dev, startDate="2018-01-01", productId=product, saleType="Refund")
    late = max(refunds, key=lambda r: (r["purchaseDetails"]["saleDate"], r["transactionLineItemId"]))
    late_day = dt.date.fromisoformat(late["purchaseDetails"]["saleDate"])
    expected_mrr: set[tuple[str, str]] = set()
    if late_day < today:  # sold today, it is in neither side
        expected_mrr |= {(f"{m:%Y-%m}", first_app) for m in months if m in covered_months(late)}
    # Atlassian counts today's sales; our warehouse holds the days before today.
    for item in sold(shared_dev, startDate=today.isoformat(), endDate=today.isoformat()):
        if item["transactionLineItemId"] != late["transactionLineItemId"]:
            expected_mrr |= {(f"{m:%Y-%m}", item["addonKey"]) for m in months if m in covered_months(item)}
    # Empty only on a day the late refund itself was sold (then it is in neither side): the check passes.
    mrr = reconciled["results"]["reconciles_with_recurring_revenue"]
    assert mrr["status"] == ("FAILED" if expected_mrr else "SUCCEEDED"), mrr["evaluation"]
    assert mrr["evaluation"]["severity"] == "WARN"
    assert {(month, app) for month, app, _ in flagged(mrr["evaluation"])} == expected_mrr
    description = mrr["evaluation"]["description"]
    for month, app in expected_mrr:
        assert app in description and month in description
    # The second app's per-item rounding: within tolerance in every month.
    second_rows = [r for r in comparison_rows(mrr["evaluation"]) if r[1] == second_app]
    assert len(second_rows) == len(months)
    assert all(r[-1] == "within" for r in second_rows if (r[0], second_app) not in expected_mrr)

    week = dt.date.fromisoformat(late["purchaseDetails"]["saleDate"])
    week_month = month_start(week - dt.timedelta(days=(week.weekday() + 1) % 7))
    expected_revenue = (
        {(f"{week_month:%Y-%m}", first_app, f"revenue, {late['purchaseDetails']['hosting']}")}
        if week_month in weekly
        else set()
    )
    revenue = reconciled["results"]["reconciles_with_transactions_by_hosting"]
    assert flagged(revenue["evaluation"]) == expected_revenue
    assert revenue["status"] == ("FAILED" if expected_revenue else "SUCCEEDED"), revenue["evaluation"]
    # Whole-dollar revenue: the second app's rows are within tolerance however far off the cents are.
    second_revenue = [r for r in comparison_rows(revenue["evaluation"]) if r[1] == second_app]
    assert second_revenue and all(r[-1] == "within" for r in second_revenue)
    assert any(r[5] not in ("0.00", "+0.00") for r in second_revenue), "the rounding shows, within tolerance"


def test_the_conversion_check_counts_what_a_backfilled_history_holds(reconciled: dict[str, Any]) -> None:
    """The license history was loaded by a backfill, so evaluations that converted before it are stored as
    paid licenses only; their data insights still make them evaluations. What ours can still lack: a
    license changed today (its only version is today's, and today is no partition yet), which Atlassian
    counts. So ours is never above Atlassian's, and a difference warns naming the app and month."""
    conversion = reconciled["results"]["reconciles_with_conversion"]
    rows = comparison_rows(conversion["evaluation"])
    assert rows and {r[2] for r in rows} == {"Cloud evaluations", "Cloud conversions"}
    assert {r[0] for r in rows} == {f"{m:%Y-%m}" for m in reconciled["weekly"]}
    assert all(int(r[3].replace(",", "")) <= int(r[4].replace(",", "")) for r in rows)
    assert sum(int(r[3].replace(",", "")) for r in rows if r[2] == "Cloud conversions") > 0
    differs = [r for r in rows if r[3] != r[4]]
    assert conversion["status"] == ("FAILED" if differs else "SUCCEEDED")
    description = conversion["evaluation"]["description"]
    assert all(r[1] in description and r[0] in description for r in differs)


def test_the_metrics_and_their_checks_show_their_lineage(shared_dev: SharedInstance) -> None:
    keys = [{"path": path} for path in METRICS.values()]
    nodes = {
        "/".join(n["assetKey"]["path"]): n
        for n in shared_dev.dev.graphql(LINEAGE, {"keys": keys})["assetNodes"]
    }
    upstream = {path: {"/".join(k["path"]) for k in n["dependencyKeys"]} for path, n in nodes.items()}
    assert upstream == {
        "metrics/mrr_monthly": {"sales/transactions"},
        "metrics/revenue_monthly": {"sales/transactions"},
        "metrics/trial_conversion_monthly": {"licenses/licenses"},
    }
    checks = {
        c["name"]: c
        for n in nodes.values()
        for c in n["assetChecksOrError"]["checks"]
        if c["name"].startswith("reconciles_with")
    }
    assert {name: {"/".join(k["path"]) for k in c["additionalAssetKeys"]} for name, c in checks.items()} == {
        "reconciles_with_recurring_revenue": {"partner_metrics/recurring_revenue", "sales/transactions"},
        "reconciles_with_transactions_by_hosting": {"sales/transactions_by_hosting", "sales/transactions"},
        "reconciles_with_conversion": {"sales/conversion", "licenses/licenses"},
    }
    assert not any(c["blocking"] for c in checks.values())


def test_a_year_of_sales_before_the_months_makes_every_mrr_row_complete(
    shared_dev: SharedInstance, reconciled: dict[str, Any]
) -> None:
    months = reconciled["months"]
    flags = read_duckdb(
        shared_dev.warehouse,
        lambda con: con.execute(
            "SELECT month, count(*), bool_and(mrr_complete), bool_and(movements_complete) "
            "FROM metrics.mrr_monthly WHERE month BETWEEN ? AND ? GROUP BY month ORDER BY month",
            [months[0], months[-1]],
        ).fetchall(),
    )
    assert [(month, complete, moves) for month, _, complete, moves in flags] == [
        (m, True, True) for m in months
    ]


def check_executions(shared: SharedInstance, check: str) -> list[dict[str, Any]]:
    variables = {"assetKey": {"path": METRICS[check]}, "checkName": check}
    return shared.dev.graphql(CHECK_EXECUTIONS, variables)["assetCheckExecutions"]


def test_a_refresh_of_atlassians_mrr_alone_makes_the_sensor_reconcile_again(
    shared_dev: SharedInstance, reconciled: dict[str, Any]
) -> None:
    """No run of the metric is launched: the automation sensor (`metrics_after_raw_inputs`, on by
    default, every 5 s here) sees partner_metrics/recurring_revenue updated and runs the check alone,
    over every month the metric holds."""
    check = "reconciles_with_recurring_revenue"
    seen = {e["runId"] for e in check_executions(shared_dev, check)}
    last_month = reconciled["months"][-1].isoformat()
    refresh = shared_dev.dev.launch_run(["partner_metrics", "recurring_revenue"], last_month)
    assert shared_dev.dev.wait_for_run(refresh)["status"] == "SUCCESS"
    # The check waits while a metric's automated backfill is in progress: the backfill daemon marks one
    # done on its own 30 s loop, so allow several of those.
    deadline = time.monotonic() + 360
    while True:
        done = [
            e
            for e in check_executions(shared_dev, check)
            if e["runId"] not in seen | {refresh} and e["status"] in ("SUCCEEDED", "FAILED")
        ]
        if done:
            break
        assert time.monotonic() < deadline, (
            f"no run of the check after the refresh\n{shared_dev.dev.log_tail()}"
        )
        time.sleep(2)
    sensor_runs = {
        r["runId"] for r in shared_dev.dev.runs({"dagster/sensor_name": "metrics_after_raw_inputs"})
    }
    assert done[-1]["runId"] in sensor_runs
    entries = {m["label"]: m for m in done[-1]["evaluation"]["metadataEntries"]}
    # Run alone, it compares every month the metric holds: at least the backfilled ones.
    held = {row[0] for row in comparison_rows(done[-1]["evaluation"])}
    assert {f"{m:%Y-%m}" for m in reconciled["months"]} <= held, entries["months"]
