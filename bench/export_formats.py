"""CSV or JSON for async exports? Reads the same sandbox transactions export in both formats.

Each file is parsed in a fresh process (so peak RSS is the reader's own), and both results must hold the
same rows. Prints file size, rows, wall time, rows/s and peak RSS per format.

    uv run python bench/export_formats.py --volume 10 --start 2025-01-01 --end 2025-06-30
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.sandbox import Sandbox
from marketplace_assets.sandbox.licensing_data import set_clock

PATH = "reporting/developer-space/sandbox-developer/sales/transactions/export"


def parse_in_child(path: str, accept: str) -> None:
    from marketplace_assets.reports.export_files import read_export

    started = time.perf_counter()
    frame = read_export(Path(path), accept, "sales/transactions", ("purchase_details_sale_date",))
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    revenue = round(float(frame["purchase_details_vendor_amount"].sum()), 2)
    result = {"rows": frame.height, "columns": frame.width, "seconds": elapsed, "peak_rss_mb": peak_mb}
    print(json.dumps({**result, "revenue": revenue}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--volume", type=float, default=10)
    parser.add_argument("--start", default="2025-01-01")
    parser.add_argument("--end", default="2025-06-30")
    args = parser.parse_args()
    sandbox = Sandbox(volume=args.volume)
    set_clock(sandbox, args.end)
    results = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        MarketplaceClient(
            "https://sandbox.invalid/marketplace",
            "sandbox@example.com",
            "sandbox-token",
            transport=sandbox.transport(),
        ) as client,
    ):
        for accept in ("csv", "json"):
            params = {"accept": accept, "startDate": args.start, "endDate": args.end}
            path = client.download(PATH, params=params, suffix=f".{accept}")
            target = Path(tmp) / f"export.{accept}"
            path.rename(target)
            command = [sys.executable, __file__, "--child", str(target), accept]
            child = subprocess.run(command, capture_output=True, text=True, check=True)
            results[accept] = {
                **json.loads(child.stdout.strip().splitlines()[-1]),
                "mb": target.stat().st_size / 1e6,
            }
    print(f"transactions export, sandbox volume {args.volume}, {args.start}..{args.end}")
    print("| format | file MB | rows | seconds | rows/s | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for accept, r in results.items():
        rate = r["rows"] / r["seconds"]
        cells = [
            accept,
            f"{r['mb']:.0f}",
            r["rows"],
            f"{r['seconds']:.2f}",
            f"{rate:,.0f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    assert results["csv"]["rows"] == results["json"]["rows"], "both formats must hold the same rows"
    assert results["csv"]["revenue"] == results["json"]["revenue"], "both formats must hold the same amounts"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        parse_in_child(sys.argv[2], sys.argv[3])
    else:
        main()
