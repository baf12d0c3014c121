"""A year of transactions through the async export: download, parse and store, with peak memory.

The sandbox runs as its own process (`python -m marketplace_assets.sandbox`; volume 25 is about a
million line items a year and volume 78 about ten million: the apps and their daily volumes both grow
with it, so the line items grow about as its square). It generates the export file once, before any
run, and serves every run's export from disk (`keep_files`), so the runs measure the pipeline and not
the generator. Each warehouse is loaded by a fresh process of its own whose peak RSS is the run's
alone: it starts the export, polls it, streams the CSV to disk, stages it in parquet batches and writes
them to the warehouse in one transaction, as a UI backfill of a year does. For scale, the same rows as
Python objects (the csv module's dicts) are measured on a sample and extrapolated.

    uv run python bench/large_export.py                               # ~1M rows into DuckDB
    uv run python bench/large_export.py --warehouse duckdb postgres   # the same file into both
    uv run python bench/large_export.py --volume 78 --warehouse duckdb postgres    # ~10M rows
    uv run python bench/large_export.py --volume 5                    # a quick run
    uv run python bench/large_export.py --pii hash                    # contact fields hashed

It also times the completeness reconciliation: the list request with the export's filters and
`limit=1` whose `totalCount` the file is checked against.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import httpx

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.exports import count_export_records, run_export
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.exports import build_export_asset
from marketplace_assets.dagster_conventions import range_tags
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.catalog import REPORTS_BY_KEY
from marketplace_assets.reports.fetch import Window
from marketplace_assets.warehouse import WarehouseIOManager

DEV, EMAIL, TOKEN = "sandbox-developer", "sandbox@example.com", "sandbox-token"


def python_objects_bytes_per_row(base_url: str) -> float:
    """Bytes per row when the export's rows are held as Python dicts (measured on one day's export)."""
    with MarketplaceClient(base_url, EMAIL, TOKEN) as client:
        path = client.download(
            f"reporting/developer-space/{DEV}/sales/transactions/export",
            params={"accept": "csv", "startDate": "2025-06-01", "endDate": "2025-06-07"},
        )
    text = path.read_text()
    path.unlink()
    tracemalloc.start()
    rows = list(csv.DictReader(io.StringIO(text)))
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / max(1, len(rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--volume", type=float, default=25)
    parser.add_argument("--start", default="2024-07-01")
    parser.add_argument("--end", default="2025-06-30")
    parser.add_argument("--pii", choices=["keep", "hash", "drop"], default="keep")
    parser.add_argument(
        "--warehouse", choices=["duckdb", "postgres"], nargs="+", default=["duckdb"],
        help="one or more: each loads the same pre-generated file, in this order, in a process of its own",
    )  # fmt: skip
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: the child process's warehouse
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with contextlib.ExitStack() as stack:
            print(json.dumps(load_once(args, stack)))
        return
    compare(args)


def postgres_warehouse(stack: contextlib.ExitStack) -> str:
    """A PostgreSQL server of its own (the tests' fixture code), stopped when the bench ends."""
    from marketplace_assets_tests.postgres_server import _stop, find_bindir, start_server

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found: apt-get install postgresql")
    started = start_server(bindir)
    stack.callback(_stop, started.runner, started.bindir, started.base)
    os.environ["MARKETPLACE_WAREHOUSE_PASSWORD"] = started.server.password
    return started.server.url


def stored(warehouse: str) -> tuple[int, float]:
    """The rows of sales.transactions and the megabytes the warehouse holds for it."""
    if not warehouse.startswith("postgresql://"):
        with duckdb.connect(warehouse, read_only=True) as con:
            rows = int(con.sql("SELECT count(*) FROM sales.transactions").fetchall()[0][0])
        return rows, Path(warehouse).stat().st_size / 1e6
    import psycopg

    with psycopg.connect(warehouse, password=os.environ["MARKETPLACE_WAREHOUSE_PASSWORD"]) as con:
        row = con.execute(
            "SELECT count(*), pg_total_relation_size('sales.transactions') FROM sales.transactions"
        ).fetchone()
    return (int(row[0]), int(row[1]) / 1e6) if row else (0, 0.0)


TRANSACTIONS = REPORTS_BY_KEY[dg.AssetKey(["sales", "transactions"])]
EXPORT = TRANSACTIONS.export_spec


def compare(args: argparse.Namespace) -> None:
    """One sandbox for every warehouse: it generates the export file once, before any run, and serves
    each run's export from disk, so the runs measure the pipeline, not the generator."""
    server = subprocess.Popen(
        [sys.executable, "-m", "marketplace_assets.sandbox", "--port", "0", "--volume", str(args.volume)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        base_url = line.strip().rsplit(" ", 1)[-1]
        httpx.post(f"{base_url}/_sandbox/clock", json={"date": args.end}).raise_for_status()
        settings = {"polls_to_complete": 1, "keep_files": True}
        httpx.post(f"{base_url}/_sandbox/exports", json=settings).raise_for_status()
        window = Window(date.fromisoformat(args.start), date.fromisoformat(args.end))
        # The sandbox's first answers compute a year of volumes and the whole file: minutes at volume 78.
        with MarketplaceClient(base_url, EMAIL, TOKEN, read_timeout=3600) as client:
            counted = time.perf_counter()
            expected = count_export_records(client, DEV, EXPORT.kind, window.params())
            count_seconds = time.perf_counter() - counted
            generated = time.perf_counter()
            params = EXPORT.params(window)
            _, path = run_export(client, DEV, EXPORT.kind, params, log=str)
            generate_seconds = time.perf_counter() - generated
            file_mb = path.stat().st_size / 1e6
            path.unlink()
        results = []
        for warehouse in args.warehouse:
            child = subprocess.run(
                [sys.executable, __file__, "--one", warehouse, "--base-url", base_url, "--volume",
                 str(args.volume), "--start", args.start, "--end", args.end, "--pii", args.pii],
                capture_output=True, text=True,
            )  # fmt: skip
            if child.returncode:
                raise SystemExit(f"the {warehouse} run failed:\n{child.stderr[-4000:]}")
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        per_row = python_objects_bytes_per_row(base_url)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(
        f"sales/transactions, {args.start}..{args.end}, sandbox volume {args.volume:g}, "
        f"MARKETPLACE_PII={args.pii}: one run per warehouse, one export of {expected:,} records "
        f"({file_mb:,.0f} MB of CSV, generated once by the sandbox in {generate_seconds:.0f} s)"
    )
    header = ("warehouse", "rows", "wall time (s)", "rows/s", "peak RSS (MB)", "as Python dicts (MB, est.)")
    print("| " + " | ".join(header) + " | stored (MB) |")
    print("|---|---|---|---|---|---|---|")
    for result in results:
        rows, elapsed = result["rows"], result["seconds"]
        cells = [
            result["warehouse"], f"{rows:,}", f"{elapsed:.0f}", f"{rows / elapsed:,.0f}",
            f"{result['peak_mb']:,.0f}", f"{per_row * rows / 1e6:,.0f}", f"{result['stored_mb']:,.0f}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print(
        f"Reconciliation: asking the list's totalCount ({expected:,}) took {1000 * count_seconds:.0f} ms "
        "(the run asks it once)."
    )


def load_once(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict[str, Any]:
    """One run of the export asset into one warehouse, in this (fresh) process: its peak RSS is the
    run's alone."""
    asset = build_export_asset(TRANSACTIONS, start_date=date(2024, 1, 1), sandbox=False)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    warehouse = postgres_warehouse(stack) if args.one == "postgres" else str(tmp / "bench.duckdb")
    started = time.perf_counter()
    result = dg.materialize(
        [asset],
        resources={
            "marketplace": MarketplaceResource(
                developer_id=DEV,
                email=EMAIL,
                api_token=TOKEN,
                base_url=args.base_url,
                export_poll_interval=0.5,
            ),
            "warehouse": WarehouseIOManager(warehouse=warehouse),
            "pii": PiiPolicy(mode=args.pii, salt="bench-salt" if args.pii == "hash" else None),
        },
        tags=range_tags(args.start, args.end),
    )
    elapsed = time.perf_counter() - started
    assert result.success
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before reading back
    rows, stored_mb = stored(warehouse)
    return {
        "warehouse": args.one, "rows": rows, "seconds": elapsed, "peak_mb": peak_mb, "stored_mb": stored_mb,
    }  # fmt: skip


if __name__ == "__main__":
    main()
