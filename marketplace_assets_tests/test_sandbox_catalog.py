"""The sandbox's product catalog snapshot (and its object store: presigned links, their expiry, the CSV
behind them) and listing updates (PUT with a revision). Partner metrics are in
`test_sandbox_partner_metrics.py`."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import polars as pl
import pytest

from marketplace_assets.sandbox import FaultRule, Sandbox, serve
from marketplace_assets.sandbox.catalog_data import SANDBOX_VENDOR
from marketplace_assets.sandbox.object_store import (
    advance_clock,
    answer_object,
    configure_catalog,
    set_catalog_date,
)
from marketplace_assets.sandbox.records import listing
from marketplace_assets_tests.sandbox_catalog_support import (  # noqa: F401 (fixtures)
    AUTH,
    BASE,
    client_fixture,
    sample,
    sandbox_fixture,
)
from marketplace_assets_tests.shape import assert_same_shape

LATEST = "/rest/3/reporting/product-catalog/latest"
LISTINGS = "/rest/3/product-listing/developer-space/sandbox-developer"
HEADER = [
    "product_id", "marketplace_app_key", "marketplace_app_name", "vendor_name", "summary", "tag_line",
    "category_name_list", "version_number", "version_status", "released_at", "app_software_hosting",
    "parent_software_list", "supported_payment_model", "is_connect", "is_beta", "is_supported",
    "is_auto_update_strategy_available", "publicly_visible", "download_count", "number_of_reviews",
    "review_score", "average_stars",
]  # fmt: skip
T0 = datetime(2025, 11, 6, 10, 30, tzinfo=UTC)


@pytest.fixture
def anonymous(sb: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sb.transport()) as c:
        yield c


def split_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.path, parts.query


# --- product catalog -----------------------------------------------------------------------------


def test_latest_matches_the_sample_and_links_to_the_sandbox(client, sb):
    body = client.get(LATEST).json()
    assert_same_shape(sample("product_catalog_latest.json"), body)
    assert body["date"] == datetime.now(UTC).date().isoformat() and body["expiresInSeconds"] == 300
    assert body["presignedUrl"].startswith(
        f"https://sandbox.invalid/_objects/product-catalog/wide_public_apps_overview-{body['date']}-"
    )
    query = dict(parse_qsl(urlsplit(body["presignedUrl"]).query))
    assert query["X-Amz-Expires"] == "300" and query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    set_catalog_date(sb.world, date(2025, 11, 6))
    later = client.get(LATEST).json()
    assert later["date"] == "2025-11-06" and "overview-2025-11-06-10:30:00.csv?" in later["presignedUrl"]


@pytest.mark.parametrize("mode", ["inprocess", "server"])
def test_catalog_csv_downloads_without_auth_and_parses(sb, mode):
    with ExitStack() as stack:
        if mode == "inprocess":
            api = httpx.Client(transport=sb.transport(), base_url=BASE, auth=AUTH)
            plain = httpx.Client(transport=sb.transport())
        else:
            url = stack.enter_context(serve(sb, port=0))
            api, plain = httpx.Client(base_url=f"{url}/marketplace", auth=AUTH), httpx.Client()
        stack.enter_context(api), stack.enter_context(plain)
        link = api.get(LATEST).json()["presignedUrl"]
        if mode == "server":
            assert link.startswith(f"{url}/_objects/")
        response = plain.get(link)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "binary/octet-stream"
    frame = pl.read_csv(io.BytesIO(response.content), try_parse_dates=True)
    assert frame.columns == HEADER
    assert 100 < frame.height < 1000
    ours = frame.filter(pl.col("vendor_name") == SANDBOX_VENDOR)
    assert set(ours["marketplace_app_key"]) == {app.addon_key for app in sb.apps}
    assert set(ours["product_id"]) == {app.product_id for app in sb.apps}
    assert frame["vendor_name"].n_unique() > 10 and frame["marketplace_app_key"].n_unique() > 30
    assert frame.schema["download_count"] == pl.Int64 and frame.schema["is_beta"] == pl.Boolean
    assert frame.schema["average_stars"] == pl.Float64 and frame.schema["released_at"] == pl.Datetime("us")
    assert frame["tag_line"].null_count() > 0 and frame["download_count"].null_count() > 0
    assert frame["vendor_name"].str.contains(",").any()
    assert set(frame["app_software_hosting"]) <= {"CLOUD", "DATA_CENTER", "SERVER"}


def test_catalog_is_deterministic_scales_and_grows_with_the_date(sb, client, anonymous):
    def rows() -> pl.DataFrame:
        return pl.read_csv(io.BytesIO(anonymous.get(client.get(LATEST).json()["presignedUrl"]).content))

    set_catalog_date(sb.world, date(2025, 11, 6))
    first = rows()
    other = Sandbox()
    set_catalog_date(other.world, date(2025, 11, 6))
    with httpx.Client(transport=other.transport(), base_url=BASE, auth=AUTH) as c2:
        link = c2.get(LATEST).json()["presignedUrl"]
        assert pl.read_csv(io.BytesIO(c2.get(link, auth=None).content)).equals(first)
    set_catalog_date(sb.world, date(2021, 1, 1))
    older = rows()
    assert older.height < first.height
    assert older["released_at"].max() <= "2021-01-01 23:59:59"
    configure_catalog(sb.world, day=date(2025, 11, 6), scale=4)
    bigger = rows()
    assert 3 * first.height < bigger.height < 5 * first.height


def test_authorization_header_on_the_object_link_is_400(client, sb):
    link = client.get(LATEST).json()["presignedUrl"]
    response = client.get(link)  # this client sends Basic auth
    assert response.status_code == 400
    assert "<Code>InvalidArgument</Code>" in response.text and "Only one auth mechanism" in response.text
    assert response.headers["content-type"] == "application/xml"
    token = base64.b64encode(b"sandbox@example.com:sandbox-token").decode()
    reply = answer_object(sb.world, "GET", *split_url(link), {"authorization": f"Basic {token}"})
    assert reply is not None and reply.status == 400
    assert answer_object(sb.world, "GET", LATEST, "", {}) is None


def test_expired_link_is_403_with_the_sandbox_clock(client, anonymous, sb):
    configure_catalog(sb.world, now=T0)
    link = client.get(LATEST).json()["presignedUrl"]
    assert dict(parse_qsl(urlsplit(link).query))["X-Amz-Date"] == "20251106T103000Z"
    advance_clock(sb.world, 300)
    assert anonymous.get(link).status_code == 200
    advance_clock(sb.world, 1)
    expired = anonymous.get(link)
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code><Message>Request has expired</Message>" in expired.text
    reply = answer_object(sb.world, "GET", *split_url(link), {})
    assert reply is not None and reply.status == 403
    configure_catalog(sb.world, expires_in=1)
    short = client.get(LATEST).json()
    assert short["expiresInSeconds"] == 1 and anonymous.get(short["presignedUrl"]).status_code == 200
    advance_clock(sb.world, 2)
    assert anonymous.get(short["presignedUrl"]).status_code == 403


def test_changed_or_unsigned_links_are_refused(client, anonymous, sb):
    link = client.get(LATEST).json()["presignedUrl"]
    path, query = split_url(link)
    params = dict(parse_qsl(query))
    longer = anonymous.get(f"https://sandbox.invalid{path}?{urlencode({**params, 'X-Amz-Expires': '9999'})}")
    assert longer.status_code == 403 and "SignatureDoesNotMatch" in longer.text
    other_day = path.replace(datetime.now(UTC).date().isoformat(), "2020-01-01")
    assert anonymous.get(f"https://sandbox.invalid{other_day}?{query}").status_code == 403
    unsigned = anonymous.get(f"https://sandbox.invalid{path}")
    assert unsigned.status_code == 403 and "AccessDenied" in unsigned.text
    assert anonymous.post(link).status_code == 403


def test_drop_fault_cuts_the_download_mid_body(sb):
    sb.faults.add(FaultRule(path="_objects", kind="drop", times=1))
    with serve(sb, port=0) as url, httpx.Client(base_url=url, auth=AUTH) as api, httpx.Client() as plain:
        link = api.get(f"{url}{LATEST}").json()["presignedUrl"]
        with pytest.raises(httpx.RemoteProtocolError):
            plain.get(link)
        assert plain.get(link).status_code == 200
    sb.faults.add(FaultRule(path="_objects", kind="drop", times=1))
    with httpx.Client(transport=sb.transport()) as plain, pytest.raises(httpx.RemoteProtocolError):
        plain.get(link)


# --- listing update ------------------------------------------------------------------------------

REQUEST_FIELDS = (
    "appKey", "developerId", "appName", "summary", "tagLine", "images", "tags", "communityEnabled",
    "developerLinks", "thirdPartyIntegrations", "enrolledPrograms", "state", "approvalStatus",
    "dataCenterReviewIssueKey", "hostingVisibility", "stateAfterApproval", "marketingLabels", "revision",
)  # fmt: skip


def put_body(item: dict, **changes: Any) -> dict:
    body = {key: item[key] for key in REQUEST_FIELDS if key in item}
    body["tags"] = {kind: [tag["id"] for tag in tags] for kind, tags in item["tags"].items()}
    return {**body, **changes}


def test_put_updates_the_listing_and_get_shows_it(client, sb):
    app, other = sb.apps[0], sb.apps[1]
    path = f"/rest/3/product-listing/{app.product_id}"
    before = client.get(path).json()
    body = put_body(before, appName="Renamed App", summary="A new summary, with a comma",
                    tags={"category": ["reporting"], "keywords": ["charts", "teamwork"]})  # fmt: skip
    response = client.put(path, json=body)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["revision"] == before["revision"] + 1
    assert updated["appName"] == "Renamed App" and updated["summary"] == "A new summary, with a comma"
    assert updated["tags"] == {
        "category": [{"id": "reporting", "name": "Reporting"}],
        "keywords": [{"id": "charts", "name": "Charts"}, {"id": "teamwork", "name": "Teamwork"}],
    }
    assert updated["slug"] == before["slug"] and updated["approvalDetails"] == before["approvalDetails"]
    item_sample = sample("listings_developer_space.json")["items"][0]
    optional = frozenset({"marketingLabels", "googleAnalyticsId", "jsdEmbeddedDataKey", "segmentWriteKey",
                          "appStatusPage", "forums"})  # fmt: skip
    assert_same_shape(item_sample, updated, ignore=optional)
    assert client.get(path).json() == updated
    items = client.get(LISTINGS).json()["items"]
    assert items[0] == updated and items[1] == listing(sb.world, other)
    assert client.get(f"/rest/3/product-listing/{other.product_id}").json() == listing(sb.world, other)
    second = client.put(path, json=put_body(updated, tagLine=None))
    assert second.status_code == 200 and second.json()["revision"] == before["revision"] + 2
    assert "tagLine" not in second.json()


def test_put_with_a_stale_revision_is_409(client, sb):
    path = f"/rest/3/product-listing/{sb.apps[2].product_id}"
    before = client.get(path).json()
    assert client.put(path, json=put_body(before, summary="first")).status_code == 200
    stale = client.put(path, json=put_body(before, summary="second"))
    assert stale.status_code == 409 and "revision" in stale.json()["message"]
    assert "onflict" in stale.json()["message"]
    assert client.get(path).json()["summary"] == "first"


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("appKey", lambda b: {"appKey": "com.other.key"}),
        ("developerId", lambda b: {"developerId": "someone-else"}),
        ("images.titleLogoFileId", lambda b: {"images": {**b["images"], "titleLogoFileId": "new-logo"}}),
        ("enrolledPrograms", lambda b: {"enrolledPrograms": b["enrolledPrograms"][:-1]}),
        ("state", lambda b: {"state": "PRIVATE"}),
        ("approvalStatus", lambda b: {"approvalStatus": "SUBMITTED"}),
        (
            "hostingVisibility",
            lambda b: {"hostingVisibility": {"cloud": "app", "server": None, "dataCenter": None}},
        ),
        ("stateAfterApproval", lambda b: {"stateAfterApproval": "READY_TO_LAUNCH"}),
    ],
)
def test_put_changing_a_fixed_field_is_400(client, sb, field, change):
    path = f"/rest/3/product-listing/{sb.apps[0].product_id}"
    before = client.get(path).json()
    body = put_body(before)
    response = client.put(path, json={**body, **change(body)})
    assert response.status_code == 400 and f"'{field}'" in response.json()["message"]
    assert client.get(path).json() == before


def test_put_body_problems_are_400_and_unknown_product_404(client, sb):
    path = f"/rest/3/product-listing/{sb.apps[0].product_id}"
    before = client.get(path).json()
    body = put_body(before)
    missing = {k: v for k, v in body.items() if k != "summary"}
    assert "summary" in client.put(path, json=missing).json()["message"]
    cases = [missing, before, {**body, "tags": before["tags"]}, {**body, "tags": {"category": ["nope"]}},
             {**body, "revision": "7"}, {**body, "communityEnabled": "yes"}]  # fmt: skip
    for case in cases:
        assert client.put(path, json=case).status_code == 400
    assert client.put(path, content=b"{").status_code == 400
    assert client.get(path).json() == before
    unknown = client.put("/rest/3/product-listing/00000000-0000-0000-0000-000000000000", json=body)
    assert unknown.status_code == 404
