"""Backfill cost: one single-run backfill of a range vs. the same range run one partition per run.

Starts the sandbox as a real HTTP server on loopback and a real `dagster dev` pointed at it in live mode,
then for `evaluations/by_hosting` over N weeks:
  1. launches a UI-style partition backfill (BackfillPolicy.single_run → one run), and
  2. launches one run per weekly partition (as a per-partition backfill would),
and reports API requests (counted by the sandbox), wall time from launch to the last run's end, and the
summed run durations.

    uv run python bench/backfill.py              # a month: the 4 weeks of February 2025
    uv run python bench/backfill.py --weeks 26   # half a year
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets_tests.dagster_dev import DagsterDev, dagster_dev

DEV, EMAIL, TOKEN = "bench-developer", "bench@example.com", "bench-Token-0123456789"
ASSET = ["evaluations", "by_hosting"]
OUT = Path(__file__).parent / "out"


def run_seconds(runs: list[dict]) -> float:
    return sum(r["endTime"] - r["startTime"] for r in runs)


def single_run_backfill(dev: DagsterDev, sandbox: Sandbox, weeks: list[str]) -> dict:
    sandbox.reset_stats()
    started = time.monotonic()
    backfill_id = dev.launch_backfill([ASSET], weeks)
    status = dev.wait_for_backfill(backfill_id, timeout=1800)
    runs = dev.runs({"dagster/backfill": backfill_id})
    wall = time.monotonic() - started
    return {
        "mode": "single-run backfill",
        "status": status,
        "runs": len(runs),
        "api_requests": sandbox.stats()["requests"],
        "wall_s": round(wall, 1),
        "run_s": round(run_seconds(runs), 1),
    }


def one_run_per_partition(dev: DagsterDev, sandbox: Sandbox, weeks: list[str]) -> dict:
    sandbox.reset_stats()
    started = time.monotonic()
    run_ids = [dev.launch_run(ASSET, week) for week in weeks]
    runs = [dev.wait_for_run(run_id, timeout=1800) for run_id in run_ids]
    wall = time.monotonic() - started
    return {
        "mode": "one run per partition",
        "status": ",".join(sorted({r["status"] for r in runs})),
        "runs": len(runs),
        "api_requests": sandbox.stats()["requests"],
        "wall_s": round(wall, 1),
        "run_s": round(run_seconds(runs), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--first-week", default="2025-02-02", help="a Sunday")
    args = parser.parse_args()
    first = date.fromisoformat(args.first_week)
    weeks = [(first + timedelta(weeks=i)).isoformat() for i in range(args.weeks)]

    sandbox = Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN)
    with tempfile.TemporaryDirectory() as tmp, serve(sandbox, port=0) as url:
        env = {
            "MARKETPLACE_SANDBOX": "0",
            "MARKETPLACE_BASE_URL": url,
            "MARKETPLACE_DEVELOPER_ID": DEV,
            "MARKETPLACE_EMAIL": EMAIL,
            "MARKETPLACE_API_TOKEN": TOKEN,
            "MARKETPLACE_WAREHOUSE": str(Path(tmp) / "bench.duckdb"),
            "MARKETPLACE_START_DATE": "2024-01-01",
        }
        with dagster_dev(Path(tmp) / "home", env) as dev:
            results = [single_run_backfill(dev, sandbox, weeks), one_run_per_partition(dev, sandbox, weeks)]

    print(f"evaluations/by_hosting, {len(weeks)} weekly partitions {weeks[0]} .. {weeks[-1]}")
    print("| mode | runs | API requests | wall time (s) | summed run time (s) | status |")
    print("|---|---|---|---|---|---|")
    for r in results:
        cells = (r["mode"], r["runs"], r["api_requests"], r["wall_s"], r["run_s"], r["status"])
        print("| " + " | ".join(str(c) for c in cells) + " |")
    OUT.mkdir(exist_ok=True)
    (OUT / f"backfill_{len(weeks)}w.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
