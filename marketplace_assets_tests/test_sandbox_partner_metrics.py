"""The sandbox's partner metrics (POST partner-metrics): shaped like the reference sample, breakdowns that
add up, paging by periods, period dates, clear 400s, filters under both keys, LIFETIME_GMV's rule, the
end-date limit of each metric set, and MRR that rolls over."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from marketplace_assets.sandbox.data import today
from marketplace_assets_tests.sandbox_catalog_support import (  # noqa: F401 (fixtures)
    client_fixture,
    sample,
    sandbox_fixture,
)
from marketplace_assets_tests.shape import assert_same_shape

PM = "/rest/3/partner-metrics/developer-space/sandbox-developer"


def installs_body(**extra: Any) -> dict:
    return {"granularity": "WEEK", "metrics": {"metricFields": [{"name": "INSTALL_COUNT"}]}, **extra}


def one(field: str, value: str) -> dict:
    return {
        "filter": {"fieldName": field, "oneFilter": {"stringFilter": {"matchType": "EXACT", "value": value}}}
    }


def post(client: httpx.Client, body: dict, **params: Any) -> httpx.Response:
    return client.post(PM, json=body, params=params)


def records(client: httpx.Client, body: dict, **params: Any) -> list[dict]:
    response = post(client, body, **params)
    assert response.status_code == 200, response.text
    return response.json()["records"]


def test_partner_metrics_match_the_reference_sample(client, sb):
    app = sb.apps[0]
    body = installs_body(attributesFilter={"expr": {"andGroup": [one("PRODUCT_ID", app.product_id)]}})
    answer = post(client, body).json()
    assert_same_shape(sample("partner_metrics.json"), answer)
    dates = [date.fromisoformat(r["date"]) for r in answer["records"]]
    assert len(dates) == 7 and all(d.weekday() == 0 for d in dates)
    assert dates == [dates[0] + timedelta(weeks=i) for i in range(7)]
    assert dates[-1] == (today() - timedelta(days=1)) - timedelta(
        days=(today() - timedelta(days=1)).weekday()
    )
    assert {(r["appKey"], r["productId"]) for r in answer["records"]} == {(app.addon_key, app.product_id)}


def test_breakdowns_sum_to_the_app_total(client):
    window = {"dateRange": {"startDate": "2024-10-21", "endDate": "2024-11-03"}}
    totals = {(r["date"], r["appKey"]): r["installCounts"] for r in records(client, installs_body(**window))}
    for attribute, key in (
        ("PARENT_SOFTWARE_VERSION", "parentSoftwareVersion"),
        ("PARENT_SOFTWARE_MAJOR_VERSION", "parentSoftwareMajorVersions"),
        ("PARENT_SOFTWARE_MINOR_VERSION", "parentSoftwareMinorVersions"),
    ):
        attrs = [{"name": "PARENT_SOFTWARE"}, {"name": attribute}]
        rows = records(client, installs_body(attributes=attrs, **window))
        assert all({"parentSoftware", key} <= set(r) for r in rows)
        assert {r["date"] for r in rows} == {"2024-10-21", "2024-10-28"}
        sums: dict = {}
        for r in rows:
            sums[(r["date"], r["appKey"])] = sums.get((r["date"], r["appKey"]), 0) + r["installCounts"]
        assert sums == totals
    majors = records(client, installs_body(attributes=[{"name": "PARENT_SOFTWARE_MAJOR_VERSION"}], **window))
    assert all(r["parentSoftwareMajorVersions"].endswith(".x.x") for r in majors)


def test_paging_counts_periods_not_rows(client, sb):
    body = {
        "granularity": "DAY",
        "attributes": [{"name": "HOSTING"}],
        "metrics": {"metricSets": [{"name": "DOWNLOADS"}]},
        "dateRange": {"startDate": "2024-03-01", "endDate": "2024-03-30"},
    }
    seen = []
    for offset, expected in ((0, 14), (14, 14), (28, 2), (30, 0)):
        rows = records(client, body, limit=50, offset=offset)  # limit clamps to 14 silently
        days = sorted({r["date"] for r in rows})
        assert len(days) == expected
        assert len(rows) == expected * len(sb.apps) * 3  # one record per day x app x hosting
        seen += days
    assert seen == [(date(2024, 3, 1) + timedelta(days=i)).isoformat() for i in range(30)]
    assert len({r["date"] for r in records(client, body)}) == 7  # default limit
    assert len({r["date"] for r in records(client, body, limit=3, offset=1)}) == 3
    assert post(client, body, limit=0).status_code == 400


@pytest.mark.parametrize(
    ("granularity", "check"),
    [
        ("WEEK", lambda d: d.weekday() == 0),
        ("MONTH", lambda d: d.day == 1),
        ("YEAR", lambda d: (d.month, d.day) == (1, 1)),
    ],
)
def test_periods_are_dated_on_their_first_day(client, granularity, check):
    body = installs_body(
        granularity=granularity, dateRange={"startDate": "2022-02-16", "endDate": "2024-10-23"}
    )
    dates = sorted({date.fromisoformat(r["date"]) for r in records(client, body, limit=14)})
    assert dates and all(check(d) for d in dates)
    assert dates[0] <= date(2022, 2, 16) < dates[1]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"granularity": "FORTNIGHT"}, "granularity"),
        ({"granularity": None}, "granularity"),
        ({"metrics": {"metricSets": [{"name": "REVENUE"}]}}, "metric set 'REVENUE'"),
        ({"metrics": {"metricFields": [{"name": "INSTALLS"}]}}, "metric field 'INSTALLS'"),
        ({"metrics": {}}, "at least one"),
        ({"attributes": [{"name": "COUNTRY"}]}, "attribute 'COUNTRY'"),
        ({"attributesFilter": {"expr": one("COUNTRY", "DE")}}, "fieldName 'COUNTRY'"),
        ({"attributeFilter": {"expr": {"xorGroup": []}}}, "xorGroup"),
        ({"dateRange": {"startDate": "2024/01/01", "endDate": "2024-02-01"}}, "yyyy-MM-dd"),
        ({"sortByList": [{"name": "COLOUR"}]}, "sortByList"),
    ],
)
def test_invalid_requests_are_400_with_a_clear_message(client, change, words):
    response = post(client, {**installs_body(), **change})
    assert response.status_code == 400
    assert words in response.json()["message"]
    assert client.post(PM, content=b"not json").status_code == 400


def test_filters_are_honoured_under_both_keys(client, sb):
    a, b, c = (app.addon_key for app in sb.apps)
    for key in ("attributesFilter", "attributeFilter"):
        rows = records(client, installs_body(**{key: {"expr": one("APP_KEY", a)}}))
        assert {r["appKey"] for r in rows} == {a}
    in_list = {"filter": {"fieldName": "APP_KEY", "oneFilter": {"inListFilter": {"values": [a, b]}}}}
    assert {r["appKey"] for r in records(client, installs_body(attributeFilter={"expr": in_list}))} == {a, b}
    negated = {"notExpression": one("APP_KEY", a)}
    assert {r["appKey"] for r in records(client, installs_body(attributesFilter={"expr": negated}))} == {b, c}
    either = {"orGroup": [one("APP_KEY", a), one("APP_KEY", c)]}
    assert {r["appKey"] for r in records(client, installs_body(attributesFilter={"expr": either}))} == {a, c}
    both = installs_body(
        attributesFilter={"expr": one("APP_KEY", a)}, attributeFilter={"expr": one("APP_KEY", b)}
    )
    assert records(client, both) == []
    # A filter on an attribute that is not broken down keeps that part of the total.
    window = {"dateRange": {"startDate": "2024-10-21", "endDate": "2024-10-27"}}
    by_hosting = records(client, installs_body(attributes=[{"name": "HOSTING"}], **window))
    cloud = records(client, installs_body(attributesFilter={"expr": one("HOSTING", "CLOUD")}, **window))
    assert {r["appKey"]: r["installCounts"] for r in cloud} == {
        r["appKey"]: r["installCounts"] for r in by_hosting if r["hosting"] == "CLOUD"
    }


def test_lifetime_gmv_needs_exactly_one_app_version_type(client):
    lifetime = {"granularity": "MONTH", "metrics": {"metricFields": [{"name": "LIFETIME_GMV"}]}}
    two = {
        "filter": {
            "fieldName": "APP_VERSION_TYPE",
            "oneFilter": {"inListFilter": {"values": ["NATIVE_APP", "NON_HARMONISED"]}},
        }
    }
    wrong = one("APP_VERSION_TYPE", "SOMETHING_ELSE")
    for extra in ({}, {"attributesFilter": {"expr": two}}, {"attributesFilter": {"expr": wrong}}):
        response = post(client, {**lifetime, **extra})
        assert response.status_code == 400
        message = response.json()["message"]
        assert "LIFETIME_GMV requires" in message and "APP_VERSION_TYPE" in message
    chosen = {
        "attributes": [{"name": "APP_VERSION_TYPE"}],
        "attributesFilter": {"expr": {"andGroup": [one("APP_VERSION_TYPE", "RUNS_ON_ATLASSIAN")]}},
    }
    rows = records(client, {**lifetime, **chosen}, limit=2)
    reference = {
        "date": "2024-10-01",
        "lifetimeGmv": 52000.0,
        "lifetimeGmvAppVersionType": "RUNS_ON_ATLASSIAN",
    }
    assert_same_shape(reference, rows[0])
    assert len(rows) == 2 and all(r["lifetimeGmvAppVersionType"] == "RUNS_ON_ATLASSIAN" for r in rows)
    gmv_set = records(client, {"granularity": "MONTH", "metrics": {"metricSets": [{"name": "GMV"}]}}, limit=1)
    reference = {
        "date": "2024-10-01",
        "lifetimeGmv": 70000.0,
        "lifetimeGmvAppVersionType": "NON_HARMONISED_FORGE_VERSIONS",
        "nonHarmonisedForgeVersionsGmv": 70000.0,
        "standardForgeAppVersionsGmv": 80000.0,
    }
    assert_same_shape(reference, gmv_set[0])
    assert gmv_set[0]["lifetimeGmv"] == gmv_set[0]["nonHarmonisedForgeVersionsGmv"]
    assert gmv_set[0]["lifetimeGmvAppVersionType"] == "NON_HARMONISED_FORGE_VERSIONS"


@pytest.mark.parametrize(
    ("metric_set", "latest"),
    [
        ("RECURRING_REVENUE", lambda t: t),
        ("DISTRIBUTIONS", lambda t: t - timedelta(days=1)),
        ("DOWNLOADS", lambda t: t - timedelta(days=1)),
        ("GMV", lambda t: t - timedelta(days=1)),
        ("FUNNEL_INSIGHTS", lambda t: t.replace(day=1) - timedelta(days=1)),
    ],
)
def test_end_date_limits_per_metric_set(client, metric_set, latest):
    last = latest(today())

    def ask(end: date) -> httpx.Response:
        dates = {"startDate": (end - timedelta(days=3)).isoformat(), "endDate": end.isoformat()}
        body = {"granularity": "DAY", "metrics": {"metricSets": [{"name": metric_set}]}, "dateRange": dates}
        return post(client, body)

    assert ask(last).status_code == 200
    too_late = ask(last + timedelta(days=1))
    assert too_late.status_code == 400 and metric_set in too_late.json()["message"]
    default = records(client, {"granularity": "DAY", "metrics": {"metricSets": [{"name": metric_set}]}})
    assert max(r["date"] for r in default) == last.isoformat()


def test_mrr_rolls_over_and_adds_up(client, sb):
    body = {
        "granularity": "MONTH",
        "metrics": {"metricSets": [{"name": "RECURRING_REVENUE"}]},
        "dateRange": {"startDate": "2024-01-01", "endDate": "2024-06-30"},
        "attributesFilter": {"expr": one("APP_KEY", sb.apps[1].addon_key)},
    }
    rows = records(client, body)
    assert [r["date"] for r in rows] == [f"2024-0{m}-01" for m in range(1, 7)]
    for before, after in itertools.pairwise(rows):
        assert after["openingMrr"] == before["closingMrr"]
    for r in rows:
        flows = r["newMrr"] + r["expansionMrr"] + r["reactivatedMrr"] - r["contractionMrr"] - r["expiredMrr"]
        assert r["openingMrr"] + flows == pytest.approx(r["closingMrr"], abs=0.05)
        assert r["arr"] == pytest.approx(12 * r["closingMrr"], abs=0.01)
    sorted_rows = records(client, {**body, "sortByList": [{"name": "CLOSING_MRR", "order": "DESC"}]})
    assert sorted_rows == rows  # one record per date: sorting happens within a date
