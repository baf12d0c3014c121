"""The evaluation shape of the marketing-attribution export: daily stays the default, the evaluation shape
holds the same numbers keyed by the evaluation's start day, in JSON and in CSV, and it is chosen through
the exports configuration in-process and over HTTP."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest

from marketplace_assets.reports.normalize import flatten as client_flatten
from marketplace_assets.sandbox import serve
from marketplace_assets.sandbox.export_reports import ATTRIBUTION_COLUMNS, EVALUATION_ATTRIBUTION_COLUMNS
from marketplace_assets.sandbox.exports import cell, configure_exports, flatten
from marketplace_assets_tests.sandbox_fault_env import (  # noqa: F401 (fixtures)
    AUTH,
    DEV,
    complete,
    csv_rows,
    local_fixture,
    ok,
    sandbox_fixture,
)

ATTRIBUTION = f"{DEV}/marketing-attribution/async/export"


# --- the evaluation shape of marketing attribution ---------------------------------------------------


def attribution(client: httpx.Client, fmt: str, **window: str) -> tuple[str, httpx.Response]:
    """Start a marketing-attribution export (ready at once) and download it: (export id, answer)."""
    started = ok(client.post(ATTRIBUTION, params={**window, "accept": fmt})).json()
    return started["export"]["id"], ok(client.get(started["_links"]["download"]["href"]))


EVALUATION_FIELDS = {
    "evaluation", "app", "channel", "activityWindowStart", "pageViews", "visits", "evaluations", "installs",
}  # fmt: skip
SNAKE_CASE_FIELDS = {
    "evaluation_start_date", "evaluation_license_type", "app_key", "app_name", "app_product_id",
    "channel_name", "channel_source", "channel_medium", "channel_campaign", "activity_window_start",
    "page_views", "visits", "evaluations", "installs",
}  # fmt: skip


def test_daily_stays_the_default_attribution_shape(local):
    assert configure_exports(local.sb)["attribution_shape"] == "daily"
    _, response = attribution(local.api, "csv", startDate="2025-06-01", endDate="2025-06-02")
    assert csv_rows(response.content)[0] == list(ATTRIBUTION_COLUMNS)
    _, response = attribution(local.api, "json", startDate="2025-06-01", endDate="2025-06-02")
    assert {row["date"] for row in response.json()} == {"2025-06-01", "2025-06-02"}


def test_evaluation_shape_agrees_with_the_daily_shape(local):
    window = {"startDate": "2025-06-01", "endDate": "2025-06-03"}
    daily_id, daily = attribution(local.api, "json", **window)
    by_key = {(r["date"], r["addonKey"], r["channel"]): r for r in daily.json()}
    configure_exports(local.sb, attribution_shape="evaluation")
    evaluation_id, response = attribution(local.api, "json", **window)
    rows = response.json()
    assert evaluation_id != daily_id and len(rows) == len(by_key) > 0
    assert all(set(row) == EVALUATION_FIELDS for row in rows)
    assert {row["evaluation"]["startDate"] for row in rows} == {"2025-06-01", "2025-06-02", "2025-06-03"}
    for row in rows:
        start = date.fromisoformat(row["evaluation"]["startDate"])
        assert row["activityWindowStart"] == (start - timedelta(days=30)).isoformat()
        assert row["evaluation"]["licenseType"] == "evaluation"
        same = by_key[(row["evaluation"]["startDate"], row["app"]["key"], row["channel"]["name"])]
        assert (row["visits"], row["evaluations"], row["installs"]) == (
            same["visits"],
            same["evaluations"],
            same["installs"],
        )
        assert (row["app"]["name"], row["app"]["productId"]) == (same["addonName"], same["productId"])
        channel = (same["source"], same["medium"], same["campaign"])
        assert (row["channel"]["source"], row["channel"]["medium"], row["channel"]["campaign"]) == channel
        assert row["pageViews"] >= row["visits"]
    assert sum(row["evaluations"] for row in rows) > 0
    assert set(client_flatten(rows[0])) == SNAKE_CASE_FIELDS
    # The same window again is the same export; the one started as daily stays daily.
    assert attribution(local.api, "json", **window)[1].json() == rows
    assert ok(local.api.get(f"{DEV}/async/export/{daily_id}")).json() == daily.json()
    # CSV: dotted headers, the same values.
    _, as_csv = attribution(local.api, "csv", **window)
    table = csv_rows(as_csv.content)
    assert table[0] == list(EVALUATION_ATTRIBUTION_COLUMNS) and "date" not in table[0]
    assert {"evaluation.startDate", "app.key", "channel.name", "activityWindowStart"} <= set(table[0])
    assert table[1:] == [[cell(flatten(row)[c]) for c in table[0]] for row in rows]


def test_evaluation_shape_dates_select_the_evaluation_start_day(local):
    configure_exports(local.sb, attribution_shape="evaluation")
    _, response = attribution(local.api, "json", startDate="2025-05-31", endDate="2025-05-31")
    rows = response.json()
    assert rows and {row["evaluation"]["startDate"] for row in rows} == {"2025-05-31"}
    assert {row["activityWindowStart"] for row in rows} == {"2025-05-01"}
    with pytest.raises(ValueError):
        configure_exports(local.sb, attribution_shape="weekly")


def test_attribution_shape_over_http(sb):
    with (
        serve(sb) as url,
        httpx.Client(base_url=url) as control,
        httpx.Client(base_url=url, auth=AUTH) as api,
    ):
        assert control.get("/_sandbox/exports").json()["config"]["attribution_shape"] == "daily"
        assert control.post("/_sandbox/exports", json={"attribution_shape": "weekly"}).status_code == 400
        config = control.post("/_sandbox/exports", json={"attribution_shape": "evaluation"}).json()["config"]
        assert config["attribution_shape"] == "evaluation"
        _, response = attribution(api, "csv", startDate="2025-06-10", endDate="2025-06-11")
        table = csv_rows(complete(response))
        assert table[0] == list(EVALUATION_ATTRIBUTION_COLUMNS)
        starts = {row[table[0].index("evaluation.startDate")] for row in table[1:]}
        assert starts == {"2025-06-10", "2025-06-11"}
        jobs = control.get("/_sandbox/exports").json()["exports"]
        assert [job["attribution_shape"] for job in jobs] == ["evaluation"]
        assert control.post("/_sandbox/exports", json={"reset": True}).json()["config"][
            "attribution_shape"
        ] == ("daily")
