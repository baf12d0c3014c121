"""Exports that finish in seconds: licenses plus transactions for one month, through the CLI, launch to rows.

Starts the sandbox as its own process on a free loopback port, with exports that complete on the third
status poll, and times one `dagster asset materialize` of `licenses/licenses` and `sales/transactions`
for a month (one run; live mode pointed at the sandbox; a temporary DAGSTER_HOME with the project's
instance settings, pool limit included; a temporary DuckDB warehouse), from the launch to the rows in the
warehouse, with

  A. fixed polling, as before issue 13: the first status read at once after the start, then every 5 s
     (the old live default). The run's processes get it from a `sitecustomize` this bench puts on their
     PYTHONPATH, which patches `ExportPolicy.poll_delay`: a knob of the bench only;
  B. adaptive polling, the shipped code: the first read 1 s after the start, then 2, 4, 8, ... s apart
     up to MARKETPLACE_EXPORT_POLL_INTERVAL (left unset: 30 s in live mode).

The variants alternate (A, B, A, B, ...). Each run's event log gives when its steps and exports started
and when each asset's rows were written (its last materialization event, logged after the write),
relative to the launch; the warehouse is then read to check the rows are there.

    uv run python bench/export_speed.py               # A and B twice each
    uv run python bench/export_speed.py --repeat 3 --month 2025-03
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from calendar import monthrange
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import httpx

from marketplace_assets_tests.dagster_dev import PROJECT_ROOT, instance_yaml, live_settings

DEV, EMAIL, TOKEN = "sandbox-developer", "sandbox@example.com", "sandbox-token"  # the sandbox's defaults
ASSETS = {"licenses/licenses": "licenses.licenses", "sales/transactions": "sales.transactions"}
POLLS_TO_COMPLETE = 3
MEDIANS = ("launch → rows", "launch → CLI exit", "export start → rows (the slower asset)")
OLD_INTERVAL = "5"  # the live default before issue 13

# Variant A's processes (the CLI, and each step process the multiprocess executor starts) import this at
# start-up: it restores the polling of before issue 13 without changing the code under test.
FIXED_POLLING = """
from marketplace_assets.api.export_job_model import ExportPolicy


def _fixed(self: ExportPolicy, since_start: float, *, sensor_tick: bool = False) -> float:
    # Before issue 13 a run read the status at once after the start (the only read at 0 s), then
    # every interval.
    return 0.0 if since_start <= 0 else self.poll_interval_seconds


ExportPolicy.poll_delay = _fixed
"""


@dataclass(frozen=True)
class Variant:
    name: str
    fixed: bool  # A: the sitecustomize above; B: the code as it is
    env: dict[str, str]


VARIANTS = (
    Variant("A: fixed 5 s (before)", True, {"MARKETPLACE_EXPORT_POLL_INTERVAL": OLD_INTERVAL}),
    Variant("B: adaptive 1, 2, 4, ... s (now)", False, {}),
)


@dataclass(frozen=True)
class Timing:
    """Seconds after the launch of the CLI."""

    variant: str
    run_started: float  # RUN_START: the CLI has loaded the definitions and launched the run
    steps_started: dict[str, float]  # STEP_START: each step's process has loaded them too
    exports_started: dict[str, float]
    rows_written: dict[str, float]  # each asset's last materialization event
    exited: float
    rows: dict[str, int]
    status_polls: list[int]  # per export, as the sandbox counted them

    @property
    def to_rows(self) -> float:
        return max(self.rows_written.values())

    @property
    def export_gap(self) -> float:
        return max(self.exports_started.values()) - min(self.exports_started.values())

    @property
    def export_to_rows(self) -> dict[str, float]:
        return {asset: self.rows_written[asset] - self.exports_started[asset] for asset in ASSETS}


@contextmanager
def sandbox_server() -> Iterator[str]:
    """The sandbox in a process of its own (so the run's timing is not shared with it); its base URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "marketplace_assets.sandbox", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        if "listening on" not in line:
            raise SystemExit(f"the sandbox did not start: {line!r}")
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        server.terminate()
        server.wait(timeout=30)


def materialize(base_url: str, variant: Variant, first: date, last: date, workdir: Path) -> Timing:
    """One CLI run of both assets for the range, in fresh temporary state; its timing."""
    exports = {"reset": True, "polls_to_complete": POLLS_TO_COMPLETE}
    httpx.post(f"{base_url}/_sandbox/exports", json=exports).raise_for_status()
    home, warehouse = workdir / "home", workdir / "warehouse.duckdb"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml())
    # An interval set in this shell would hide B's default: each variant says its own.
    env = {k: v for k, v in os.environ.items() if k != "MARKETPLACE_EXPORT_POLL_INTERVAL"}
    env.update(live_settings(base_url, warehouse, (DEV, EMAIL, TOKEN), MARKETPLACE_START_DATE="2024-01-01"))
    env.update(variant.env, DAGSTER_HOME=str(home))
    if variant.fixed:
        (workdir / "sitecustomize.py").write_text(FIXED_POLLING)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(workdir), env.get("PYTHONPATH")) if p)
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "marketplace_assets.definitions",
        "--select", ",".join(ASSETS), "--partition-range", f"{first}...{last}",
    ]  # fmt: skip
    launched = time.time()
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    exited = time.time() - launched
    (workdir / "cli.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"{variant.name}: the CLI failed (log: {workdir / 'cli.log'})")
    polls = [job["polls"] for job in httpx.get(f"{base_url}/_sandbox/exports").json()["exports"]]
    return Timing(variant.name, *_events(home, launched), exited, _rows(warehouse), polls)


def _events(
    home: Path, launched: float
) -> tuple[float, dict[str, float], dict[str, float], dict[str, float]]:
    """The run's start, then per asset its step's start, its export's start and its last rows written,
    from the run's event log."""
    steps = {"__".join(asset.split("/")): asset for asset in ASSETS}
    run_started = float("nan")
    started: dict[str, float] = {}
    exported: dict[str, float] = {}
    written: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        for entry in instance.all_logs(run.run_id):
            at = entry.timestamp - launched
            kind = entry.dagster_event.event_type if entry.dagster_event else None
            if kind is dg.DagsterEventType.RUN_START:
                run_started = at
            asset = steps.get(entry.step_key or "")
            if asset is None:
                continue
            if kind is dg.DagsterEventType.STEP_START:
                started[asset] = at
            elif kind is dg.DagsterEventType.ASSET_MATERIALIZATION:
                written[asset] = max(at, written.get(asset, at))
            elif kind is None and " export " in entry.user_message and " started " in entry.user_message:
                exported.setdefault(asset, at)
    return run_started, started, exported, written


def _rows(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {a: int(con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0]) for a, t in ASSETS.items()}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def report(timings: list[Timing], first: date, last: date) -> str:
    """Per run, then the medians per variant; times in seconds, licenses before transactions."""
    per_run = []
    for t in timings:
        to_rows = t.export_to_rows
        per_run.append([
            t.variant,
            f"{t.to_rows:.1f}",
            f"{t.exited:.1f}",
            f"{t.run_started:.1f}",
            " / ".join(f"{t.steps_started[a]:.1f}" for a in ASSETS),
            " / ".join(f"{t.exports_started[a]:.1f}" for a in ASSETS) + f" ({t.export_gap:.2f} apart)",
            " / ".join(f"{to_rows[a]:.1f}" for a in ASSETS),
            ", ".join(str(n) for n in t.status_polls),
            " / ".join(f"{t.rows[a]:,}" for a in ASSETS),
        ])  # fmt: skip
    medians = []
    for variant in VARIANTS:
        mine = [t for t in timings if t.variant == variant.name]
        to_rows = statistics.median(t.to_rows for t in mine)
        exited = statistics.median(t.exited for t in mine)
        # The part polling decides, and the one least shaken by a busy machine.
        export = statistics.median(max(t.export_to_rows.values()) for t in mine)
        medians.append([variant.name, str(len(mine)), f"{to_rows:.1f}", f"{exited:.1f}", f"{export:.1f}"])
    header = (
        f"licenses/licenses + sales/transactions, {first}..{last}: one `dagster asset materialize` run "
        f"(multiprocess executor), the sandbox's exports COMPLETED on status poll {POLLS_TO_COMPLETE}. "
        "Seconds after the launch of the CLI (export start → rows: after the export's start); `a / b` is "
        "licenses / transactions."
    )
    per_run_header = [
        "polling", "launch → rows", "launch → CLI exit", "run started", "steps started", "exports started",
        "export start → rows", "status polls per export", "rows",
    ]  # fmt: skip
    return "\n".join([
        header,
        "",
        *_table(per_run_header, per_run),
        "",
        *_table(["polling", "runs", *(f"median {what}" for what in MEDIANS)], medians),
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--month", default="2025-02", help="YYYY-MM: the month of daily partitions")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each variant, alternating")
    args = parser.parse_args()
    first = date.fromisoformat(f"{args.month}-01")
    last = first.replace(day=monthrange(first.year, first.month)[1])
    timings = []
    with sandbox_server() as base_url, tempfile.TemporaryDirectory(prefix="export_speed_") as tmp:
        for n in range(args.repeat):
            for variant in VARIANTS:
                workdir = Path(tmp) / f"{n}{'ab'[VARIANTS.index(variant)]}"
                workdir.mkdir()
                timings.append(materialize(base_url, variant, first, last, workdir))
                print(f"{variant.name}: launch → rows {timings[-1].to_rows:.1f} s", file=sys.stderr)
    print(report(timings, first, last))


if __name__ == "__main__":
    main()
