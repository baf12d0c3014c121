"""Pure rules: how a listing change becomes a PUT body, how partner-metric windows become requests."""

from __future__ import annotations

from datetime import date

import pytest

from marketplace_assets.listing_update import ListingChangeError, build_update
from marketplace_assets.reports.partner_metrics import DEFAULT_QUERIES, MetricQuery, load_queries
from marketplace_assets.settings import MarketplaceSettings
from marketplace_assets_tests.test_parsers import sample

LISTING = sample("listings_developer_space")["items"][0]


def test_update_keeps_everything_else_and_sends_tags_as_ids() -> None:
    body = build_update(LISTING, {"tagLine": "Faster", "developerLinks": {"forums": "https://f.example"}})
    assert body["tagLine"] == "Faster"
    assert body["developerLinks"]["forums"] == "https://f.example"
    # The rest of the nested object is untouched.
    assert body["developerLinks"]["privacy"] == LISTING["developerLinks"]["privacy"]
    assert body["revision"] == LISTING["revision"] == 15
    assert body["tags"] == {
        "category": ["productivity", "workflow"],
        "keywords": ["automation", "efficiency"],
    }
    # Fields only Atlassian may change are sent with their current values.
    for field in (
        "appKey",
        "developerId",
        "enrolledPrograms",
        "state",
        "approvalStatus",
        "hostingVisibility",
    ):
        assert body[field] == LISTING[field]
    # Response-only fields are not sent.
    assert "productId" not in body and "slug" not in body and "approvalDetails" not in body
    assert LISTING["tagLine"] != "Faster", "the listing read must not be modified in place"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"appKey": "x"}, "'appKey' cannot be changed: the app key cannot be changed"),
        ({"images": {"titleLogoFileId": "x"}}, "'images.titleLogoFileId' cannot be changed"),
        ({"revision": 99}, "'revision' cannot be changed"),
        ({"stateAfterApproval": "PRIVATE"}, "while the app's state is PUBLIC"),
        ({"slug": "new"}, "not listing fields that can be sent: \\['slug'\\]"),
    ],
)
def test_refused_changes_name_the_field(changes: dict, message: str) -> None:
    with pytest.raises(ListingChangeError, match=message):
        build_update(LISTING, changes)


def test_icon_may_change_but_title_logo_may_not() -> None:
    body = build_update(LISTING, {"images": {"iconFileId": "new-icon"}})
    assert body["images"]["iconFileId"] == "new-icon"
    assert body["images"]["titleLogoFileId"] == LISTING["images"]["titleLogoFileId"]


def query(**kw) -> MetricQuery:
    return MetricQuery(
        name="q", summary="s", **{"granularity": "WEEK", "metric_fields": ("INSTALL_COUNT",), **kw}
    )


def test_weeks_are_requested_in_chunks_of_at_most_14_periods() -> None:
    # 30 Monday weeks: 2025-01-06 .. 2025-08-03.
    bodies = list(query().request_bodies(date(2025, 1, 6), date(2025, 8, 3), today=date(2026, 1, 1)))
    assert [n for _, n in bodies] == [14, 14, 2]
    ranges = [(b["dateRange"]["startDate"], b["dateRange"]["endDate"]) for b, _ in bodies]
    assert ranges == [
        ("2025-01-06", "2025-04-13"),
        ("2025-04-14", "2025-07-20"),
        ("2025-07-21", "2025-08-03"),
    ]
    assert bodies[0][0]["metrics"]["metricFields"] == [{"name": "INSTALL_COUNT"}]


def test_end_date_limits_per_metric_set() -> None:
    today = date(2025, 5, 20)
    assert query(metric_sets=("RECURRING_REVENUE",), metric_fields=()).latest_end_date(today) == today
    assert query().latest_end_date(today) == date(2025, 5, 19)  # DISTRIBUTIONS: before today
    assert query(metric_fields=("PROSPECT",)).latest_end_date(today) == date(2025, 4, 30)
    # The strictest set wins; a window entirely past the limit asks for nothing.
    mixed = query(granularity="MONTH", metric_fields=("ARR", "PROSPECT"))
    assert list(mixed.request_bodies(date(2025, 5, 1), date(2025, 5, 31), today)) == []
    clamped = list(query(granularity="DAY").request_bodies(date(2025, 5, 15), date(2025, 5, 25), today))
    assert clamped[0][0]["dateRange"] == {"startDate": "2025-05-15", "endDate": "2025-05-19"}


def test_filter_is_sent_under_both_documented_keys() -> None:
    expr = {
        "expr": {
            "filter": {
                "fieldName": "APP_VERSION_TYPE",
                "oneFilter": {"stringFilter": {"value": "NATIVE_APP"}},
            }
        }
    }
    body = query(granularity="MONTH", metric_fields=("LIFETIME_GMV",), filter=expr).body(
        date(2025, 1, 1), date(2025, 1, 31)
    )
    assert body["attributesFilter"] == body["attributeFilter"] == expr


def test_queries_from_yaml(tmp_path, clean_env: pytest.MonkeyPatch) -> None:
    monkeypatch = clean_env
    path = tmp_path / "metrics.yaml"
    path.write_text(
        "- name: downloads\n  granularity: DAY\n  summary: Downloads.\n  metric_fields: [DOWNLOAD_COUNT]\n"
    )
    monkeypatch.setenv("MARKETPLACE_PARTNER_METRICS", str(path))
    configured = MarketplaceSettings().partner_metrics  # the setting, as definitions.py reads it
    assert configured == path
    [only] = load_queries(configured)
    assert only.name == "downloads" and only.metric_set_names == {"DOWNLOADS"}
    path.write_text("- name: bad\n  granularity: DAY\n  summary: x\n  metric_fields: [NOPE]\n")
    with pytest.raises(ValueError, match=r"(?s)MARKETPLACE_PARTNER_METRICS=.*unknown metric field"):
        load_queries(configured)
    monkeypatch.delenv("MARKETPLACE_PARTNER_METRICS")
    assert MarketplaceSettings().partner_metrics is None
    assert load_queries(None) == DEFAULT_QUERIES
