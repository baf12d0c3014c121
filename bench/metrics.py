"""What each metric's SQL costs on DuckDB and PostgreSQL, for one period and for a backfill's single run.

The sandbox (`Sandbox(volume=...)`, served in-process on a free loopback port) is loaded the way the
project loads it, by materializing the assets into a temporary DuckDB warehouse: `sales/transactions` and
`licenses/licenses` for the whole months before the sandbox clock (today), plus Atlassian's side of the
reconciliations (`partner_metrics/recurring_revenue`, `sales/transactions_by_hosting`, `sales/conversion`)
and the monthly metrics the reconciliations compare, for the 12 months measured. The warehouse is then
copied to a PostgreSQL server of its own (`copy_warehouse`, then ANALYZE as autovacuum would do).

Timed, per metric of `METRICS` and backend: `Warehouse.query(metric.sql, {"start", "end"})` for the
latest month (daily metric: day) and for the latest 12 months (daily metric: 31 days), what a backfill's
single run asks; then each reconciliation's SQL over the 12 months. Each round runs every query on both
backends, alternating which goes first; medians and ranges over the rounds.

    uv run python bench/metrics.py                        # volume 10, 18 months, 3 rounds
    uv run python bench/metrics.py --volume 2 --repeat 5  # a quicker load
    uv run python bench/metrics.py --no-reconciliations   # raw tables only: a faster load
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import psycopg

# The PostgreSQL server and the sandbox's credentials as large_export.py has them (bench/ is on sys.path).
from large_export import DEV, EMAIL, TOKEN, postgres_warehouse

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.dagster_conventions import range_tags
from marketplace_assets.definitions import build_assets
from marketplace_assets.metrics.assets import build_metric_assets
from marketplace_assets.metrics.catalog import METRICS
from marketplace_assets.reports.report import Cadence
from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets.sandbox.licensing_data import clock
from marketplace_assets.settings import MarketplaceSettings
from marketplace_assets.warehouse import Warehouse, open_warehouse
from marketplace_assets.warehouse.copy import copy_warehouse
from marketplace_assets.warehouse.postgres_connection import PASSWORD_ENV
from marketplace_assets_tests.resources import asset_resources

RESULTS = Path(__file__).parent / "results" / "metrics.md"
BACKENDS = ("DuckDB", "PostgreSQL")
ATLASSIAN = ("partner_metrics/recurring_revenue", "sales/transactions_by_hosting", "sales/conversion")


def add_months(day: date, months: int) -> date:
    number = day.year * 12 + day.month - 1 + months
    return date(number // 12, number % 12 + 1, 1)


@dataclass
class Case:
    """One query: a metric's (or a reconciliation's) SQL over [start, end)."""

    label: str
    window: str
    sql: str
    start: date
    end: date
    seconds: dict[str, list[float]] = field(default_factory=lambda: {b: [] for b in BACKENDS})
    rows: dict[str, int] = field(default_factory=dict)


def cases(month_end: date, reconciliations: bool) -> list[Case]:
    """Per metric: the latest period, then a backfill's window; then the reconciliations over 12 months."""
    year = add_months(month_end, -12)
    found: list[Case] = []
    for metric in METRICS:
        if metric.cadence is Cadence.DAILY:
            last = month_end - timedelta(days=1)
            found.append(Case(metric.name, "1 day", metric.sql, last, month_end))
            found.append(Case(metric.name, "31 days", metric.sql, month_end - timedelta(days=31), month_end))
        else:
            found.append(Case(metric.name, "1 month", metric.sql, add_months(month_end, -1), month_end))
            found.append(Case(metric.name, "12 months", metric.sql, year, month_end))
    for metric in METRICS if reconciliations else ():
        for check in metric.reconciliations:
            found.append(Case(f"{metric.name} ✓ {check.name}", "12 months", check.sql, year, month_end))
    return found


def weeks(first: date, before: date) -> tuple[str, str]:
    """The first and the last Sunday-started week within [first, before): the weekly range's keys."""
    sunday = first + timedelta(days=(6 - first.weekday()) % 7)
    last = before - timedelta(days=7)
    last -= timedelta(days=(last.weekday() + 1) % 7)
    return sunday.isoformat(), last.isoformat()


def load(args: argparse.Namespace, location: str, first: date, month_end: date) -> dict[str, float]:
    """The assets materialized into the DuckDB file at `location`, one run per asset; seconds per run."""
    sandbox = Sandbox(volume=args.volume)
    settings = MarketplaceSettings(sandbox=True, start_date=first, warehouse=location)
    raw = {a.key.to_user_string(): a for a in build_assets(settings)}
    metrics = {a.key.path[1]: a for a in build_metric_assets(start_date=first, sandbox=True)}
    last_day, last_month = (month_end - timedelta(days=1)).isoformat(), add_months(month_end, -1).isoformat()
    runs = [
        ("sales/transactions", first.isoformat(), last_day),
        ("licenses/licenses", first.isoformat(), last_day),
    ]
    if args.reconciliations:
        runs += [(ATLASSIAN[0], first.isoformat(), last_month)]
        runs += [(key, *weeks(first, month_end)) for key in ATLASSIAN[1:]]
        year = add_months(month_end, -12).isoformat()
        runs += [(f"metrics/{m.name}", year, last_month) for m in METRICS if m.reconciliations]
    seconds: dict[str, float] = {}
    instance = dg.DagsterInstance.ephemeral()
    with serve(sandbox) as url:
        assert clock(sandbox.world) == args.clock, "the sandbox's clock moved (midnight?): run again"
        marketplace = MarketplaceResource(
            developer_id=DEV, email=EMAIL, api_token=TOKEN, base_url=url, export_poll_interval=0.05
        )
        resources = asset_resources(marketplace, Path(location))
        for key, start, end in runs:
            asset = raw.get(key) or metrics[key.split("/")[1]]
            started = time.perf_counter()
            result = dg.materialize(
                [asset], resources=resources, instance=instance, tags=range_tags(start, end)
            )
            assert result.success, key
            seconds[f"{key} {start}..{end}"] = time.perf_counter() - started
            print(f"loaded {key} {start}..{end} in {seconds[f'{key} {start}..{end}']:.0f} s", file=sys.stderr)
    return seconds


def analyze(url: str) -> None:
    """Table statistics, as autovacuum gathers them soon after a load (the copy leaves none yet)."""
    with psycopg.connect(url, password=os.environ[PASSWORD_ENV], autocommit=True) as con:
        con.execute("ANALYZE")


def measure(found: list[Case], warehouses: dict[str, Warehouse], repeat: int) -> None:
    """Every case on both backends per round; the backend that goes first alternates."""
    for round_ in range(repeat):
        for n, case in enumerate(found):
            order = BACKENDS if (round_ + n) % 2 == 0 else BACKENDS[::-1]
            for backend in order:
                started = time.perf_counter()
                frame = warehouses[backend].query(case.sql, {"start": case.start, "end": case.end})
                case.seconds[backend].append(time.perf_counter() - started)
                case.rows.setdefault(backend, frame.height)
                if case.rows[backend] != frame.height:
                    raise SystemExit(f"{case.label} {case.window} on {backend}: rows changed between rounds")
        print(f"round {round_ + 1} of {repeat} done", file=sys.stderr)


def table(found: list[Case]) -> list[str]:
    lines = ["| metric | window | backend | median s | min-max s | rows |", "|---|---|---|---|---|---|"]
    for case in found:
        for backend in BACKENDS:
            times = case.seconds[backend]
            lines.append(
                f"| {case.label} | {case.window} ({case.start}..{case.end - timedelta(days=1)}) | {backend} "
                f"| {statistics.median(times):.2f} | {min(times):.2f}-{max(times):.2f} "
                f"| {case.rows[backend]:,} |"
            )
    return lines


def count(location: str, table_name: str) -> int:
    with duckdb.connect(location, read_only=True) as con:
        return int(con.sql(f"SELECT count(*) FROM {table_name}").fetchall()[0][0])


def load_averages() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", type=float, default=10, help="the sandbox's volume")
    parser.add_argument("--months", type=int, default=18, help="whole months loaded, before the clock's")
    parser.add_argument("--repeat", type=int, default=3, help="rounds: each query once per backend")
    parser.add_argument("--no-reconciliations", dest="reconciliations", action="store_false")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the markdown results file")
    args = parser.parse_args()
    command = "uv run python bench/metrics.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    args.clock = clock(Sandbox().world)
    month_end = args.clock.replace(day=1)  # the latest whole month ends where the clock's month begins
    first = add_months(month_end, -args.months)
    load_before = load_averages()
    with contextlib.ExitStack() as stack:
        location = str(
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_metrics_"))) / "w.duckdb"
        )
        started = time.perf_counter()
        loads = load(args, location, first, month_end)
        loaded = time.perf_counter() - started
        url = postgres_warehouse(stack)  # sets PASSWORD_ENV for the warehouse
        started = time.perf_counter()
        copy_warehouse(location, url, log=lambda _: None)
        analyze(url)
        copied = time.perf_counter() - started
        warehouses = {"DuckDB": open_warehouse(location), "PostgreSQL": open_warehouse(url)}
        found = cases(month_end, args.reconciliations)
        measure(found, warehouses, args.repeat)
        line_items, licenses = count(location, "sales.transactions"), count(location, "licenses.licenses")
    versions = duckdb.__version__, psycopg.__version__
    lines = [
        f"`{command}`, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}: sandbox volume {args.volume:g}, "
        f"clock {args.clock}, {args.months} months loaded ({first}..{month_end - timedelta(days=1)}): "
        f"{line_items:,} line items in sales.transactions, {licenses:,} rows in licenses.licenses.",
        "",
        f"Machine: {os.cpu_count()} cores, shared (load averages 1/5/15 min: {load_before} before, "
        f"{load_averages()} after). DuckDB {versions[0]}, psycopg {versions[1]}, PostgreSQL from "
        "marketplace_assets_tests/postgres_server.py (fsync off), ANALYZEd after the copy.",
        "",
        f"Loading took {loaded:.0f} s ({', '.join(f'{k}: {v:.0f} s' for k, v in loads.items())}); the copy "
        f"to PostgreSQL and ANALYZE {copied:.0f} s. Each query through `Warehouse.query` (a connection of "
        f"its own, read-only), {args.repeat} rounds, both backends each round, alternating which goes first:",
        "",
        *table(found),
    ]
    if not args.reconciliations:
        lines += ["", "Reconciliations skipped (--no-reconciliations): Atlassian's side was not loaded."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
