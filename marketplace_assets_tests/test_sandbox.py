"""The simulated Marketplace, exercised over the in-process transport and over a real loopback server."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from datetime import date, timedelta
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from marketplace_assets.sandbox import FaultRule, Sandbox, serve

AUTH = ("sandbox@example.com", "sandbox-token")
DEV = "/rest/3/reporting/developer-space/sandbox-developer"
EVALS = f"{DEV}/evaluations"
FEEDBACK = f"{DEV}/feedback/details"
LISTINGS = "/rest/3/product-listing/developer-space/sandbox-developer"
# Four full weeks, Sunday 2025-02-16 .. Saturday 2025-03-15 (the reference samples' dates).
WEEK_STARTS = [date(2025, 2, 16) + timedelta(weeks=i) for i in range(4)]


@pytest.fixture(params=["inprocess", "server"])
def connect(request):
    """connect(sandbox, **client_kwargs) -> an httpx.Client reaching that sandbox one way or the other."""
    stack = ExitStack()

    def _connect(sandbox: Sandbox, **kwargs) -> httpx.Client:
        kwargs.setdefault("auth", AUTH)
        if request.param == "inprocess":
            client = httpx.Client(
                transport=sandbox.transport(), base_url="https://sandbox.invalid/marketplace", **kwargs
            )
        else:
            url = stack.enter_context(serve(sandbox, port=0))
            client = httpx.Client(base_url=f"{url}/marketplace", **kwargs)
        return stack.enter_context(client)

    _connect.mode = request.param
    yield _connect
    stack.close()


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox()


@pytest.fixture
def client(connect, sb) -> httpx.Client:
    return connect(sb)


def evals(client: httpx.Client, metric: str, start: date, end: date, aggregation: str = "week") -> dict:
    params = {"startDate": start.isoformat(), "endDate": end.isoformat(), "aggregation": aggregation}
    response = client.get(f"{EVALS}/{metric}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def counts(body: dict) -> dict[tuple[str, str, str], int]:
    """(scope, series, date) -> count over total and addons, for comparing bodies."""
    out = {
        ("total", s["name"], e["date"]): e["count"] for s in body["total"]["series"] for e in s["elements"]
    }
    for addon in body["addons"]:
        for s in addon["series"]:
            out.update({(addon["addonKey"], s["name"], e["date"]): e["count"] for e in s["elements"]})
    return out


# --- auth and routing ----------------------------------------------------------------------------


def test_auth_and_routing_errors(client):
    url = f"{EVALS}/hosting"
    for auth in (None, ("sandbox@example.com", "wrong-token"), ("someone@example.com", "sandbox-token")):
        response = client.get(url, auth=auth)
        assert response.status_code == 401
        assert "message" in response.json()
        assert "sandbox-token" not in response.text
    forbidden = client.get("/rest/3/reporting/developer-space/someone-else/evaluations/hosting")
    assert forbidden.status_code == 403 and "someone-else" in forbidden.json()["message"]
    assert client.get(f"{DEV}/no-such-report").status_code == 404
    assert "message" in client.get(f"{DEV}/no-such-report").json()
    assert client.get("/reporting/developer-space/sandbox-developer/evaluations/hosting").status_code == 404
    assert client.post(url).status_code == 405


def test_server_answers_with_and_without_marketplace_prefix(sb):
    with serve(sb) as url, httpx.Client(auth=AUTH) as plain:
        params = {"startDate": "2025-02-16", "endDate": "2025-02-22"}
        bare = plain.get(f"{url}{EVALS}/region", params=params)
        prefixed = plain.get(f"{url}/marketplace{EVALS}/region", params=params)
    assert bare.status_code == prefixed.status_code == 200
    assert bare.json()["total"] == prefixed.json()["total"]


# --- evaluations ---------------------------------------------------------------------------------


def test_evaluations_shape_matches_reference_sample(client, sb):
    body = evals(client, "hosting", WEEK_STARTS[0], WEEK_STARTS[-1] + timedelta(days=6))
    assert set(body) == {"_links", "total", "addons"}
    assert set(body["_links"]) == {"self", "query"}
    assert body["_links"]["self"]["href"].startswith(f"{EVALS}/hosting")
    assert body["_links"]["query"] == {
        "href": f"{EVALS}/hosting{{?aggregation,startDate,endDate}}",
        "templated": True,
    }
    assert set(body["total"]) == {"name", "series"} and body["total"]["name"] == "All apps"
    names = [s["name"] for s in body["total"]["series"]]
    assert names == ["Cloud", "Data Center", "Server"]
    assert [(a["addonKey"], a["productId"], a["name"]) for a in body["addons"]] == [
        (app.addon_key, app.product_id, app.name) for app in sb.apps
    ]
    for series in [*body["total"]["series"], *(s for a in body["addons"] for s in a["series"])]:
        assert set(series) == {"name", "evaluationType", "elements"}
        assert series["evaluationType"] == "Net new evaluation"
        assert [e["date"] for e in series["elements"]] == [d.isoformat() for d in WEEK_STARTS]
        assert all(set(e) == {"date", "count"} and isinstance(e["count"], int) for e in series["elements"])
    for addon in body["addons"]:
        assert set(addon) == {"addonKey", "productId", "name", "series"}
    assert sum(counts(body).values()) > 0
    # Server evaluations ended with Server end of support (2024-02-15): zeros, but still present.
    assert all(e["count"] == 0 for e in body["total"]["series"][2]["elements"])


@pytest.mark.parametrize("aggregation", ["week", "month"])
@pytest.mark.parametrize("metric", ["country", "hosting", "partner", "region"])
def test_total_is_the_sum_over_apps(client, metric, aggregation):
    body = evals(client, metric, date(2024, 11, 20), date(2025, 2, 10), aggregation)
    assert body["total"]["series"], "no series"
    for index, series in enumerate(body["total"]["series"]):
        for position, element in enumerate(series["elements"]):
            per_app = [addon["series"][index]["elements"][position] for addon in body["addons"]]
            assert all(e["date"] == element["date"] for e in per_app)
            assert element["count"] == sum(e["count"] for e in per_app)


def test_series_values_per_metric(client):
    names = {
        m: [s["name"] for s in evals(client, m, *WEEK_STARTS[:2])["total"]["series"]]
        for m in ["country", "region", "partner"]
    }
    assert len(names["country"]) == 12 and "Germany" in names["country"]
    assert names["region"] == ["Americas", "EMEA", "APAC", "Unknown"]
    assert names["partner"][0] == "Partner 1" and all(n.startswith("Partner ") for n in names["partner"])


def test_metrics_split_the_same_evaluations(client):
    def grand_total(metric: str) -> int:
        body = evals(client, metric, date(2025, 1, 1), date(2025, 3, 31), "month")
        return sum(e["count"] for s in body["total"]["series"] for e in s["elements"])

    assert grand_total("hosting") == grand_total("country") == grand_total("region") > 0
    assert 0 < grand_total("partner") < grand_total("hosting")


def test_weekly_buckets_are_dated_on_the_sunday_that_starts_the_week(client):
    sunday, saturday = WEEK_STARTS[1], WEEK_STARTS[1] + timedelta(days=6)
    body = evals(client, "country", sunday, saturday)
    for series in [*body["total"]["series"], *(s for a in body["addons"] for s in a["series"])]:
        assert [e["date"] for e in series["elements"]] == [sunday.isoformat()]
    # A window starting mid-week is bucketed under the Sunday before it.
    wednesday = sunday + timedelta(days=3)
    body = evals(client, "region", wednesday, wednesday + timedelta(days=20))
    dates = [date.fromisoformat(e["date"]) for e in body["total"]["series"][0]["elements"]]
    assert dates[0] == sunday and all(d.weekday() == 6 for d in dates) and len(dates) == 4


def test_four_weeks_equal_four_one_week_requests(client):
    whole = counts(evals(client, "country", WEEK_STARTS[0], WEEK_STARTS[-1] + timedelta(days=6)))
    pieces: dict = {}
    for start in WEEK_STARTS:
        pieces.update(counts(evals(client, "country", start, start + timedelta(days=6))))
    assert whole == pieces
    assert len({key[2] for key in whole}) == 4


def test_month_aggregation_is_dated_on_the_first(client):
    body = evals(client, "hosting", date(2025, 1, 1), date(2025, 3, 31), "month")
    dates = [e["date"] for e in body["total"]["series"][0]["elements"]]
    assert dates == ["2025-01-01", "2025-02-01", "2025-03-01"]
    # January as one monthly bucket == the weekly buckets of a January-only request.
    january = evals(client, "hosting", date(2025, 1, 1), date(2025, 1, 31), "week")
    monthly = evals(client, "hosting", date(2025, 1, 1), date(2025, 1, 31), "month")
    for week_series, month_series in zip(january["total"]["series"], monthly["total"]["series"], strict=True):
        assert sum(e["count"] for e in week_series["elements"]) == month_series["elements"][0]["count"]


def test_empty_windows_answer_empty_silently(client):
    today = date.today()
    for start, end in [
        (date(2025, 3, 1), date(2025, 2, 1)),  # reversed
        (date(2017, 1, 1), date(2017, 12, 31)),  # before the data starts
        (today + timedelta(days=10), today + timedelta(days=40)),  # the future
    ]:
        body = evals(client, "hosting", start, end)
        assert body["total"] == {"name": "All apps", "series": []}
        assert body["addons"] == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (f"{EVALS}/tier", {}),
        (f"{EVALS}/hosting", {"aggregation": "day"}),
        (f"{EVALS}/hosting", {"startDate": "2025-13-01"}),
        (f"{EVALS}/hosting", {"endDate": "20250101"}),
        (FEEDBACK, {"startDate": "yesterday"}),
        (FEEDBACK, {"limit": "ten"}),
    ],
)
def test_invalid_parameters_are_400(client, path, params):
    response = client.get(path, params=params)
    assert response.status_code == 400
    assert response.json()["message"]


# --- feedback ------------------------------------------------------------------------------------


def page_through(
    client: httpx.Client, first: httpx.Response, prefix: str = ""
) -> tuple[list[dict], list[dict]]:
    bodies, items, response = [], [], first
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        bodies.append(body)
        items.extend(body["feedback"])
        if "next" not in body["_links"]:
            return bodies, items
        response = client.get(prefix + body["_links"]["next"]["href"])


def test_feedback_pages_to_the_end_with_limit_clamped(client):
    params = {"startDate": "2025-01-01", "endDate": "2025-03-31", "limit": 500}
    bodies, items = page_through(client, client.get(FEEDBACK, params=params))
    total = bodies[0]["totalCount"]
    assert total > 100 and len(bodies) == -(-total // 50)
    assert all(b["totalCount"] == total for b in bodies)
    assert [len(b["feedback"]) for b in bodies[:-1]] == [50] * (len(bodies) - 1)
    assert len(items) == total and len({i["appEntitlementId"] for i in items}) == total
    assert items == sorted(items, key=lambda i: (i["date"], i["addonKey"], i["appEntitlementId"]))
    assert all("2025-01-01" <= i["date"] <= "2025-03-31" for i in items)
    assert "prev" not in bodies[0]["_links"] and "offset=0" in bodies[1]["_links"]["prev"]["href"]
    next_query = dict(parse_qsl(urlsplit(bodies[0]["_links"]["next"]["href"]).query))
    assert next_query == {"startDate": "2025-01-01", "endDate": "2025-03-31", "offset": "50", "limit": "50"}
    sample_keys = {
        "addonKey", "productId", "addonVersion", "applicationKey", "hosting", "appEdition", "date",
        "feedbackType", "reasonKey", "reason", "message", "appEntitlementId", "appEntitlementNumber",
        "cloudId",
    }  # fmt: skip
    assert all(set(item) == sample_keys for item in items)


def test_feedback_filters_and_repeated_parameters(client, sb):
    window = [("startDate", "2025-01-01"), ("endDate", "2025-02-28")]
    one_app = [
        client.get(FEEDBACK, params=[*window, ("productId", app.product_id)]).json() for app in sb.apps
    ]
    everything = client.get(FEEDBACK, params=window).json()
    assert sum(b["totalCount"] for b in one_app) == everything["totalCount"] > 0
    a, b = sb.apps[0].product_id, sb.apps[1].product_id
    two = client.get(FEEDBACK, params=[*window, ("productId", a), ("productId", b), ("limit", "5")]).json()
    assert two["totalCount"] == one_app[0]["totalCount"] + one_app[1]["totalCount"]
    next_params = parse_qsl(urlsplit(two["_links"]["next"]["href"]).query)
    assert [v for k, v in next_params if k == "productId"] == [a, b]
    _, items = page_through(
        client, client.get(FEEDBACK, params=[*window, ("productId", a), ("productId", b)])
    )
    assert {i["productId"] for i in items} == {a, b} and len(items) == two["totalCount"]
    comma = client.get(FEEDBACK, params=[*window, ("productId", f"{a},{b}")]).json()
    assert comma["totalCount"] == 0 and comma["feedback"] == []
    cloud = client.get(FEEDBACK, params=[*window, ("hosting", "cloud"), ("limit", "50")]).json()
    assert 0 < cloud["totalCount"] < everything["totalCount"]
    assert {i["hosting"] for i in cloud["feedback"]} == {"Cloud"}
    cost = client.get(FEEDBACK, params=[*window, ("reason", "cost"), ("type", "uninstall")]).json()
    assert {(i["reasonKey"], i["feedbackType"]) for i in cost["feedback"]} <= {("cost", "uninstall")}
    beyond = client.get(FEEDBACK, params=[*window, ("offset", "100000")]).json()
    assert beyond["feedback"] == [] and "next" not in beyond["_links"]
    reversed_ = client.get(FEEDBACK, params=[("startDate", "2025-03-01"), ("endDate", "2025-01-01")]).json()
    assert reversed_["totalCount"] == 0 and reversed_["feedback"] == []


def test_feedback_bare_hrefs_omit_rest3(connect):
    client = connect(Sandbox(href_style="bare"))
    first = client.get(FEEDBACK, params={"startDate": "2025-02-01", "endDate": "2025-02-28", "limit": 20})
    body = first.json()
    assert body["_links"]["next"]["href"].startswith("/reporting/developer-space/sandbox-developer/feedback/")
    bodies, items = page_through(client, first, prefix="/rest/3")
    assert len(bodies) > 1 and len(items) == body["totalCount"]


# --- listings ------------------------------------------------------------------------------------


def test_listing_cursor_pagination(client, sb):
    response = client.get(LISTINGS, params={"limit": 1})
    items, pages = [], 0
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert set(body) == {"links", "items"} and len(body["items"]) == 1
        items.extend(body["items"])
        if "next" not in body["links"]:
            break
        cursor = dict(parse_qsl(urlsplit(body["links"]["next"]).query))["cursor"]
        assert json.loads(base64.b64decode(cursor)) == {"productId": sb.apps[pages].product_id}
        response = client.get(body["links"]["next"])
    assert pages == len(sb.apps) == 3
    assert [(i["productId"], i["appKey"], i["appName"]) for i in items] == [
        (a.product_id, a.addon_key, a.name) for a in sb.apps
    ]
    one_page = client.get(LISTINGS, params={"includePrivate": "true"}).json()
    assert one_page["items"] == items and "next" not in one_page["links"]


def test_listing_item_shape(client, sb):
    item = client.get(f"/rest/3/product-listing/{sb.apps[0].product_id}").json()
    required = {
        "productId", "appKey", "developerId", "appName", "summary", "tagLine", "images", "tags",
        "communityEnabled", "developerLinks", "thirdPartyIntegrations", "enrolledPrograms", "state",
        "approvalStatus", "approvalDetails", "slug", "revision", "cloudComplianceBoundary",
        "dataCenterReviewIssueKey", "hostingVisibility", "stateAfterApproval",
    }  # fmt: skip
    assert required <= set(item) and item["developerId"] == "sandbox-developer"
    assert set(item["images"]) == {"iconFileId", "titleLogoFileId", "bannerFileId"}
    for kind in ("category", "keywords"):
        assert item["tags"][kind] and all(set(tag) == {"id", "name"} for tag in item["tags"][kind])
    assert all(set(p) == {"id", "name", "hostingType", "status"} for p in item["enrolledPrograms"])
    assert set(item["hostingVisibility"]) == {"cloud", "server", "dataCenter"}
    assert isinstance(item["revision"], int)
    assert client.get("/rest/3/product-listing/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get(LISTINGS, params={"cursor": "not-a-cursor"}).status_code == 400
    assert client.get("/rest/3/product-listing/developer-space/someone-else").status_code == 403


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
