"""The API client against the sandbox served over real loopback HTTP."""

from __future__ import annotations

import base64
import email.utils
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from marketplace_assets.api.client import MarketplaceClient, RetrySettings, _query, parse_retry_after
from marketplace_assets.api.errors import MarketplaceApiError, MarketplaceUnavailableError
from marketplace_assets.reports.fetch import Window
from marketplace_assets.sandbox import FaultRule, Sandbox, serve

DEV = "dev-123"
EMAIL = "analyst@example.com"
TOKEN = "tok-Sup3rSecret-0123456789"
FEEDBACK = f"reporting/developer-space/{DEV}/feedback/details"
EVALUATIONS = f"reporting/developer-space/{DEV}/evaluations/hosting"
LISTINGS = f"product-listing/developer-space/{DEV}"
# A range with a few hundred feedback items: several pages of 50.
RANGE = {"startDate": "2025-01-01", "endDate": "2025-03-31"}


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN, volume=3.0)


@pytest.fixture(scope="module")
def base_url(sandbox: Sandbox):
    with serve(sandbox, port=0) as url:
        yield url


@pytest.fixture(autouse=True)
def _clean(sandbox: Sandbox):
    sandbox.faults.clear()
    sandbox.reset_stats()
    yield
    sandbox.faults.clear()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(base_url: str, sleeps: list[float], **kwargs) -> MarketplaceClient:
    kwargs.setdefault("retry", RetrySettings(max_attempts=4, backoff_initial=0.01, backoff_max=0.05))
    kwargs.setdefault("read_timeout", 5.0)
    return MarketplaceClient(base_url, EMAIL, TOKEN, sleep=sleeps.append, **kwargs)


@pytest.mark.parametrize(
    "fault",
    [
        FaultRule(path="evaluations", kind="status", status=429, times=2),
        FaultRule(path="evaluations", kind="status", status=502, times=2),
        FaultRule(path="evaluations", kind="status", status=503, times=2),
        FaultRule(path="evaluations", kind="status", status=504, times=2),
        FaultRule(path="evaluations", kind="drop", times=2),
        FaultRule(path="evaluations", kind="malformed", times=2),
        FaultRule(path="evaluations", kind="slow", delay=1.5, times=2),
    ],
    ids=["429", "502", "503", "504", "dropped-mid-body", "malformed-body", "read-timeout"],
)
def test_retries_each_retryable_fault(
    sandbox: Sandbox, base_url: str, sleeps: list[float], fault: FaultRule
) -> None:
    expected = make_client(base_url, sleeps).get_json(EVALUATIONS, RANGE)
    sandbox.reset_stats()
    sandbox.faults.add(fault)
    with make_client(base_url, sleeps, read_timeout=0.5) as client:
        body = client.get_json(EVALUATIONS, RANGE)
        assert client.request_count == 3
    assert body == expected
    assert sandbox.stats()["requests"] == 3
    assert len(sleeps) == 2 and all(0 < s <= 0.05 for s in sleeps)


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (400, "parameters"),
        (401, "MARKETPLACE_EMAIL and MARKETPLACE_API_TOKEN"),
        (403, "MARKETPLACE_DEVELOPER_ID"),
        (404, "MARKETPLACE_BASE_URL"),
    ],
)
def test_client_errors_fail_at_once_with_endpoint_status_message_and_hint(
    sandbox: Sandbox, base_url: str, sleeps: list[float], status: int, hint: str
) -> None:
    sandbox.faults.add(
        FaultRule(path="evaluations", kind="status", status=status, body="the service says no")
    )
    with make_client(base_url, sleeps) as client, pytest.raises(MarketplaceApiError) as caught:
        client.get_json(EVALUATIONS, RANGE)
    message = str(caught.value)
    assert caught.value.status == status
    assert f"GET {base_url}/rest/3/{EVALUATIONS}" in message
    assert "the service says no" in message and hint in message
    assert TOKEN not in message
    assert sandbox.stats()["requests"] == 1 and sleeps == []


def test_real_401_from_wrong_token_never_shows_the_token(
    base_url: str, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-Token-987654321"
    caplog.set_level(logging.DEBUG)
    with (
        MarketplaceClient(base_url, EMAIL, wrong, sleep=sleeps.append) as client,
        pytest.raises(MarketplaceApiError) as caught,
    ):
        client.get_json(EVALUATIONS, RANGE)
    assert caught.value.status == 401
    basic = base64.b64encode(f"{EMAIL}:{wrong}".encode()).decode()
    for text in (str(caught.value), repr(caught.value), caplog.text):
        assert wrong not in text and basic not in text


def test_retry_after_seconds_is_honoured(sandbox: Sandbox, base_url: str, sleeps: list[float]) -> None:
    sandbox.faults.add(FaultRule(path="evaluations", kind="status", status=429, retry_after="7", times=1))
    with make_client(base_url, sleeps) as client:
        client.get_json(EVALUATIONS, RANGE)
    assert sleeps == [7.0]


def test_retry_after_http_date_is_honoured(sandbox: Sandbox, base_url: str, sleeps: list[float]) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    sandbox.faults.add(FaultRule(path="evaluations", kind="status", status=503, retry_after=when, times=1))
    with make_client(base_url, sleeps) as client:
        client.get_json(EVALUATIONS, RANGE)
    assert len(sleeps) == 1 and 27 <= sleeps[0] <= 30


def test_parse_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:01:30 GMT", now) == 90.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_gives_up_after_the_attempt_limit(
    sandbox: Sandbox, base_url: str, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.faults.add(FaultRule(path="evaluations", kind="status", status=503))
    caplog.set_level(logging.WARNING, logger="marketplace_assets.api")
    with make_client(base_url, sleeps) as client, pytest.raises(MarketplaceUnavailableError) as caught:
        client.get_json(EVALUATIONS, RANGE)
    assert "after 4 attempts" in str(caught.value) and "HTTP 503" in str(caught.value)
    assert sandbox.stats()["requests"] == 4 and len(sleeps) == 3
    # Each retry is logged with the endpoint, and no log line carries the token.
    assert caplog.text.count("retrying in") == 3 and TOKEN not in caplog.text


@pytest.mark.parametrize("href_style", ["rest3", "bare"])
def test_offset_pagination_reaches_the_end(href_style: str, sleeps: list[float]) -> None:
    sandbox = Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN, volume=3.0, href_style=href_style)
    with serve(sandbox, port=0) as url, make_client(url, sleeps) as client:
        first = client.get_json(FEEDBACK, {**RANGE, "limit": 10})
        total = first["totalCount"]
        assert total > 150, "the range should span several pages"
        # Without totalCount-driven concurrency: follow the hrefs one by one, as the API hands them out.
        assert first["_links"]["next"]["href"].startswith(
            "/rest/3/" if href_style == "rest3" else "/reporting/"
        )
        records = client.get_offset_paged(FEEDBACK, RANGE, "feedback")
    keys = [(r["date"], r["addonKey"], r["appEntitlementId"]) for r in records]
    assert len(records) == total and len(set(keys)) == total
    assert keys == sorted(keys)
    assert (
        min(r["date"] for r in records) >= RANGE["startDate"]
        and max(r["date"] for r in records) <= RANGE["endDate"]
    )


def test_concurrent_pages_respect_the_bound(sandbox: Sandbox, base_url: str, sleeps: list[float]) -> None:
    sandbox.faults.add(FaultRule(path="feedback", kind="slow", delay=0.2))
    with make_client(base_url, sleeps, max_concurrency=3) as client:
        records = client.get_offset_paged(FEEDBACK, RANGE, "feedback")
        stats = sandbox.stats()
        assert len(records) == client.get_json(FEEDBACK, RANGE)["totalCount"]
    assert stats["requests"] >= 5
    assert 2 <= stats["max_in_flight"] <= 3


def test_array_parameters_are_repeated(sandbox: Sandbox, base_url: str, sleeps: list[float]) -> None:
    assert _query({"productId": ["a", "b"], "x": True, "d": date(2025, 1, 2), "skip": None}) == [
        ("productId", "a"),
        ("productId", "b"),
        ("x", "true"),
        ("d", "2025-01-02"),
    ]
    wanted = [sandbox.apps[0].product_id, sandbox.apps[1].product_id]
    with make_client(base_url, sleeps) as client:
        records = client.get_offset_paged(FEEDBACK, {**RANGE, "productId": wanted}, "feedback")
        everything = client.get_offset_paged(FEEDBACK, RANGE, "feedback")
    assert records and {r["productId"] for r in records} == set(wanted)
    assert len(records) == sum(1 for r in everything if r["productId"] in wanted)


def test_cursor_pagination(sandbox: Sandbox, base_url: str, sleeps: list[float]) -> None:
    with make_client(base_url, sleeps) as client:
        items = client.get_cursor_paged(LISTINGS, {"limit": 1}, "items")
    assert [i["productId"] for i in items] == [a.product_id for a in sandbox.apps]
    assert sandbox.stats()["requests"] == len(sandbox.apps)


def test_reversed_range_is_refused_before_sending(
    sandbox: Sandbox, base_url: str, sleeps: list[float]
) -> None:
    with pytest.raises(ValueError, match="startDate 2025-02-01 is after endDate 2025-01-01"):
        Window(date(2025, 2, 1), date(2025, 1, 1))
    with make_client(base_url, sleeps) as client, pytest.raises(ValueError, match="silently return nothing"):
        client.get_json(EVALUATIONS, {"startDate": "2025-02-01", "endDate": "2025-01-01"})
    assert sandbox.stats()["requests"] == 0


def test_url_resolution() -> None:
    client = MarketplaceClient("https://api.example.com/marketplace/")
    assert client.url("reporting/x") == "https://api.example.com/marketplace/rest/3/reporting/x"
    assert (
        client.url("/rest/3/reporting/x?a=1") == "https://api.example.com/marketplace/rest/3/reporting/x?a=1"
    )
    assert client.url("/reporting/x?a=1") == "https://api.example.com/marketplace/rest/3/reporting/x?a=1"
    assert (
        client.url("https://bucket.s3.example/file.csv?sig=1") == "https://bucket.s3.example/file.csv?sig=1"
    )


def test_download_streams_to_a_file_and_restarts_after_a_drop(
    sandbox: Sandbox, base_url: str, sleeps: list[float]
) -> None:
    with make_client(base_url, sleeps) as client:
        expected = httpx.get(f"{base_url}/rest/3/{EVALUATIONS}", params=RANGE, auth=(EMAIL, TOKEN)).content
        sandbox.faults.add(FaultRule(path="evaluations", kind="drop", times=1))
        path = client.download(EVALUATIONS, params=RANGE, suffix=".json")
    try:
        assert isinstance(path, Path) and path.read_bytes() == expected
        assert len(sleeps) == 1
    finally:
        path.unlink()
