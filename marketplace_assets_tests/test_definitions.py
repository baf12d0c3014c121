"""The Definitions load in both modes, with the public asset keys, groups and partitions."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from marketplace_assets.definitions import build_definitions
from marketplace_assets.settings import ConfigurationError, load_settings

WEEKLY, DAILY, MONTHLY = "weekly", "daily", "monthly"
EXPECTED = {
    **{f"evaluations/by_{m}": ("evaluations", WEEKLY) for m in ("country", "hosting", "partner", "region")},
    **{
        f"sales/transactions_by_{m}": ("sales", WEEKLY)
        for m in ("country", "hosting", "partner", "region", "tier", "type")
    },
    **{f"sales/{m}": ("sales", WEEKLY) for m in ("churn", "conversion", "renewal")},
    **{f"sales/{m}_events": ("sales", DAILY) for m in ("churn", "conversion", "renewal")},
    "sales/free_starter_tier": ("sales", DAILY),
    "feedback/details": ("feedback", DAILY),
    "feedback/by_reason": ("feedback", WEEKLY),
    "feedback/by_type": ("feedback", WEEKLY),
    **{f"benchmarks/{m}": ("benchmarks", MONTHLY) for m in ("churn", "evaluations", "sales")},
    **{
        f"customer_insights/{m}": ("customer_insights", MONTHLY)
        for m in ("regions", "editions", "active_users", "tiers")
    },
    "search/top_keywords_marketplace": ("search", MONTHLY),
    "search/top_keywords_embedded_marketplace": ("search", MONTHLY),
    "search/zero_result_keywords": ("search", MONTHLY),
    "search/appearances_by_app": ("search", WEEKLY),
    "search/keywords_by_app": ("search", "monthly x app"),
    "app_requests/approvals": ("app_requests", MONTHLY),
    "catalog/product_catalog": ("catalog", "snapshots taken (dynamic)"),
    "partner_metrics/installs_by_parent_software_version": ("partner_metrics", "weekly (Monday)"),
    "partner_metrics/installs_by_major_version": ("partner_metrics", "weekly (Monday)"),
    "partner_metrics/installs_by_minor_version": ("partner_metrics", "weekly (Monday)"),
    "partner_metrics/gmv": ("partner_metrics", MONTHLY),
    "partner_metrics/recurring_revenue": ("partner_metrics", MONTHLY),
    "listings/apps": ("listings", None),
    "sales/transactions": ("sales", DAILY),
    "licenses/licenses": ("licenses", DAILY),
    "licenses/current": ("licenses", None),
    "marketing/attribution": ("marketing", DAILY),
    # Derived in the warehouse from the raw tables (marketplace_assets/metrics/).
    "metrics/revenue_monthly": ("metrics", MONTHLY),
    "metrics/mrr_monthly": ("metrics", MONTHLY),
    "metrics/active_licenses_daily": ("metrics", DAILY),
    "metrics/trial_conversion_monthly": ("metrics", MONTHLY),
}
LIVE_ENV = {
    "MARKETPLACE_DEVELOPER_ID": "dev-live",
    "MARKETPLACE_EMAIL": "someone@example.com",
    "MARKETPLACE_API_TOKEN": "live-Token-ABCDEF123456",
}


def _cadence(asset: dg.AssetsDefinition) -> str | None:
    partitions = asset.partitions_def
    if partitions is None:
        return None
    if isinstance(partitions, dg.MultiPartitionsDefinition):
        return "monthly x app"
    if isinstance(partitions, dg.DynamicPartitionsDefinition):
        assert partitions.name == "catalog_snapshots"
        return "snapshots taken (dynamic)"
    crons = {"0 0 * * *": DAILY, "0 0 * * 0": WEEKLY, "0 0 * * 1": "weekly (Monday)", "0 0 1 * *": MONTHLY}
    return crons[partitions.cron_schedule]


def test_sandbox_definitions_with_no_env_vars(clean_env) -> None:
    settings = load_settings()
    assert settings.is_sandbox and settings.warehouse_location == "data/sandbox.duckdb"
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    found = {}
    for key in graph.get_all_asset_keys():
        asset = graph.get(key).assets_def
        found[key.to_user_string()] = (asset.group_names_by_key[key], _cadence(asset))
        description = asset.descriptions_by_key[key]
        # A metric calls no endpoint: its description names the raw assets it reads instead.
        source = "**Reads** `" if key.path[0] == "metrics" else "/rest/3/"
        assert "Sandbox mode" in description and source in description
        assert asset.metadata_by_key[key]["source"] == "sandbox"
        if asset.partitions_def is not None and key.path[0] != "catalog":
            # The catalog snapshot is the exception: the API serves one day at a time.
            assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    assert found == EXPECTED
    weekly = graph.get(dg.AssetKey(["evaluations", "by_hosting"])).assets_def.partitions_def
    # Weeks start on Sunday, as the API dates weekly elements.
    assert weekly.get_first_partition_key() == "2024-01-07"


def test_live_definitions_bind_secrets_through_env_vars(clean_env) -> None:
    for name, value in LIVE_ENV.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert not settings.is_sandbox and settings.warehouse_location == "data/marketplace.duckdb"
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    resource = defs.resources["marketplace"]
    assert resource.sandbox is False
    # The UI shows resource config; it must show the variable's name, not the token.
    assert LIVE_ENV["MARKETPLACE_API_TOKEN"] not in repr(resource)
    assert "MARKETPLACE_API_TOKEN" in repr(resource)


def test_the_warehouse_password_is_bound_to_its_variable(clean_env) -> None:
    for name, value in LIVE_ENV.items():
        clean_env.setenv(name, value)
    clean_env.setenv("MARKETPLACE_WAREHOUSE", "postgresql://writer@127.0.0.1:5432/warehouse")
    clean_env.setenv("MARKETPLACE_WAREHOUSE_PASSWORD", "pg-Secret-271828")
    defs = build_definitions(load_settings())
    dg.Definitions.validate_loadable(defs)
    for name in ("warehouse", "warehouse_store"):
        shown = repr(defs.resources[name])
        assert "pg-Secret-271828" not in shown and "MARKETPLACE_WAREHOUSE_PASSWORD" in shown
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert "Sandbox" not in graph.get(key).assets_def.descriptions_by_key[key]


def test_live_mode_without_credentials_is_refused(clean_env) -> None:
    clean_env.setenv("MARKETPLACE_SANDBOX", "0")
    with pytest.raises(
        ConfigurationError, match="MARKETPLACE_DEVELOPER_ID, MARKETPLACE_EMAIL, MARKETPLACE_API_TOKEN"
    ):
        load_settings()


def test_bad_start_date_names_the_variable(clean_env) -> None:
    clean_env.setenv("MARKETPLACE_START_DATE", "01/02/2024")
    with pytest.raises(ConfigurationError, match=r"MARKETPLACE_START_DATE='01/02/2024'.*YYYY-MM-DD"):
        load_settings()


def test_sandbox_flag_wins_over_a_token(clean_env) -> None:
    clean_env.setenv("MARKETPLACE_API_TOKEN", "x" * 12)
    clean_env.setenv("MARKETPLACE_SANDBOX", "1")
    assert load_settings().is_sandbox


@pytest.mark.parametrize("env", [{}, LIVE_ENV], ids=["sandbox", "live"])
def test_definitions_module_imports_in_a_fresh_process(env: dict[str, str], tmp_path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from marketplace_assets.definitions import defs; print(len(list(defs.assets)))",
        ],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(EXPECTED))


@pytest.mark.parametrize(
    ("asset", "key_words", "first"),
    [
        ("evaluations/by_hosting", "the Sunday that starts the week", "2024-01-07"),  # 2024-01-01 is a Monday
        ("sales/transactions", "the day", "2024-01-01"),
        ("benchmarks/churn", "the 1st of the month", "2024-01-01"),
        ("partner_metrics/installs_by_major_version", "the Monday that starts the week", "2024-01-01"),
        ("search/keywords_by_app", "the 1st of the month", "2024-01-01"),
    ],
)
def test_descriptions_say_what_a_partition_key_is_and_the_first_one(
    clean_env, asset: str, key_words: str, first: str
) -> None:
    clean_env.setenv("MARKETPLACE_START_DATE", "2024-01-01")
    defs = build_definitions(load_settings())
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == asset)
    assert f"Partition key: {key_words} (YYYY-MM-DD); the first is {first}." in (spec.description or "")
    partitions = spec.partitions_def
    assert partitions is not None
    first_key = (
        partitions.get_partition_keys()[0]
        if not isinstance(partitions, dg.MultiPartitionsDefinition)
        else (partitions.time_window_partitions_def.get_first_partition_key())
    )
    assert first_key == first, "the description names the key Dagster really starts at"
