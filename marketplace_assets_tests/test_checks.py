"""Each asset check fails on the bad data it is meant to catch and passes on good data; a run whose rows
fall outside its partitions records the failed check and writes nothing.

No `from __future__ import annotations`: the toy asset's `context` annotation must be a real type.
"""

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import MarketplaceAsset
from marketplace_assets.checks import (
    DATES,
    KEYS_PRESENT,
    NEW_FIELDS,
    NON_NEGATIVE,
    TOTALS,
    UNIQUE,
    check_specs,
    dates_in_partition,
    keys_present,
    no_new_fields,
    non_negative,
    totals_match_apps,
    unique_keys,
)
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.catalog import REPORTS_BY_KEY
from marketplace_assets.reports.fetch import Window
from marketplace_assets.reports.invariants import DIMENSIONS, Invariants
from marketplace_assets.sandbox.resource import SandboxMarketplaceResource
from marketplace_assets.settings import SANDBOX_DEVELOPER_ID
from marketplace_assets_tests.resources import asset_resources

FEB = Window(date(2025, 2, 2), date(2025, 2, 8))


def series(**changes: list) -> pl.DataFrame:
    """A small time series: a total row and two app rows per date, totals equal to the sum."""
    rows = {
        "scope": ["total", "app", "app", "total", "app", "app"],
        "addon_key": [None, "a", "b", None, "a", "b"],
        "series": ["Cloud"] * 6,
        "date": [date(2025, 2, 2)] * 3 + [date(2025, 2, 9)] * 3,
        "count": [5, 2, 3, 7, 7, 0],
        "revenue": [10.10, 5.05, 5.05, 0.0, 0.0, 0.0],
    }
    return pl.DataFrame(rows | changes)


def test_unique_keys_catches_a_repeated_key_and_passes_distinct_ones() -> None:
    good = pl.DataFrame({"transaction_line_item_id": ["x", "y", "z"], "amount": [1, 2, 3]})
    assert unique_keys(good, ("transaction_line_item_id",)).passed
    bad = pl.DataFrame({"transaction_line_item_id": ["x", "y", "x"], "amount": [1, 2, 3]})
    result = unique_keys(bad, ("transaction_line_item_id",))
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["rows_repeating_a_key"].value == 2
    assert "transaction_line_item_id=x" in str(result.metadata["example"].value)


def test_unique_keys_over_dimensions_and_as_a_warning_where_the_merge_dedupes() -> None:
    assert unique_keys(series(), DIMENSIONS).passed
    repeated = pl.concat([series(), series().head(1)])
    assert not unique_keys(repeated, DIMENSIONS).passed
    # A repeated version of a license: the merge keeps one, so it is only worth a warning.
    versions = pl.DataFrame(
        {"app_entitlement_number": ["E-1", "E-1"], "last_updated": [date(2025, 2, 3)] * 2}
    )
    warning = unique_keys(versions, ("app_entitlement_number", "last_updated"), errors=False)
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN


def test_non_negative_catches_a_negative_count() -> None:
    assert non_negative(series(), ("count",)).passed
    result = non_negative(series(count=[5, 2, 3, 7, 8, -1]), ("count",))
    assert not result.passed
    assert result.metadata["negative_count"].value == 1
    # Revenue may be negative (refunds): only the listed columns are checked.
    assert non_negative(series(revenue=[-1.0] * 6), ("count",)).passed


def test_totals_must_equal_the_sum_over_apps_to_the_cent() -> None:
    assert totals_match_apps(series(), ("count", "revenue")).passed
    off_by_one = totals_match_apps(series(count=[6, 2, 3, 7, 7, 0]), ("count",))
    assert not off_by_one.passed and off_by_one.metadata["groups_mismatched"].value == 1
    off_by_a_cent = totals_match_apps(series(revenue=[10.11, 5.05, 5.05, 0.0, 0.0, 0.0]), ("revenue",))
    assert not off_by_a_cent.passed
    # A total with no app rows at all for its group is compared with zero.
    lone_total = series().filter((pl.col("scope") == "total") | (pl.col("date") == date(2025, 2, 2)))
    assert not totals_match_apps(lone_total, ("count",)).passed


def test_dates_must_lie_inside_the_partition_window() -> None:
    inside = pl.DataFrame({"date": [date(2025, 2, 2), date(2025, 2, 8)]})
    assert dates_in_partition(inside, "date", FEB).passed
    outside = pl.DataFrame({"date": [date(2025, 2, 2), date(2025, 2, 9)]})
    result = dates_in_partition(outside, "date", FEB)
    assert not result.passed
    assert result.metadata["rows_outside"].value == 1
    assert "2025-02-09" in (result.description or "")
    undated = pl.DataFrame({"date": [date(2025, 2, 3), None]})
    assert not dates_in_partition(undated, "date", FEB).passed


def test_new_fields_warn_only_after_the_first_materialization() -> None:
    frame = pl.DataFrame({"date": [date(2025, 2, 2)], "count": [1], "brand_new_field": ["x"]})
    assert no_new_fields(frame, {}).passed, "nothing stored yet: every field is new by definition"
    assert no_new_fields(frame, {"date": "DATE", "count": "BIGINT", "brand_new_field": "VARCHAR"}).passed
    result = no_new_fields(frame, {"date": "DATE", "count": "BIGINT"})
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["new_fields"].value == "brand_new_field"


def test_specs_follow_the_catalog() -> None:
    transactions_by_country = REPORTS_BY_KEY[dg.AssetKey(["sales", "transactions_by_country"])]
    names = {
        s.name
        for s in check_specs(
            transactions_by_country.key, transactions_by_country.invariants, date_column="date"
        )
    }
    assert names == {UNIQUE, NON_NEGATIVE, TOTALS, DATES, NEW_FIELDS}
    listings = REPORTS_BY_KEY[dg.AssetKey(["listings", "apps"])]
    specs = {s.name: s for s in check_specs(listings.key, listings.invariants, date_column=None)}
    assert set(specs) == {KEYS_PRESENT, UNIQUE, NEW_FIELDS}
    # The UI labels a check blocking exactly when a failure stops the write.
    assert specs[KEYS_PRESENT].blocking and not specs[UNIQUE].blocking
    dates = {s.name: s.blocking for s in check_specs(listings.key, listings.invariants, date_column="date")}
    assert dates[DATES] is True and dates[NEW_FIELDS] is False


def _toy_asset(frame: pl.DataFrame) -> dg.AssetsDefinition:
    shape = MarketplaceAsset(
        dg.AssetKey(["toy", "events"]),
        Invariants(unique_keys=("id",), identity=("id",), non_negative=("count",)),
        dg.DailyPartitionsDefinition(start_date="2025-01-01"),
        "date",
    )

    @shape.define(description="A toy report returning a fixed frame.", sandbox=True)
    def toy(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource, pii: PiiPolicy
    ) -> Iterator[Any]:
        with shape.api_run(context, marketplace) as run:
            yield from shape.finish(context, run.output(frame), pii)

    return toy


@pytest.mark.parametrize(
    ("frame", "failing"),
    [
        (pl.DataFrame({"id": [1, 2], "date": [date(2025, 2, 3)] * 2, "count": [1, 2]}), set()),
        (
            pl.DataFrame({"id": [1, 1], "date": [date(2025, 2, 3)] * 2, "count": [1, -2]}),
            {UNIQUE, NON_NEGATIVE},
        ),
    ],
)
def test_checks_run_with_every_materialization(
    frame: pl.DataFrame, failing: set[str], tmp_path: Path
) -> None:
    resources = asset_resources(
        SandboxMarketplaceResource(developer_id=SANDBOX_DEVELOPER_ID), tmp_path / "w.duckdb"
    )
    result = dg.materialize([_toy_asset(frame)], resources=resources, partition_key="2025-02-03")
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {KEYS_PRESENT, UNIQUE, NON_NEGATIVE, DATES, NEW_FIELDS}
    assert {name for name, e in evaluations.items() if not e.passed} == failing
    # Checks do not block the write: the rows are stored and the failure shows beside them in the UI.
    assert result.success


def test_rows_outside_the_partitions_fail_the_check_and_write_nothing(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    resources = asset_resources(SandboxMarketplaceResource(developer_id=SANDBOX_DEVELOPER_ID), warehouse)
    stray = pl.DataFrame({"id": [1, 2], "date": [date(2025, 2, 3), date(2025, 2, 4)], "count": [1, 2]})
    result = dg.materialize(
        [_toy_asset(stray)], resources=resources, partition_key="2025-02-03", raise_on_error=False
    )
    assert not result.success
    dates = [e for e in result.get_asset_check_evaluations() if e.check_name == DATES]
    assert len(dates) == 1 and not dates[0].passed
    failure = result.failure_data_for_node("toy__events")
    assert failure is not None
    message = failure.error.message if failure.error else ""
    assert "toy/events, partition 2025-02-03" in message and "2025-02-04" in message
    assert not warehouse.exists() or duckdb.connect(str(warehouse)).sql(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'events'"
    ).fetchall() == [(0,)]


def test_keys_present_names_the_rows_without_an_identity() -> None:
    frame = pl.DataFrame({"id": ["a", None, "c"], "day": [date(2025, 2, 3)] * 3})
    result = keys_present(frame, ("id", "day"))
    assert not result.passed and result.metadata["rows_without_key"].value == 1
    assert "1 of 3 row(s) have no id/day" in (result.description or "")
    assert keys_present(frame.drop_nulls(), ("id", "day")).passed
    missing = keys_present(frame.drop("day"), ("id", "day"))
    assert not missing.passed and "no column day" in (missing.description or "")


def test_a_row_without_its_identity_fails_the_run_and_writes_nothing(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    resources = asset_resources(SandboxMarketplaceResource(developer_id=SANDBOX_DEVELOPER_ID), warehouse)
    good = pl.DataFrame({"id": [1, 2], "date": [date(2025, 2, 3)] * 2, "count": [1, 2]})
    assert dg.materialize([_toy_asset(good)], resources=resources, partition_key="2025-02-03").success
    keyless = pl.DataFrame({"id": [1, None], "date": [date(2025, 2, 3)] * 2, "count": [5, 6]})
    result = dg.materialize(
        [_toy_asset(keyless)], resources=resources, partition_key="2025-02-03", raise_on_error=False
    )
    assert not result.success
    failure = result.failure_data_for_node("toy__events")
    message = failure.error.message if failure and failure.error else ""
    assert "blocking check identity_keys_present failed" in message and "Nothing was written" in message
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT id, count FROM toy.events ORDER BY id").fetchall() == [(1, 1), (2, 2)]


def test_new_fields_are_judged_from_the_write_and_stored_types_by_the_io_manager(tmp_path: Path) -> None:
    """`no_new_fields` reads the columns the IO manager's write added; a value whose type differs from the
    stored column's fails in the IO manager, before the write, naming the stored type."""
    warehouse = tmp_path / "w.duckdb"
    resources = asset_resources(SandboxMarketplaceResource(developer_id=SANDBOX_DEVELOPER_ID), warehouse)
    instance = dg.DagsterInstance.ephemeral()
    day = {"id": [1], "date": [date(2025, 2, 3)], "count": [1]}

    def run(frame: pl.DataFrame) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [_toy_asset(frame)], resources=resources, partition_key="2025-02-03", instance=instance,
            raise_on_error=False,
        )  # fmt: skip

    def new_fields(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
        [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == NEW_FIELDS]
        return evaluation

    first = new_fields(run(pl.DataFrame({**day, "score": [2.5]})))
    assert first.passed and first.metadata["first_materialization"].value is True
    added = new_fields(run(pl.DataFrame({**day, "score": [2.5], "brand_new_field": ["x"]})))
    assert not added.passed and added.severity == dg.AssetCheckSeverity.WARN
    assert added.metadata["new_fields"].value == "brand_new_field"
    assert new_fields(run(pl.DataFrame({**day, "score": [3.5]}))).passed

    drifted = run(pl.DataFrame({**day, "score": ["n/a"]}))
    assert not drifted.success
    failure = drifted.failure_data_for_node("toy__events")
    message = failure.error.message if failure is not None and failure.error else ""
    assert "toy/events, date in [2025-02-03, 2025-02-04)" in message and "field 'score'" in message
    assert "expected DOUBLE (number)" in message and "'n/a'" in message
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.sql("SELECT score FROM toy.events").fetchall() == [(3.5,)], "nothing was written"
