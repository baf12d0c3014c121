"""What a user sees: a real `dagster dev` on the sandbox, an old backfill, and screenshots of its pages.

Starts `dagster dev` in sandbox mode with a temporary DAGSTER_HOME (the project's instance settings) and
warehouse, backfills February 2024 of `sales/transactions` (daily, export-backed) and
`evaluations/by_hosting` (weekly), waits for both, switches the catalog's snapshot sensor on and waits
for its run, then opens the UI in headless Chromium (Debian's
`chromium` package, driven by Playwright; no browser is downloaded) and saves a screenshot and the
visible text of each page into docs/ui/:

  assets.png                the asset list: groups, every asset, no permanently missing partitions
  transactions_latest.png   the overview's metadata, the latest materialization: run_summary, ...
  transactions_figures.png  its figures_by_partition: every day of the old month, one row each
  transactions_plots.png    Dagster's by-partition plots: the latest 120 days only, empty for 2024
  transactions_checks.png   the checks, each labelled blocking or not as it behaves
  catalog_partitions.png    the catalog's snapshot partitions: only snapshots taken
  automation.png            schedules and sensors, what is on by default

With `--metrics` it tours the `metrics` group instead (and writes only metrics_*.png): it backfills the
raw inputs of the last two whole months (the ranges of marketplace_assets_tests/test_e2e_metrics.py,
so the reconciliation checks compare like with like), then the monthly metrics, whose runs execute the
reconciliation checks, and saves:

  metrics_lineage.png         the `metrics` group's asset graph: each metric and its raw inputs
  metrics_mrr_summary.png     mrr_monthly's latest materialization: its `summary` markdown
  metrics_mrr_reconciliation.png  mrr_monthly's checks: the reconciliation's WARN naming app and month
  metrics_automation.png      the Automation page's row of the `metrics_after_raw_inputs` sensor

    sudo apt-get install chromium        # once; Debian's browser
    uv run --group ui python scripts/ui_tour.py
    uv run --group ui python scripts/ui_tour.py --out /tmp/tour --keep-open   # look around yourself
    uv run --group ui python scripts/ui_tour.py --metrics                     # the metrics group

The kept test of these points reads the same GraphQL the pages use
(marketplace_assets_tests/test_e2e_ui.py), so CI needs no browser.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

# The calendar of the metrics' end-to-end test, so the tour loads what its reconciliations compare.
from marketplace_assets.metrics.assets import AUTOMATION_SENSOR
from marketplace_assets_tests.dagster_dev import PROJECT_ROOT, DagsterDev, dagster_dev
from marketplace_assets_tests.test_e2e_metrics import reconciliation_window

OUT = PROJECT_ROOT / "docs" / "ui"
FEBRUARY_DAYS = [f"2024-02-{day:02d}" for day in range(1, 30)]
FEBRUARY_WEEKS = ["2024-02-04", "2024-02-11", "2024-02-18", "2024-02-25"]


def scroll_to(page: Page, heading: str) -> None:
    page.get_by_text(heading, exact=True).first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(1000)


def latest_materialization(page: Page) -> None:
    """The overview's Metadata: the latest materialization, with the run's summary."""
    scroll_to(page, "Metadata")


def figures_by_partition(page: Page) -> None:
    """Every partition of the old month, read from the latest materialization's table."""
    scroll_to(page, "Metadata")
    page.locator("tr", has_text="figures_by_partition").get_by_text("[Show Markdown]").click()


def partition_plots(page: Page) -> None:
    """Dagster's by-partition plots: only the latest 120 partitions, so empty for an old month."""
    scroll_to(page, "Metadata")
    page.get_by_role("button", name="Plots").click()


TRANSACTIONS = "/assets/sales/transactions"
# (screenshot name, page, what to do there before the screenshot)
PAGES: list[tuple[str, str, Callable[[Page], None] | None]] = [
    ("assets", "/assets", None),
    ("transactions_latest", TRANSACTIONS, latest_materialization),
    ("transactions_figures", TRANSACTIONS, figures_by_partition),
    ("transactions_plots", TRANSACTIONS, partition_plots),
    ("transactions_checks", f"{TRANSACTIONS}?view=checks", None),
    ("catalog_partitions", "/assets/catalog/product_catalog?view=partitions", None),
    ("automation", "/automation", None),
]


def show_markdown(label: str) -> Callable[[Page], None]:
    """The latest materialization's markdown entry `label`, opened from the overview's Metadata."""

    def prepare(page: Page) -> None:
        scroll_to(page, "Metadata")
        page.locator("tr", has_text=label).get_by_text("[Show Markdown]").first.click()

    return prepare


def scroll_to_row(text: str) -> Callable[[Page], None]:
    def prepare(page: Page) -> None:
        row = page.get_by_text(text, exact=True).filter(visible=True).first
        row.evaluate("e => e.scrollIntoView({block: 'center'})")

    return prepare


def open_tab(name: str) -> Callable[[Page], None]:
    def prepare(page: Page) -> None:
        page.get_by_text(name, exact=True).filter(visible=True).first.click()

    return prepare


MRR = "/assets/metrics/mrr_monthly"
MRR_CHECK = f"{MRR}?view=checks&checkDetail=reconciles_with_recurring_revenue"
METRICS_PAGES: list[tuple[str, str, Callable[[Page], None] | None]] = [
    ("metrics_lineage", "/locations/marketplace_assets/asset-groups/metrics/lineage", None),
    ("metrics_mrr_summary", MRR, show_markdown("summary")),
    ("metrics_mrr_reconciliation", MRR_CHECK, None),
    ("metrics_mrr_reconciliation_automation", MRR_CHECK, open_tab("Automation history")),
    ("metrics_automation", "/automation", scroll_to_row("metrics_after_raw_inputs")),
]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    raise SystemExit("No chromium on PATH: install Debian's browser with `sudo apt-get install chromium`.")


def backfill_february(dev: DagsterDev) -> None:
    for asset, keys in (
        (["sales", "transactions"], FEBRUARY_DAYS),
        (["evaluations", "by_hosting"], FEBRUARY_WEEKS),
    ):
        backfill = dev.launch_backfill([asset], keys)
        status = dev.wait_for_backfill(backfill, timeout=600)
        print(f"backfill of {'/'.join(asset)} {keys[0]}..{keys[-1]}: {status}")


def backfill_ranges(dev: DagsterDev, ranges: dict[str, tuple[dt.date, dt.date]]) -> None:
    """One backfill of `ranges` (asset path -> first and last partition), waited for."""
    mutation = """mutation($params: LaunchBackfillParams!) {
        launchPartitionBackfill(backfillParams: $params) { __typename
            ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
    by_asset = [
        {"assetKey": {"path": path.split("/")}, "partitions": {"range": {"start": str(a), "end": str(b)}}}
        for path, (a, b) in ranges.items()
    ]
    launched = dev.graphql(mutation, {"params": {"partitionsByAssets": by_asset}})["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"backfill not launched: {launched}")
    status = dev.wait_for_backfill(launched["backfillId"], timeout=1200)
    for path, (first, last) in ranges.items():
        print(f"backfill of {path} {first}..{last}: {status}")


def backfill_metrics(dev: DagsterDev, today: dt.date) -> None:
    """What the metrics' end-to-end test loads (`reconciliation_window`): the raw inputs of the last two
    whole months with a year of sales before them, then the monthly metrics. Two backfills, because a
    check's other side (Atlassian's report) is no input of its metric, so in one backfill the check could
    run before it is loaded."""
    window = reconciliation_window(today)
    backfill_ranges(dev, window.raw)
    backfill_ranges(dev, window.metrics)
    refresh_atlassians_mrr(dev, window.months[-1], timeout=600)


def refresh_atlassians_mrr(dev: DagsterDev, month: dt.date, timeout: float) -> None:
    """Materialize partner_metrics/recurring_revenue for `month` alone, then wait for the automation
    sensor to reconcile MRR again on its own (the check's Automation history shows the request). The
    check waits while the sensor's own refresh of the metrics is in progress, a backfill that the backfill
    daemon marks done on its 30 s loop: minutes, on a busy machine."""
    refresh = dev.launch_run(["partner_metrics", "recurring_revenue"], month.isoformat())
    finished = dev.wait_for_run(refresh)
    print(f"refresh of partner_metrics/recurring_revenue {month}: {finished['status']}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = dev.runs({"dagster/sensor_name": AUTOMATION_SENSOR})
        later = [r for r in runs if (r["startTime"] or 0) > (finished["endTime"] or 0)]
        if later and later[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            print(f"{AUTOMATION_SENSOR} reconciled again: run {later[0]['runId'][:8]} {later[0]['status']}")
            return
        time.sleep(2)
    raise SystemExit(f"{AUTOMATION_SENSOR} launched no run in {timeout:.0f}s after the refresh")


def take_a_catalog_snapshot(dev: DagsterDev, timeout: float = 300.0) -> None:
    """Switch the catalog's sensor on, as a user would: its first tick adds today's snapshot partition
    and launches the run that fetches it."""
    dev.start_sensor("catalog_snapshot_sensor")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = dev.runs({"dagster/sensor_name": "catalog_snapshot_sensor"})
        if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            print(f"catalog snapshot run: {runs[0]['status']}")
            return
        time.sleep(2)
    raise SystemExit(f"the catalog snapshot sensor launched no finished run in {timeout:.0f}s")


def dismiss_welcome(page: Page) -> None:
    """The first page shows Dagster's "Join the Dagster community" dialog once."""
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()


def shoot(
    base_url: str, out: Path, keep_open: bool, pages: list[tuple[str, str, Callable[[Page], None] | None]]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(base_url + "/assets")
        page.wait_for_timeout(4000)
        dismiss_welcome(page)
        for name, path, prepare in pages:
            page.goto(base_url + path)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(3000)  # the plots and tables render after their queries return
            if prepare is not None:
                prepare(page)
                page.wait_for_timeout(2000)
            page.screenshot(path=str(out / f"{name}.png"))
            (out / f"{name}.txt").write_text(page.inner_text("body"))
            print(f"{name}: {out / (name + '.png')}")
        if keep_open:
            print(f"The UI stays up at {base_url}; Ctrl-C to stop.")
            while True:
                time.sleep(60)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the screenshots go (default docs/ui)")
    parser.add_argument("--keep-open", action="store_true", help="keep dagster dev running afterwards")
    parser.add_argument("--metrics", action="store_true", help="tour the metrics group instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ui-tour-") as tmp:
        env = {"MARKETPLACE_WAREHOUSE": str(Path(tmp) / "warehouse.duckdb")}
        with dagster_dev(Path(tmp) / "home", env) as dev:
            print(f"dagster dev at {dev.url}")
            if args.metrics:
                backfill_metrics(dev, dt.datetime.now(dt.UTC).date())
                shoot(dev.url, args.out, args.keep_open, METRICS_PAGES)
            else:
                backfill_february(dev)
                take_a_catalog_snapshot(dev)
                shoot(dev.url, args.out, args.keep_open, PAGES)


if __name__ == "__main__":
    main()
