"""Fails when Dagster changes what `dagster_conventions.py` relies on without a public API."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage import tags as dagster_tags  # private on purpose: the check of our copy

from marketplace_assets import definitions
from marketplace_assets.dagster_conventions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    beta_parameters,
    is_valid_cron,
    range_tags,
)
from marketplace_assets.settings import MarketplaceSettings


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


def test_building_the_definitions_shows_no_beta_warning_and_one_sandbox_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = MarketplaceSettings(sandbox=True, warehouse=str(tmp_path / "w.duckdb"), _env_file=None)
    with (
        warnings.catch_warnings(record=True) as shown,
        caplog.at_level(logging.WARNING, "marketplace_assets"),
    ):
        warnings.simplefilter("always")
        definitions.build_definitions(settings)
        definitions.build_definitions(settings)
    assert [w for w in shown if issubclass(w.category, dg.BetaWarning)] == []
    banners = [r for r in caplog.records if "SANDBOX mode" in r.getMessage()]
    assert len(banners) <= 1, "one sandbox line per process, however often the definitions are built"


def test_only_the_named_beta_parameters_are_silenced() -> None:
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with beta_parameters():
            warnings.warn("Parameter `backfill_policy` of function `asset` is in beta", dg.BetaWarning, 1)
            warnings.warn("Parameter `something_else` of function `asset` is in beta", dg.BetaWarning, 1)
            warnings.warn("Function `dev_command` is superseded", dg.SupersessionWarning, 1)
    assert [str(w.message) for w in shown] == [
        "Parameter `something_else` of function `asset` is in beta",
        "Function `dev_command` is superseded",
    ]
