"""Every column of every table has a description that is true for that table, and empty strings the API
sends for a missing value are stored as NULL.

Every asset of `build_assets` and every metric is materialized once against the in-process sandbox (one
partition each), and the `dagster/column_schema` each materialization records is read back: a column
the parsers start producing fails here until `columns.py` or `column_descriptions.py` describes it (a
metric's columns are described on its catalog row). The reference pages' sample responses are parsed
too, for the fields the live API sends that the sandbox does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from marketplace_assets.column_descriptions import BY_CADENCE, BY_FAMILY, BY_TABLE
from marketplace_assets.columns import describe_column
from marketplace_assets.definitions import build_assets
from marketplace_assets.metrics.assets import build_metric_assets
from marketplace_assets.partitions import APPS
from marketplace_assets.reports import parsers
from marketplace_assets.reports.catalog import REPORTS_BY_KEY
from marketplace_assets.reports.normalize import records_frame, snake_case
from marketplace_assets.reports.report import Cadence, Family
from marketplace_assets.sandbox import Sandbox
from marketplace_assets.sandbox.export_reports import EVALUATION_ATTRIBUTION_COLUMNS
from marketplace_assets.sandbox.resource import SANDBOX_EMAIL, SANDBOX_TOKEN, SandboxMarketplaceResource
from marketplace_assets.settings import SANDBOX_DEVELOPER_ID, MarketplaceSettings
from marketplace_assets_tests.resources import asset_resources
from marketplace_assets_tests.test_parsers import sample

SETTINGS = MarketplaceSettings(sandbox=True, start_date="2025-01-01", warehouse="unused")
# A metric reads raw tables: the daily one runs with (after) the license history it reads, the monthly
# ones in the monthly run, which comes after the daily run that stores the transactions and licenses.
METRICS = build_metric_assets(start_date=SETTINGS.start_date, sandbox=True)
ASSETS = {a.key.to_user_string(): a for a in [*build_assets(SETTINGS), *METRICS]}
# One partition per cron, where every report has rows: 2025-02-06 has churn events (they are rare), the
# benchmarks of February 2025 are published, and partner-metric weeks start on Mondays.
KEY_BY_CRON = {
    "0 0 * * *": "2025-02-06",
    "0 0 * * 0": "2025-02-09",
    "0 0 * * 1": "2025-02-03",
    "0 0 1 * *": "2025-02-01",
}
# The sandbox serves only today's catalog snapshot.
CATALOG = "catalog/product_catalog"
SUNDAY, MONDAY, FIRST_OF_MONTH = "0 0 * * 0", "0 0 * * 1", "0 0 1 * *"


@dataclass(frozen=True)
class Materialized:
    warehouse: Path
    # table -> column -> description, as the materialization's column schema has them.
    schemas: dict[str, dict[str, str | None]]


def _key_of(pd: dg.PartitionsDefinition, instance: dg.DagsterInstance, app: str) -> str:
    """A partition key of `pd` from `KEY_BY_CRON`; dynamic partitions (apps) are added first."""
    if isinstance(pd, dg.TimeWindowPartitionsDefinition):
        return KEY_BY_CRON[pd.cron_schedule]
    if isinstance(pd, dg.DynamicPartitionsDefinition) and pd.name == APPS.name:
        instance.add_dynamic_partitions(APPS.name, [app])
        return app
    raise AssertionError(f"no test partition for {pd}: add one to KEY_BY_CRON or _key_of")


def _partition_key(asset: dg.AssetsDefinition, instance: dg.DagsterInstance, app: str) -> str | None:
    pd = asset.partitions_def
    if asset.key.to_user_string() == CATALOG:
        today = datetime.now(UTC).date().isoformat()
        if isinstance(pd, dg.DynamicPartitionsDefinition):
            instance.add_dynamic_partitions(pd.name, [today])
        return today
    if pd is None:
        return None
    if isinstance(pd, dg.MultiPartitionsDefinition):
        return dg.MultiPartitionKey(
            {d.name: _key_of(d.partitions_def, instance, app) for d in pd.partitions_defs}
        )
    return _key_of(pd, instance, app)


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> Materialized:
    warehouse = tmp_path_factory.mktemp("descriptions") / "warehouse.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    app = Sandbox(developer_id=SANDBOX_DEVELOPER_ID, email=SANDBOX_EMAIL, token=SANDBOX_TOKEN).apps[0]
    # Polled fast: the sandbox's exports complete after a few status polls.
    marketplace = SandboxMarketplaceResource(developer_id=SANDBOX_DEVELOPER_ID, export_poll_interval=0.01)
    resources = asset_resources(marketplace, warehouse)
    # Assets that share a partition key are materialized in one run.
    runs: dict[str | None, list[dg.AssetsDefinition]] = {}
    for asset in ASSETS.values():
        runs.setdefault(_partition_key(asset, instance, app.product_id), []).append(asset)
    schemas: dict[str, dict[str, str | None]] = {}
    for key, assets in runs.items():
        result = dg.materialize(assets, resources=resources, instance=instance, partition_key=key)
        assert result.success
        for event in result.get_asset_materialization_events():
            schema = event.materialization.metadata["dagster/column_schema"].value
            assert isinstance(schema, dg.TableSchema)
            schemas[event.asset_key.to_user_string()] = {c.name: c.description for c in schema.columns}
    return Materialized(warehouse, schemas)


def test_every_column_of_every_asset_has_a_description(materialized: Materialized) -> None:
    assert sorted(materialized.schemas) == sorted(ASSETS), "every asset recorded its column schema"
    undescribed = [
        f"{table}.{column}"
        for table, columns in materialized.schemas.items()
        for column, description in columns.items()
        if not (description or "").strip()
    ]
    assert undescribed == [], "describe these in columns.py (SHARED) or column_descriptions.py"
    assert sum(len(columns) for columns in materialized.schemas.values()) > 500


def test_a_column_nobody_described_has_no_description() -> None:
    # What makes the test above fail for a new field: no catch-all description.
    assert describe_column("feedback/details", "brand_new_field") is None
    assert describe_column("no_such/table", "count") is None


def _asset_cron(table: str) -> str | None:
    pd = ASSETS[table].partitions_def
    return pd.cron_schedule if isinstance(pd, dg.TimeWindowPartitionsDefinition) else None


def test_date_says_which_day_of_the_period_it_is(materialized: Materialized) -> None:
    """On every table partitioned by `date`, its description names the day that dates the period."""
    checked = {SUNDAY: 0, MONDAY: 0, FIRST_OF_MONTH: 0, "0 0 * * *": 0}
    for table, columns in materialized.schemas.items():
        partition_expr = ASSETS[table].metadata_by_key[ASSETS[table].key].get("partition_expr")
        if partition_expr != "date" or (cron := _asset_cron(table)) is None:
            continue
        description = columns["date"] or ""
        phrases = {SUNDAY: "Sunday that starts", MONDAY: "Monday that starts", FIRST_OF_MONTH: "1st of"}
        expected = phrases.get(cron)  # a daily table's date is its day: none of them
        if expected:
            assert expected in description, (table, description)
        for other in set(phrases.values()) - {expected}:
            assert other not in description, (table, description)
        checked[cron] += 1
    assert all(checked.values()), checked  # each cadence was seen
    assert "Sunday" in (materialized.schemas["evaluations/by_hosting"]["date"] or "")
    assert "1st" in (materialized.schemas["benchmarks/sales"]["date"] or "")
    assert "Monday" in (materialized.schemas["partner_metrics/installs_by_major_version"]["date"] or "")


def test_app_identity_mentions_total_rows_only_where_there_are_some(materialized: Materialized) -> None:
    """Tables with a `scope` column have all-apps total rows, except the churn benchmark (per app only)."""
    for table, columns in materialized.schemas.items():
        if "addon_key" not in columns:
            continue
        has_total_rows = "scope" in columns and table != "benchmarks/churn"
        assert ("total" in (columns["addon_key"] or "")) == has_total_rows, (table, columns["addon_key"])
    feedback = materialized.schemas["feedback/details"]
    assert "total" not in (feedback["addon_key"] or "") and "total" not in (feedback["product_id"] or "")
    assert "total" in (materialized.schemas["evaluations/by_country"]["addon_key"] or "")


def test_count_says_what_it_counts_in_each_report(materialized: Materialized) -> None:
    counts = {t: c["count"] for t, c in materialized.schemas.items() if "count" in c}
    assert "evaluations" in (counts["evaluations/by_region"] or "")
    assert "Feedback" in (counts["feedback/by_type"] or "")
    assert "Transactions" in (counts["sales/transactions_by_tier"] or "")
    assert "no app" in (counts["search/zero_result_keywords"] or "")
    assert len(set(counts.values())) >= 8, "count means different things in different reports"


# -- the reference pages' sample responses --------------------------------------------------------------
D = date(2025, 2, 1)


def _records(name: str, records_key: str, table: str) -> Callable[[], pl.DataFrame]:
    """The sample's records under `records_key`, parsed as the catalog row `table` parses them."""
    row = REPORTS_BY_KEY[dg.AssetKey(table.split("/"))]
    return lambda: parsers.parse_records(
        sample(name)[records_key], base_schema=row.base_schema, date_columns=row.date_columns
    )


# table -> its sample parsed as the table's parser does.
SAMPLES: dict[str, Callable[[], pl.DataFrame]] = {
    **{
        f"evaluations/by_{m}": (lambda m=m: parsers.parse_time_series(sample(f"evaluations_{m}"), "x"))
        for m in ("country", "hosting", "partner", "region")
    },
    **{
        f"sales/transactions_by_{m}": lambda: parsers.parse_time_series(
            sample("sales_transactions_by_metric"), "x"
        )
        for m in ("country", "hosting", "partner", "region", "tier", "type")
    },
    **{
        f"sales/{m}": (lambda m=m: parsers.parse_time_series(sample(f"sales_metrics_{m}"), "x"))
        for m in ("churn", "conversion", "renewal")
    },
    **{
        f"sales/{m}_events": _records("sales_metrics_details", "events", f"sales/{m}_events")
        for m in ("churn", "conversion", "renewal")
    },
    "sales/transactions": lambda: records_frame(sample("sales_transactions")["transactions"]),
    "licenses/licenses": lambda: records_frame(sample("licenses")["licenses"]),
    "licenses/current": lambda: records_frame(sample("licenses")["licenses"]),
    "marketing/attribution": lambda: pl.DataFrame(
        schema=["date", *(snake_case(c) for c in EVALUATION_ATTRIBUTION_COLUMNS)]
    ),
    "feedback/details": _records("feedback_details", "feedback", "feedback/details"),
    "feedback/by_reason": lambda: parsers.parse_time_series(sample("feedback_metrics_reason"), "x"),
    **{
        f"benchmarks/{m}": (lambda m=m: parsers.parse_scoped_records(sample(f"benchmark_{m}"), "x"))
        for m in ("churn", "evaluations", "sales")
    },
    **{
        f"customer_insights/{m}": (lambda m=m: parsers.parse_insights(sample(f"customer_insights_{m}"), "x"))
        for m in ("regions", "editions", "active_users", "tiers")
    },
    **{
        f"search/{t}": lambda: parsers.parse_period_details(sample("search_keywords_source"), "x", D)
        for t in ("top_keywords_marketplace", "top_keywords_embedded_marketplace")
    },
    "search/zero_result_keywords": lambda: parsers.parse_period_details(
        sample("zero_search_results_keywords"), "x", D
    ),
    "search/appearances_by_app": lambda: parsers.parse_appearances(sample("search_keywords_by_app"), "x", D),
    "search/keywords_by_app": lambda: parsers.parse_product_keywords(
        sample("product_search_keywords"), "x", D
    ),
    "app_requests/approvals": lambda: parsers.parse_scoped_records(sample("app_requests_and_approvals"), "x"),
    "listings/apps": _records("listings_developer_space", "items", "listings/apps"),
    "partner_metrics/installs_by_parent_software_version": lambda: records_frame(
        sample("partner_metrics")["records"], base_schema={"date": pl.Date()}, date_columns=("date",)
    ),
}


@pytest.mark.parametrize("table", sorted(SAMPLES))
def test_every_column_of_the_reference_samples_has_a_description(table: str) -> None:
    assert table in ASSETS
    frame = SAMPLES[table]()
    assert frame.columns
    assert [c for c in frame.columns if not describe_column(table, c)] == []


# -- the description tables themselves -------------------------------------------------------------------
def test_every_description_names_a_real_table_family_and_cadence() -> None:
    for key in BY_TABLE:
        assert any(fnmatchcase(table, key) for table in ASSETS), f"{key} matches no asset"
    assert set(BY_FAMILY) <= {f.value for f in Family}
    assert set(BY_CADENCE) <= {c.value for c in Cadence}
    for key, descriptions in BY_TABLE.items():
        assert all(d.strip() for d in descriptions.values()), key


def test_patterns_never_describe_one_column_of_a_table_twice() -> None:
    """The lookup takes the first matching pattern; two that disagree would depend on their order."""
    for table in ASSETS:
        patterns = [k for k in BY_TABLE if k != table and fnmatchcase(table, k)]
        columns = [c for k in patterns for c in BY_TABLE[k]]
        assert len(columns) == len(set(columns)), (table, patterns)


# -- empty strings ----------------------------------------------------------------------------------------
def test_empty_or_missing_text_is_null_and_text_is_kept() -> None:
    feedback = sample("feedback_details")["feedback"][0]
    assert feedback["message"] == "", "the reference's sample sends an empty message"
    without = {k: v for k, v in feedback.items() if k != "message"}
    written = {**feedback, "message": "Too expensive for our team.", "reason": " "}
    frame = _records("feedback_details", "feedback", "feedback/details")()
    assert frame["message"].to_list() == [None]
    row = REPORTS_BY_KEY[dg.AssetKey(["feedback", "details"])]
    parsed = parsers.parse_records([feedback, without, written], base_schema=row.base_schema)
    assert parsed["message"].to_list() == [None, None, "Too expensive for our team."]
    assert parsed["reason"].to_list()[-1] == " ", "only the empty string becomes null"
    assert parsed.schema["message"] == pl.String
    # Any text field of any JSON family, e.g. a time series' series attribute.
    element = {"name": "Cloud", "evaluationType": "", "elements": [{"date": "2025-02-02", "count": 1}]}
    series = parsers.parse_time_series({"total": {"series": [element]}}, "evaluations/by_hosting")
    assert series["evaluation_type"].to_list() == [None]


def test_feedback_messages_the_api_left_empty_are_stored_as_null(materialized: Materialized) -> None:
    with duckdb.connect(str(materialized.warehouse), read_only=True) as con:
        empty, null, rows = con.execute(
            "SELECT count(*) FILTER (WHERE message = ''), count(*) FILTER (WHERE message IS NULL), count(*) "
            "FROM feedback.details"
        ).fetchall()[0]
        tables = con.sql(
            "SELECT table_schema || '.' || table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR'"
        ).fetchall()
        blanks = [
            f"{table}.{column}"
            for table, column in tables
            if con.execute(f"SELECT count(*) FROM {table} WHERE \"{column}\" = ''").fetchall() != [(0,)]
        ]
    assert rows and empty == 0 and null, 'the sandbox sends most messages as "": stored as NULL'
    # No table keeps an empty string: JSON answers map them to NULL, CSV files read them as NULL.
    assert blanks == []
