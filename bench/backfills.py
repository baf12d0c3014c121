"""Backfills close to the floor: six UI backfills in `dagster dev` against a plain script, and a CLI run.

The sandbox runs as its own process on a free loopback port (exports COMPLETED on the third status read).
Per round, a real `dagster dev` (live mode against the sandbox, a fresh DAGSTER_HOME with the project's
instance settings, a fresh DuckDB warehouse) gets six backfills over GraphQL, as from the UI, one per
asset over 2025-01-01..2025-03-31: `evaluations/by_{country,hosting,partner,region}` (weekly),
`feedback/details` and `sales/transactions` (daily). Reported: launch to done, summed run durations, and
per run from its events: queued, run worker start, pool wait, step process start, the step. A plain
script makes the same requests with the project's client and parsers and writes the same rows to DuckDB,
no Dagster. Export-poll sleeps are counted on both sides and left out of the comparison. Then
`dagster asset materialize` of one partition against `python -c 'import marketplace_assets.definitions'`,
in turn; medians.

Variants: `shipped` (the code and dagster.yaml as they are); `before` (the executor forced to
multiprocess by a `sitecustomize` on PYTHONPATH, a knob of the bench only, and the queue settings of
before issue 13 item 9: a run held in the queue until a pool slot is free, the queue read every 5 s).

    uv run python bench/backfills.py --repeat 2              # before and shipped in turn, CLI 5 times
    uv run python bench/backfills.py --bytecode --variants shipped --cli-repeat 0
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import httpx
import polars as pl

# The sandbox server as export_speed.py starts it (this directory is on sys.path when a script runs).
from export_speed import sandbox_server

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.export_job_model import ExportPolicy
from marketplace_assets.api.exports import Lifecycle, count_export_records, run_export
from marketplace_assets.reports.catalog import REPORTS
from marketplace_assets.reports.export_files import stage_export
from marketplace_assets.reports.export_rows import date_records, rows_in_window
from marketplace_assets.reports.fetch import Window, fetch_report
from marketplace_assets.reports.report import Cadence, Family, Report
from marketplace_assets_tests import dagster_dev as dd

CREDENTIALS = ("sandbox-developer", "sandbox@example.com", "sandbox-token")  # the sandbox's defaults
ASSETS = (
    "evaluations/by_country", "evaluations/by_hosting", "evaluations/by_partner", "evaluations/by_region",
    "feedback/details", "sales/transactions",
)  # fmt: skip
QUARTER = (date(2025, 1, 1), date(2025, 3, 31))
POLLS_TO_COMPLETE = 3
LIVE_POLL_INTERVAL = 30.0  # MARKETPLACE_EXPORT_POLL_INTERVAL's live default, for the runs and the script
CLI_ASSET, CLI_PARTITION = "evaluations/by_hosting", "2025-02-02"

# Variant "before". Every process `dagster dev` or the CLI starts imports this first. With the code of
# before the change (no executors module) it does nothing: the default executor was multiprocess.
FORCE_MULTIPROCESS = """
try:
    import marketplace_assets.executors as executors
except ImportError:
    pass
else:
    executors.runs_in_process = lambda mode, execution_plan: False
"""
BEFORE_SETTINGS = {
    "concurrency": {"pools": {"op_granularity_run_buffer": 0}},
    "run_queue": {"dequeue_interval_seconds": 5},
}
VARIANTS = ("before", "shipped")

STATUS = "{ ... on PartitionBackfill { status } }"
RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status creationTime startTime endTime
    assetSelection { path } } } }"""
EVENTS = """query($id: ID!, $after: String) { logsForRun(runId: $id, afterCursor: $after, limit: 5000) {
    ... on EventConnection { cursor hasMore events { ... on MessageEvent { timestamp eventType message } } }
    } }"""
PHASES = ("queued", "worker start", "pool wait", "step process start", "run start to step", "step")


# -- the sandbox and the partitions -----------------------------------------------------------------------
def reset_sandbox(url: str) -> None:
    httpx.post(f"{url}/_sandbox/reset").raise_for_status()
    config = {"reset": True, "polls_to_complete": POLLS_TO_COMPLETE}
    httpx.post(f"{url}/_sandbox/exports", json=config).raise_for_status()


def export_sleeps(url: str) -> float:
    """What the runs slept polling the exports the sandbox saw: the shipped policy's wait before each
    status read counted (a run's own sleeps cannot be timed from here; the script's are, and match)."""
    policy = ExportPolicy(1, 3 * 3600.0, 30.0, LIVE_POLL_INTERVAL)
    total = 0.0
    for job in httpx.get(f"{url}/_sandbox/exports").json()["exports"]:
        since_start = 0.0
        for _ in range(job["polls"]):
            since_start += policy.poll_delay(since_start)
        total += since_start
    return total


def use_bytecode_cache(prefix: Path) -> None:
    """--bytecode: the processes this bench starts keep the bytecode they compile in `prefix` (not in the
    shared venv), as a user's venv does after its first run and the Docker image at build. Without it,
    under PYTHONDONTWRITEBYTECODE=1 and a venv holding no bytecode, every process compiles it all again."""
    os.environ["PYTHONDONTWRITEBYTECODE"] = ""  # empty: not set
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)
    warm = "import marketplace_assets.definitions, dagster_webserver, dagster_graphql, dagster._cli"
    subprocess.run([sys.executable, "-c", warm], check=True, capture_output=True)


def with_sitecustomize(env: Mapping[str, str], workdir: Path) -> dict[str, str]:
    (workdir / "sitecustomize.py").write_text(FORCE_MULTIPROCESS)
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(workdir), env.get("PYTHONPATH")) if p)}


def report_of(label: str) -> Report:
    return next(r for r in REPORTS if r.label == label)


def partition_keys(report: Report) -> list[str]:
    """The asset's partition keys in the quarter: its days, or the Sundays that start its weeks."""
    first, last = QUARTER
    weekly = report.cadence is Cadence.WEEKLY
    if weekly:
        first += timedelta(days=(6 - first.weekday()) % 7)
    count = (last - first).days // (7 if weekly else 1) + 1
    return [(first + timedelta(days=(7 if weekly else 1) * n)).isoformat() for n in range(count)]


def window_of(report: Report) -> Window:
    """The range a single-run backfill of those keys asks for (a week's window ends on its Saturday)."""
    keys = partition_keys(report)
    end = date.fromisoformat(keys[-1]) + timedelta(days=6 if report.cadence is Cadence.WEEKLY else 0)
    return Window(date.fromisoformat(keys[0]), end)


# -- dagster dev ------------------------------------------------------------------------------------------
@dataclass
class RunTiming:
    asset: str
    status: str
    duration: float  # startTime to endTime: the UI's duration
    phases: dict[str, float]
    events: int  # in the run's event log: a materialization per partition, the checks, the run's own


@dataclass
class DevRound:
    variant: str
    runs_created: float  # seconds after the launch: the backfill daemon's first pass
    last_run_ended: float
    backfills_done: float  # the daemon's next pass saw it
    runs: list[RunTiming]
    export_sleeps: float
    rows: dict[str, int]

    @property
    def summed(self) -> float:
        return sum(r.duration for r in self.runs)


def run_timing(dev: dd.DagsterDev, run_id: str) -> RunTiming:
    """Each phase from the first event that starts it to the first (or last) that ends it."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    events, cursor, more = [], None, True
    while more:
        page = dev.graphql(EVENTS, {"id": run_id, "after": cursor})["logsForRun"]
        events, cursor, more = events + page["events"], page["cursor"], page["hasMore"]
    for event in events:
        kind = event.get("eventType") or ""
        if kind == "ENGINE_EVENT" and event["message"].startswith("Step blocked by limit for pool"):
            kind = "POOL_BLOCKED"
        at = int(event["timestamp"]) / 1000
        first.setdefault(kind, at)
        last[kind] = at

    def span(start: str, end: str) -> float:
        ends = last if end == "STEP_SUCCESS" else first
        return ends[end] - first[start] if start in first and end in ends else float("nan")

    handed = "STEP_WORKER_STARTING" if "STEP_WORKER_STARTING" in first else "STEP_START"
    phases = {
        "queued": span("RUN_ENQUEUED", "RUN_STARTING"),  # RUN_STARTING: the daemon took it off the queue
        "worker start": span("RUN_STARTING", "RUN_START"),
        "pool wait": span("POOL_BLOCKED", handed) if "POOL_BLOCKED" in first else 0.0,
        "step process start": span("STEP_WORKER_STARTING", "STEP_START"),
        "run start to step": span("RUN_START", "STEP_START"),
        "step": span("STEP_START", "STEP_SUCCESS"),
    }
    run = dev.graphql(RUN, {"id": run_id})["runOrError"]
    asset = "/".join(run["assetSelection"][0]["path"])
    return RunTiming(asset, run["status"], run["endTime"] - run["startTime"], phases, len(events))


def backfills_in_dev(url: str, variant: str, workdir: Path) -> DevRound:
    """The six backfills launched at once, as a user would from the UI, until every one is done."""
    reset_sandbox(url)
    env = dd.live_settings(url, workdir / "warehouse.duckdb", CREDENTIALS)
    if variant == "before":
        env = with_sitecustomize(env, workdir)
    overrides = BEFORE_SETTINGS if variant == "before" else {}
    with dd.dagster_dev(workdir / "home", env, instance_overrides=overrides) as dev:
        launched = time.time()
        backfills = {a: dev.launch_backfill([a.split("/")], partition_keys(report_of(a))) for a in ASSETS}
        # One query a second for all six: the webserver shares the 2 cores with the runs.
        query = " ".join(f'b{n}: partitionBackfillOrError(backfillId: "{b}") {STATUS}'
                         for n, b in enumerate(backfills.values()))  # fmt: skip
        done: dict[str, float] = {}
        while len(done) < len(backfills):
            statuses = dev.graphql("{ " + query + " }")
            for n, asset in enumerate(backfills):
                if asset not in done and statuses[f"b{n}"]["status"] in dd.FINISHED_BACKFILL:
                    done[asset] = time.time() - launched
            time.sleep(1.0)
        run_ids = [r["runId"] for b in backfills.values() for r in dev.runs({"dagster/backfill": b})]
        runs = [dev.graphql(RUN, {"id": run_id})["runOrError"] for run_id in run_ids]
        timings = [run_timing(dev, run_id) for run_id in run_ids]
    with duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True) as con:
        rows = {asset: table_rows(con, asset) for asset in ASSETS}
    created, ended = (
        min(r["creationTime"] for r in runs) - launched,
        max(r["endTime"] for r in runs) - launched,
    )
    return DevRound(variant, created, ended, max(done.values()), timings, export_sleeps(url), rows)


def table_rows(con: duckdb.DuckDBPyConnection, asset: str) -> int:
    return int(con.sql(f"SELECT count(*) FROM {asset.replace('/', '.')}").fetchall()[0][0])


# -- the plain script -------------------------------------------------------------------------------------
def write(
    con: duckdb.DuckDBPyConnection, asset: str, frame: pl.DataFrame, column: str, window: Window
) -> None:
    """Replace the window's rows, as the IO manager does: one transaction, inserted by column name."""
    table = asset.replace("/", ".")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {asset.split('/')[0]}")
    con.register("batch", frame.to_arrow())
    con.execute("BEGIN")
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM batch LIMIT 0")
    con.execute(f"DELETE FROM {table} WHERE {column} BETWEEN ? AND ?", [window.start, window.end])
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM batch")
    con.execute("COMMIT")
    con.unregister("batch")


def plain_script(url: str, warehouse: Path) -> tuple[float, float, dict[str, int]]:
    """The same requests, parsing and writes, one asset after the other, in this process: (seconds,
    seconds of them asleep polling the export, rows per table)."""
    reset_sandbox(url)
    developer, email, token = CREDENTIALS
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    started = time.perf_counter()
    with MarketplaceClient(url, email, token) as client, duckdb.connect(str(warehouse)) as con:
        for asset in ASSETS:
            report = report_of(asset)
            window, column = window_of(report), report.partition_column or "date"
            if report.family is not Family.ASYNC_EXPORT:
                write(con, asset, fetch_report(client, report, developer, window), column, window)
                continue
            kind, params = report.export_spec.kind, report.export_spec.params(window)
            count_export_records(client, developer, kind, params)
            lifecycle = Lifecycle(poll_interval=LIVE_POLL_INTERVAL)
            handle, path = run_export(
                client, developer, kind, params, lifecycle=lifecycle, log=lambda _: None, sleep=sleep
            )

            def shape(
                batch: pl.DataFrame, r: Report = report, c: str = column, w: Window = window
            ) -> pl.DataFrame:
                return rows_in_window(date_records(r, batch)[0], c, w)

            staged, _ = stage_export(path, handle.accept, asset, report.date_columns, shape)
            path.unlink(missing_ok=True)
            for batch in staged:
                write(con, asset, batch, column, window)
            staged.cleanup()
        rows = {asset: table_rows(con, asset) for asset in ASSETS}
    return time.perf_counter() - started, sum(slept), rows


# -- the CLI ----------------------------------------------------------------------------------------------
def timed(command: list[str], env: Mapping[str, str], log: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=dd.PROJECT_ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:5])} failed (log: {log})")
    return elapsed


DEFINITIONS = "marketplace_assets.definitions"
MATERIALIZE = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", DEFINITIONS]
# Several assets in one run: as shipped, and forced to a process per step or to the run worker.
SEVERAL = {
    "4 evaluations assets, 4 weeks": ("evaluations/by_country,evaluations/by_hosting,evaluations/by_partner,"
                                      "evaluations/by_region", "2025-02-02...2025-02-23"),
    "licenses + transactions, a month": ("licenses/licenses,sales/transactions", "2025-02-01...2025-02-28"),
}  # fmt: skip
CLI_TITLES = (
    f"`dagster asset materialize --select {CLI_ASSET} --partition {CLI_PARTITION}`, sandbox mode:",
    "Several assets in one `dagster asset materialize` run, live mode against the sandbox server:",
)
IMPORT = [sys.executable, "-c", f"import {DEFINITIONS}"]
MODE = '{"execution": {"config": {"mode": "MODE"}}}'  # run config forcing one executor


def in_turn(
    commands: Mapping[str, tuple[list[str], Mapping[str, str]]], repeat: int, logs: Path
) -> dict[str, list[float]]:
    """Each command once, in turn, `repeat` times, after an untimed first pass (the instance's tables,
    the warehouse, the sandbox's data); seconds each."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    logs.mkdir()
    for n in range(repeat + 1):
        for name, (command, env) in commands.items():
            elapsed = timed(command, env, logs / f"{n}.log")
            if n:
                times[name].append(elapsed)
    return times


def cli_runs(url: str, repeat: int, workdir: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One partition of one asset, sandbox mode (as shipped, and forced to multiprocess), against the import
    of the definitions; then several assets in one run, live mode against the sandbox server."""
    home, forced = workdir / "cli_home", workdir / "multiprocess"
    home.mkdir()
    forced.mkdir()
    (home / "dagster.yaml").write_text(dd.instance_yaml())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")}
    env["DAGSTER_HOME"] = str(home)
    sandbox = env | {"MARKETPLACE_SANDBOX": "1", "MARKETPLACE_WAREHOUSE": str(workdir / "cli.duckdb")}
    one = [*MATERIALIZE, "--select", CLI_ASSET, "--partition", CLI_PARTITION]
    single = in_turn({
        "CLI run, shipped": (one, sandbox),
        "CLI run, multiprocess (before)": (one, with_sitecustomize(sandbox, forced)),
        "import of the definitions": (IMPORT, sandbox),
    }, repeat, workdir / "cli")  # fmt: skip
    reset_sandbox(url)
    live = env | dd.live_settings(url, workdir / "several.duckdb", CREDENTIALS)
    commands = {}
    for what, (assets, keys) in SEVERAL.items():
        command = [*MATERIALIZE, "--select", assets, "--partition-range", keys]
        commands[f"{what}, shipped"] = (command, live)
        for mode in ("multiprocess", "in_process"):
            commands[f"{what}, {mode}"] = ([*command, "--config-json", MODE.replace("MODE", mode)], live)
    return single, in_turn(commands, repeat, workdir / "several")


# -- the report -------------------------------------------------------------------------------------------
def fmt(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds:.1f}"  # NaN: the phase did not happen


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def report(
    script: tuple[float, float, dict[str, int]],
    rounds: list[DevRound],
    cli: tuple[dict[str, list[float]], dict[str, list[float]]] | None,
) -> str:
    total, slept, rows = script
    floor = total - slept
    out = [f"Plain script: {total:.1f} s, {slept:.1f} s of it export-poll sleeps: {floor:.1f} s without.", ""]
    header = [
        "variant", "runs", "launch to runs created", "runs created to last run end", "launch to last run end",
        "launch to backfills done", "summed run durations", "events", "summed without sleeps", "x script",
    ]  # fmt: skip
    out += table(header, [[
        r.variant, str(len(r.runs)), fmt(r.runs_created), fmt(r.last_run_ended - r.runs_created),
        fmt(r.last_run_ended), fmt(r.backfills_done), fmt(r.summed), str(sum(run.events for run in r.runs)),
        fmt(r.summed - r.export_sleeps), f"{(r.summed - r.export_sleeps) / floor:.1f}",
    ] for r in rounds])  # fmt: skip
    per_run = [
        [r.variant, run.asset, run.status, str(run.events), fmt(run.duration), *map(fmt, run.phases.values())]
        for r in rounds for run in sorted(r.runs, key=lambda run: run.asset)
    ]  # fmt: skip
    out += table(["variant", "run", "status", "events", "duration", *PHASES], per_run)
    out += [
        f"**{r.variant}: rows {r.rows} differ from the script's {rows}**" for r in rounds if r.rows != rows
    ]
    for title, times in zip(CLI_TITLES, cli or (), strict=True):
        medians = {name: statistics.median(seconds) for name, seconds in times.items()}
        base = medians.get("import of the definitions", float("nan"))
        out += [title, ""]
        out += table(["command", "seconds, in turn", "median", "x import"], [
            [name, " / ".join(map(fmt, seconds)), fmt(medians[name]), f"{medians[name] / base:.2f}"]
            for name, seconds in times.items()
        ])  # fmt: skip
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: before, shipped")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of dagster dev per variant")
    parser.add_argument("--script-repeat", type=int, default=3, help="timed script passes (median)")
    parser.add_argument("--cli-repeat", type=int, default=5, help="CLI and import repeats (0: none)")
    parser.add_argument("--bytecode", action="store_true", help="cache bytecode (use_bytecode_cache)")
    args = parser.parse_args()
    rounds: list[DevRound] = []
    load = os.getloadavg()[0]
    with sandbox_server() as url, tempfile.TemporaryDirectory(prefix="backfills_") as tmp:
        if args.bytecode:
            use_bytecode_cache(Path(tmp) / "pycache")
        # One more pass than timed, first: the sandbox generates a report's data on its first request, and
        # every timed pass, the script's and the runs', reads it warm.
        scripts = [plain_script(url, Path(tmp) / f"script_{n}.duckdb") for n in range(args.script_repeat + 1)]
        for total, slept, _ in scripts:
            print(f"script: {total:.1f} s, {slept:.1f} s asleep", file=sys.stderr)
        script = sorted(scripts[1:], key=lambda s: s[0] - s[1])[len(scripts[1:]) // 2]
        for n in range(args.repeat):
            for variant in (v for v in args.variants.split(",") if v):
                (workdir := Path(tmp) / f"{variant}_{n}").mkdir()
                rounds.append(backfills_in_dev(url, variant, workdir))
                print(f"{variant}: backfills done {rounds[-1].backfills_done:.1f} s", file=sys.stderr)
        cli = cli_runs(url, args.cli_repeat, Path(tmp)) if args.cli_repeat else None
    print(report(script, rounds, cli))
    print(f"\nLoad average (1 min): {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.")


if __name__ == "__main__":
    main()
