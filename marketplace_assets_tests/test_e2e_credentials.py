"""End to end: a gateway that echoes the request's headers in its error bodies must not put the
Marketplace credentials anywhere Dagster keeps things.

The sandbox runs as a real HTTP server on loopback; `dagster asset materialize` runs in live mode with a
real instance (SQLite event log, compute logs) in a fresh DAGSTER_HOME. One run succeeds and fills the
warehouse, then one run fails on a 400 and another retries a 503, both with bodies that echo
`Authorization: Basic <base64 of email:token>`.
Every file the instance and the warehouse hold, and everything the commands printed, is then searched
for the token in each form it can travel in.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from marketplace_assets.sandbox import FaultRule, Sandbox, serve
from marketplace_assets_tests.dagster_dev import live_settings

pytestmark = pytest.mark.e2e

DEV, EMAIL, TOKEN = "leak-dev", "leak@example.com", "leak-Token-3141592653/+="
PAIR = f"{EMAIL}:{TOKEN}".encode()
FORMS = {
    "raw token": TOKEN,
    "URL-encoded token": quote(TOKEN, safe=""),
    "base64 of email:token": base64.b64encode(PAIR).decode(),
    "base64 without padding": base64.b64encode(PAIR).decode().rstrip("="),
    "URL-safe base64": base64.urlsafe_b64encode(PAIR).decode().rstrip("="),
}
PROJECT = Path(__file__).resolve().parents[1]


def materialize(env: dict[str, str], partition: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "marketplace_assets.definitions",
    ]
    command += ["--select", "feedback/details", "--partition", partition]
    return subprocess.run(command, env=env, cwd=PROJECT, capture_output=True, text=True, timeout=300)


def test_echoed_credentials_reach_no_log_event_or_table(tmp_path: Path) -> None:
    sandbox = Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN)
    home, warehouse = tmp_path / "home", tmp_path / "warehouse.duckdb"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with serve(sandbox, port=0) as url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")},
            "DAGSTER_HOME": str(home),
            **live_settings(url, warehouse, (DEV, EMAIL, TOKEN)),
        }
        ok = materialize(env, "2025-01-02")
        assert ok.returncode == 0, ok.stderr[-3000:]
        sandbox.faults.add(FaultRule(path="feedback/details", kind="echo_headers", status=400))
        refused = materialize(env, "2025-01-03")
        sandbox.faults.clear()
        # A 503 that echoes them is retried by the client, which logs the retry, and then recovers.
        sandbox.faults.add(FaultRule(path="feedback/details", kind="echo_headers", status=503, times=1))
        retried = materialize(env, "2025-01-04")

    printed = "".join(p.stdout + p.stderr for p in (ok, refused, retried))
    assert refused.returncode != 0 and retried.returncode == 0, retried.stderr[-3000:]
    # The run did fail on the echoed body, and what it said is there, masked; the retry was logged.
    assert "HTTP 400" in printed and "authorization: ***" in printed.lower()
    assert "HTTP 503; retrying" in printed

    event_log = list(home.rglob("*.db"))
    compute_logs = [p for p in home.rglob("*") if p.suffix in (".out", ".err", ".complete")]
    assert event_log, "the instance kept its SQLite event log"
    assert any(p.suffix in (".out", ".err") for p in compute_logs), "the runs' compute logs were captured"
    stored = b"".join(p.read_bytes() for p in [*home.rglob("*"), warehouse] if p.is_file())
    assert b"HTTP 400" in stored, "the failure's message is in the event log"
    for name, form in FORMS.items():
        assert form not in printed, f"{name} printed by the command"
        assert form.encode() not in stored, f"{name} stored by the instance or the warehouse"
