"""A million transactions through the async export: download, parse and store, with peak memory.

The sandbox runs as its own process (`python -m marketplace_assets.sandbox`, volume 25 ≈ 1M line items a
year), so this process's peak RSS is the pipeline's alone: the run starts the export, polls it, streams
the CSV to disk, parses it with polars and writes it to DuckDB, as a UI backfill of a year does. For
scale, the same rows as Python objects (the csv module's dicts) are measured on a sample and extrapolated.

    uv run python bench/large_export.py            # a year at volume 25: ~1M rows
    uv run python bench/large_export.py --volume 5 # a quick run
    uv run python bench/large_export.py --pii hash # the same with contact fields hashed
    uv run python bench/large_export.py --warehouse postgres  # into a PostgreSQL server it starts

It also times the completeness reconciliation on its own: the list request with the export's filters
and `limit=1` whose `totalCount` the file is checked against, against the whole run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import dagster as dg
import duckdb
import httpx

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.exports import ExportKind, count_export_records
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.exports import EXPORT_REPORTS, build_export_asset
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.warehouse import WarehouseIOManager, WarehouseResource

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
    parser.add_argument("--warehouse", choices=["duckdb", "postgres"], default="duckdb")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        run(args, stack)


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


def stored_rows(warehouse: str) -> int:
    from marketplace_assets.warehouse import TableRef, open_warehouse

    return open_warehouse(warehouse).read(TableRef("sales", "transactions")).height


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "marketplace_assets.sandbox", "--port", "0", "--volume", str(args.volume)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        base_url = line.strip().rsplit(" ", 1)[-1]
        httpx.post(f"{base_url}/_sandbox/clock", json={"date": args.end}).raise_for_status()
        httpx.post(f"{base_url}/_sandbox/exports", json={"polls_to_complete": 1}).raise_for_status()
        per_row = python_objects_bytes_per_row(base_url)
        # The sandbox's first count computes (and caches) its daily volumes, which generating the export
        # needs as well: time it apart from the request's own cost, which the second ask shows.
        count_seconds = []
        with MarketplaceClient(base_url, EMAIL, TOKEN) as client:
            for _ in range(2):
                counted = time.perf_counter()
                expected = count_export_records(
                    client, DEV, ExportKind.TRANSACTIONS, {"startDate": args.start, "endDate": args.end}
                )
                count_seconds.append(time.perf_counter() - counted)
        report = next(r for r in EXPORT_REPORTS if r.label == "sales/transactions")
        asset = build_export_asset(
            report, dg.DailyPartitionsDefinition(start_date="2024-01-01"), sandbox=False
        )
        with tempfile.TemporaryDirectory() as tmp:
            warehouse = (
                postgres_warehouse(stack) if args.warehouse == "postgres" else str(Path(tmp) / "bench.duckdb")
            )
            started = time.perf_counter()
            result = dg.materialize(
                [asset],
                resources={
                    "marketplace": MarketplaceResource(
                        developer_id=DEV,
                        email=EMAIL,
                        api_token=TOKEN,
                        base_url=base_url,
                        export_poll_interval=0.5,
                    ),
                    "warehouse": WarehouseIOManager(warehouse=str(warehouse)),
                    "warehouse_store": WarehouseResource(warehouse=str(warehouse)),
                    "pii": PiiPolicy(mode=args.pii, salt="bench-salt" if args.pii == "hash" else None),
                },
                tags={
                    "dagster/asset_partition_range_start": args.start,
                    "dagster/asset_partition_range_end": args.end,
                },
            )
            elapsed = time.perf_counter() - started
            assert result.success
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before reading back
            if args.warehouse == "duckdb":
                with duckdb.connect(warehouse, read_only=True) as con:
                    rows = con.sql("SELECT count(*) FROM sales.transactions").fetchall()[0][0]
                db_mb = Path(warehouse).stat().st_size / 1e6
            else:
                rows, db_mb = stored_rows(warehouse), float("nan")
    finally:
        server.terminate()
        server.wait(timeout=30)
    objects_mb = per_row * rows / 1e6
    print(
        f"sales/transactions, {args.start}..{args.end}, sandbox volume {args.volume}, "
        f"MARKETPLACE_PII={args.pii}, warehouse {args.warehouse}: one run, one export"
    )
    print("| rows | wall time (s) | rows/s | peak RSS (MB) | as Python dicts (MB, est.) | DuckDB file (MB) |")
    print("|---|---|---|---|---|---|")
    cells = [f"{rows:,}", f"{elapsed:.0f}", f"{rows / elapsed:,.0f}", f"{peak_mb:,.0f}", f"{objects_mb:,.0f}"]
    print("| " + " | ".join(cells) + f" | {db_mb:,.0f} |")
    print(
        f"Reconciliation: asking the list's totalCount ({expected:,}) takes {1000 * count_seconds[1]:.0f} ms "
        f"({100 * count_seconds[1] / elapsed:.3f}% of the run's {elapsed:.0f} s; the run asks it once). "
        f"The sandbox's first answer took {count_seconds[0]:.1f} s, computing daily volumes it then reuses "
        "to generate the export."
    )


if __name__ == "__main__":
    main()
