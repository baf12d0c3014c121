"""Fails when Dagster changes what `dagster_conventions.py` relies on without a public API."""

from __future__ import annotations

import pytest
from dagster._core.storage import tags as dagster_tags  # private on purpose: the check of our copy

from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG, is_valid_cron, range_tags


def test_the_range_tags_are_the_ones_dagster_reads() -> None:
    assert RANGE_START_TAG == dagster_tags.ASSET_PARTITION_RANGE_START_TAG
    assert RANGE_END_TAG == dagster_tags.ASSET_PARTITION_RANGE_END_TAG
    assert range_tags("2025-01-01", "2025-01-31") == {
        dagster_tags.ASSET_PARTITION_RANGE_START_TAG: "2025-01-01",
        dagster_tags.ASSET_PARTITION_RANGE_END_TAG: "2025-01-31",
    }


@pytest.mark.parametrize(
    ("cron", "valid"),
    [
        ("0 3 * * *", True),
        ("*/15 6-18 * * 1-5", True),
        ("@daily", True),
        ("* * * *", False),  # four fields
        ("0 3 * * * *", False),  # seconds
        ("0 25 * * *", False),  # no 25th hour
        ("0 0 30 2 *", False),  # February has no 30th
        ("daily at three", False),
    ],
)
def test_a_cron_is_valid_exactly_when_a_schedule_accepts_it(cron: str, valid: bool) -> None:
    assert is_valid_cron(cron) is valid
