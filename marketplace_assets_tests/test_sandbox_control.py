"""Driving the simulated Marketplace: fault rules (429 with Retry-After, dropped connections, malformed
and slow answers), request stats, the control endpoints of the server, determinism by seed and volume,
and the command line that serves it. In-process and over a real loopback server where it matters."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest

from marketplace_assets.sandbox import FaultRule, Sandbox, serve
from marketplace_assets_tests.sandbox_connect import (  # noqa: F401 (fixtures)
    AUTH,
    EVALS,
    FEEDBACK,
    LISTINGS,
    client_fixture,
    connect_fixture,
    sandbox_fixture,
)

# --- faults --------------------------------------------------------------------------------------


def test_fault_429_with_retry_after_is_used_up(client, sb):
    sb.faults.add(FaultRule(path="/evaluations/", status=429, retry_after="2", times=1))
    limited = client.get(f"{EVALS}/hosting")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2" and limited.json()["message"]
    assert client.get(f"{EVALS}/hosting").status_code == 200
    assert sb.faults.rules == []


def test_faults_apply_in_order_and_match_method_and_regex(client, sb):
    sb.faults.add(FaultRule(path=r"feedback/details$", method="POST", status=500))
    sb.faults.add(
        FaultRule(path=r"feedback/details$", status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", times=1)
    )
    sb.faults.add(FaultRule(path="feedback", status=503, times=2, body="maintenance"))
    assert client.get(f"{EVALS}/hosting").status_code == 200
    first = client.get(FEEDBACK)
    assert first.status_code == 429 and first.headers["retry-after"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    second = client.get(FEEDBACK)
    assert second.status_code == 503 and second.json() == {"message": "maintenance"}
    assert client.get(FEEDBACK).status_code == 503
    assert client.get(FEEDBACK).status_code == 200
    sb.faults.clear()
    assert sb.faults.rules == []


def test_fault_drop_breaks_the_connection(client, sb):
    sb.faults.add(FaultRule(path="/evaluations/", kind="drop", times=1))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.get(f"{EVALS}/country")
    assert client.get(f"{EVALS}/country").status_code == 200


def test_fault_malformed_body_is_not_json(client, sb):
    sb.faults.add(FaultRule(path="product-listing", kind="malformed", times=1))
    response = client.get(LISTINGS)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert client.get(LISTINGS).json()["items"]


def test_fault_slow_trips_a_read_timeout(connect, sb):
    client = connect(sb, timeout=httpx.Timeout(5.0, read=0.2))
    sb.faults.add(FaultRule(path="/evaluations/", kind="slow", delay=1.5, times=1))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{EVALS}/hosting")
    assert time.monotonic() - started < 1.2
    sb.faults.add(FaultRule(path="/evaluations/", kind="slow", delay=0.1, times=1))
    started = time.monotonic()
    assert client.get(f"{EVALS}/hosting").status_code == 200
    assert time.monotonic() - started >= 0.1


def test_fault_rule_validation():
    with pytest.raises(ValueError):
        FaultRule(path="x", kind="explode")
    with pytest.raises(ValueError):
        FaultRule.from_dict({"path": "x", "colour": "red"})
    rule = FaultRule.from_dict({"path": "x", "status": 429, "retry_after": 3})
    assert rule.retry_after == "3" and FaultRule.from_dict(rule.to_dict()) == rule


# --- stats ---------------------------------------------------------------------------------------


def test_stats_count_requests_per_path(client, sb):
    client.get(f"{EVALS}/hosting")
    client.get(f"{EVALS}/hosting", auth=None)
    client.get(LISTINGS)
    stats = sb.stats()
    assert stats["requests"] == 3 and stats["max_in_flight"] == 1
    assert stats["by_path"] == {f"{EVALS}/hosting": 2, LISTINGS: 1}
    sb.reset_stats()
    assert sb.stats() == {"requests": 0, "max_in_flight": 0, "by_path": {}}


def test_max_in_flight_sees_concurrency(client, sb):
    sb.faults.add(FaultRule(path="/evaluations/", kind="slow", delay=0.3))
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        statuses.append(client.get(f"{EVALS}/region").status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 4
    assert sb.stats()["max_in_flight"] == 4 and sb.stats()["requests"] == 4


def test_control_endpoints_on_the_server(sb):
    with (
        serve(sb) as url,
        httpx.Client(base_url=url) as control,
        httpx.Client(base_url=url, auth=AUTH) as api,
    ):
        rules = [
            {"path": "/evaluations/", "status": 502, "times": 1},
            {"path": "feedback", "kind": "malformed"},
        ]
        assert control.post("/_sandbox/faults", json=rules).status_code == 200
        assert len(control.get("/_sandbox/faults").json()["faults"]) == 2
        assert api.get(f"{EVALS}/hosting").status_code == 502
        assert api.get(f"{EVALS}/hosting").status_code == 200
        stats = control.get("/_sandbox/stats").json()
        assert stats["requests"] == 2 and stats["by_path"] == {f"{EVALS}/hosting": 2}
        assert control.delete("/_sandbox/faults").json() == {"faults": []}
        assert api.get(FEEDBACK).json()["_links"]
        assert control.post("/_sandbox/faults", json=[{"path": "x", "kind": "nope"}]).status_code == 400
        sb.faults.add(FaultRule(path="x"))
        assert control.post("/_sandbox/reset").status_code == 200
        assert control.get("/_sandbox/stats").json() == {"requests": 0, "max_in_flight": 0, "by_path": {}}
        assert sb.faults.rules == []


# --- determinism and volume ----------------------------------------------------------------------


def _bodies(sandbox: Sandbox) -> list[bytes]:
    client = httpx.Client(transport=sandbox.transport(), base_url="https://x.invalid", auth=AUTH)
    window = {"startDate": "2025-01-01", "endDate": "2025-02-28"}
    return [
        client.get(f"{EVALS}/country", params=window).content,
        client.get(FEEDBACK, params={**window, "offset": 30, "limit": 50}).content,
        client.get(LISTINGS).content,
    ]


def test_same_seed_same_bytes_other_seed_other_data():
    first, again, other = _bodies(Sandbox(seed=7)), _bodies(Sandbox(seed=7)), _bodies(Sandbox(seed=8))
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))
    assert [a.product_id for a in Sandbox(seed=7).apps] != [a.product_id for a in Sandbox(seed=8).apps]


def test_volume_scales_apps_and_counts():
    small, large = Sandbox(volume=1.0), Sandbox(volume=10.0)
    assert len(small.apps) == 3 and len(large.apps) == 30 and len(Sandbox(volume=0.1).apps) == 1
    assert len({a.addon_key for a in large.apps}) == len({a.product_id for a in large.apps}) == 30
    assert all(a.addon_key.startswith("com.sandbox.") and a.name.startswith("Sandbox ") for a in large.apps)

    def totals(sandbox: Sandbox) -> tuple[int, int]:
        client = httpx.Client(transport=sandbox.transport(), base_url="https://x.invalid", auth=AUTH)
        window = {"startDate": "2025-02-02", "endDate": "2025-02-08"}
        body = client.get(f"{EVALS}/hosting", params=window).json()
        evaluations = sum(e["count"] for s in body["total"]["series"] for e in s["elements"])
        return evaluations, client.get(FEEDBACK, params=window).json()["totalCount"]

    (small_evals, small_feedback), (large_evals, large_feedback) = totals(small), totals(large)
    assert large_evals > 30 * small_evals and large_feedback > 30 * small_feedback > 0
    per_app = Counter(app.addon_key for app in small.apps)
    assert set(per_app.values()) == {1}


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_serves_until_terminated():
    command = [
        sys.executable,
        "-m",
        "marketplace_assets.sandbox",
        "--port",
        "0",
        "--seed",
        "8",
        "--token",
        "t0k",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=15)
        assert lines and lines[0].startswith("sandbox listening on http://127.0.0.1:"), lines
        url = lines[0].split()[-1]
        response = httpx.get(f"{url}/marketplace{LISTINGS}", auth=("sandbox@example.com", "t0k"), timeout=5)
        assert response.status_code == 200
        assert [i["appKey"] for i in response.json()["items"]] == [a.addon_key for a in Sandbox(seed=8).apps]
        assert httpx.get(f"{url}{LISTINGS}", auth=AUTH, timeout=5).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0, process.stderr.read()
