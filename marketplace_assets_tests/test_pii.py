"""MARKETPLACE_PII: in `hash` and `drop` modes no raw email reaches the warehouse or the event log."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from marketplace_assets.assets.exports import build_export_asset
from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets.definitions import build_assets, pii_policy
from marketplace_assets.pii import PiiPolicy, contact_columns, hash_value
from marketplace_assets.reports.catalog import EXPORT_REPORTS
from marketplace_assets.sandbox.resource import SandboxMarketplaceResource
from marketplace_assets.settings import (
    SANDBOX_DEVELOPER_ID,
    ConfigurationError,
    MarketplaceSettings,
    load_settings,
)
from marketplace_assets_tests.resources import asset_resources

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
SALT = "test-salt-0123456789"
DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
RANGE = {
    RANGE_START_TAG: "2025-02-03",
    RANGE_END_TAG: "2025-02-06",
}
SANDBOX = SandboxMarketplaceResource(developer_id=SANDBOX_DEVELOPER_ID, export_poll_interval=0.2)
SETTINGS = MarketplaceSettings(sandbox=True, start_date="2024-01-01", warehouse="unused")


def _assets() -> list[dg.AssetsDefinition]:
    """Licenses and transactions (the exports) and license events: the reports that carry contacts."""
    exports = [
        build_export_asset(r, start_date=date(2024, 1, 1), sandbox=True)
        for r in EXPORT_REPORTS
        if r.area != "marketing"
    ]
    events = [a for a in build_assets(SETTINGS) if a.key.to_user_string() == "sales/renewal_events"]
    return [*exports, *events]


def _materialize(tmp_path: Path, pii: PiiPolicy) -> tuple[Path, dg.ExecuteInProcessResult]:
    warehouse = tmp_path / f"{pii.mode}.duckdb"
    result = dg.materialize(_assets(), resources=asset_resources(SANDBOX, warehouse, pii), tags=RANGE)
    assert result.success
    return warehouse, result


def _strings(warehouse: Path) -> dict[str, list[str]]:
    """Every distinct string value of every table, by table.column, sorted (DuckDB's DISTINCT has no
    order of its own, so two runs' lists compare equal only when sorted)."""
    values: dict[str, list[str]] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        columns = con.sql(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR'"
        ).fetchall()
        for schema, table, column in columns:
            rows = con.sql(
                f'SELECT DISTINCT "{column}" FROM "{schema}"."{table}" WHERE "{column}" IS NOT NULL '
                "ORDER BY 1"
            )
            values[f"{schema}.{table}.{column}"] = [r[0] for r in rows.fetchall()]
    return values


def _emails_in(values: dict[str, list[str]]) -> dict[str, str]:
    return {name: v for name, vs in values.items() for v in vs if EMAIL.search(v)}


def _event_log_text(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        str(v.value)
        for e in result.get_asset_materialization_events()
        for v in e.materialization.metadata.values()
    )


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    warehouse, _ = _materialize(tmp_path_factory.mktemp("keep"), PiiPolicy())
    return _strings(warehouse)


def test_keep_stores_contacts_as_sent(kept: dict[str, list[str]]) -> None:
    emails = _emails_in(kept)
    # The test below would mean nothing if the reports carried no emails to begin with.
    assert any(name.startswith("sales.transactions.") for name in emails)
    assert any(name.startswith("licenses.licenses.") for name in emails)


def test_hash_leaves_no_raw_email_and_hashes_stably(kept: dict[str, list[str]], tmp_path: Path) -> None:
    warehouse, result = _materialize(tmp_path, PiiPolicy(mode="hash", salt=SALT))
    hashed = _strings(warehouse)
    assert _emails_in(hashed) == {}
    assert not EMAIL.search(_event_log_text(result))
    for column in contact_columns(hashed):
        assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in hashed[column]), column
    # The same contact hashes to the same value in every table and run: still joinable and countable.
    column = "licenses.licenses.contact_details_technical_contact_email"
    assert sorted(hashed[column]) == sorted(hash_value(v, SALT) for v in kept[column])
    # Company, country and region are not personal data: kept as sent.
    assert (
        hashed["licenses.licenses.contact_details_company"]
        == kept["licenses.licenses.contact_details_company"]
    )


def test_drop_leaves_the_contact_columns_out(kept: dict[str, list[str]], tmp_path: Path) -> None:
    warehouse, result = _materialize(tmp_path, PiiPolicy(mode="drop"))
    dropped = _strings(warehouse)
    assert _emails_in(dropped) == {}
    assert not EMAIL.search(_event_log_text(result))
    assert contact_columns(dropped) == []
    assert contact_columns(kept), "keep mode has the columns that drop mode leaves out"
    assert "sales.transactions.customer_details_company" in dropped
    pii = {e.materialization.metadata["pii"].value for e in result.get_asset_materialization_events()}
    assert any(p.startswith("drop: dropped ") for p in pii)


def test_contact_columns_are_names_emails_phones_and_addresses_not_organisations() -> None:
    columns = [
        "contact_details_technical_contact_email",
        "contact_details_billing_contact_name",
        "contact_details_billing_contact_phone",
        "contact_details_billing_contact_address1",
        "contact_details_technical_contact_postcode",
        "customer_details_billing_contact_email",
        "partner_details_billing_contact_name",
        "license_details_contact_details_technical_contact_city",
        "contact_details_company",
        "contact_details_country",
        "contact_details_region",
        "addon_name",
        "partner_details_partner_name",
    ]
    assert contact_columns(columns) == columns[:8]


def test_hash_mode_needs_a_salt_and_never_shows_it(clean_env: pytest.MonkeyPatch) -> None:
    monkeypatch = clean_env
    monkeypatch.setenv("MARKETPLACE_PII", "hash")
    with pytest.raises(ConfigurationError, match="MARKETPLACE_PII_SALT"):
        load_settings()
    with pytest.raises(dg.Failure, match="MARKETPLACE_PII_SALT"):
        PiiPolicy(mode="hash").apply(__import__("polars").DataFrame({"contact_email": ["a@b.example"]}))
    monkeypatch.setenv("MARKETPLACE_PII_SALT", SALT)
    settings = load_settings()
    assert settings.pii == "hash"
    # The resource is bound to the variable, so the UI and run config show its name, never the salt.
    bound = pii_policy(settings)
    assert SALT not in repr(bound)
    assert isinstance(bound._get_non_default_public_field_values()["salt"], dg.EnvVar)
    monkeypatch.setenv("MARKETPLACE_PII", "scramble")
    with pytest.raises(ConfigurationError, match="MARKETPLACE_PII") as error:
        load_settings()
    assert SALT not in str(error.value)
