"""The simulated Marketplace's reporting and listing endpoints (auth and routing, evaluations, feedback,
listings), exercised over the in-process transport and over a real loopback server.

Faults, stats, the control endpoints, determinism and the command line are in `test_sandbox_control.py`.
"""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from marketplace_assets.sandbox import Sandbox, serve
from marketplace_assets_tests.sandbox_connect import (  # noqa: F401 (fixtures)
    AUTH,
    DEV,
    EVALS,
    FEEDBACK,
    LISTINGS,
    client_fixture,
    connect_fixture,
    sandbox_fixture,
)

# Four full weeks, Sunday 2025-02-16 .. Saturday 2025-03-15 (the reference samples' dates).
WEEK_STARTS = [date(2025, 2, 16) + timedelta(weeks=i) for i in range(4)]


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
