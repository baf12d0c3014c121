"""The fault matrix: every way the service (or a proxy in front of it) can answer badly, over loopback
HTTP against the sandbox server, each with the outcome, the message and the warehouse it must leave.

Each case first loads the same partitions cleanly and takes the warehouse's fingerprint (row count and a
checksum of the partitions' rows), then loads them again with the fault injected. A failed run must leave
the fingerprint exactly as it was; a recovered run must store exactly the clean rows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest

from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.dagster_conventions import RANGE_END_TAG, RANGE_START_TAG
from marketplace_assets.definitions import build_assets
from marketplace_assets.partitions import CATALOG_SNAPSHOTS
from marketplace_assets.sandbox import FaultRule, Sandbox, serve
from marketplace_assets.sandbox.exports import configure_exports
from marketplace_assets.sandbox.object_store import set_catalog_date
from marketplace_assets.settings import MarketplaceSettings
from marketplace_assets_tests.resources import asset_resources

DEV, EMAIL, TOKEN = "fault-dev", "fault@example.com", "fault-Token-5551234567"
BASIC = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
SNAPSHOT = date(2025, 2, 10)
ASSETS = {
    a.key.to_user_string(): a
    for a in build_assets(
        MarketplaceSettings(developer_id=DEV, email=EMAIL, api_token=TOKEN, start_date="2025-01-01")
    )
}
TABLES = {
    "feedback/details": ("feedback.details", "date"),
    "sales/transactions": ("sales.transactions", "purchase_details_sale_date"),
    "marketing/attribution": ("marketing.attribution", "date"),
    "evaluations/by_hosting": ("evaluations.by_hosting", "date"),
    "catalog/product_catalog": ("catalog.product_catalog", "snapshot_date"),
}
DOWNLOAD = r"/async/export/[^/]+$"  # an export file, not its start or status
# A time series whose element count arrives as text (JSON type drift).
DRIFTED_SERIES = json.dumps(
    {
        "total": {"series": [{"name": "Cloud", "elements": [{"date": "2025-02-02", "count": "n/a"}]}]},
        "addons": [],
    }
)


@dataclass(frozen=True)
class Case:
    asset: str
    start: str
    end: str
    faults: list[dict[str, Any]]
    recovers: bool
    message: tuple[str, ...] = ()
    exports: dict[str, Any] = field(default_factory=dict)
    marketplace: dict[str, Any] = field(default_factory=dict)
    check: Callable[[dg.ExecuteInProcessResult, pl.DataFrame], None] | None = None


def _dated_by_evaluation_start(result: dg.ExecuteInProcessResult, rows: pl.DataFrame) -> None:
    materializations = result.asset_materializations_for_node("marketing__attribution")
    assert materializations, "one materialization per partition"
    # How the records were dated is the run's fact: in the summary on its last partition, once.
    summary = materializations[-1].metadata["run_summary"].value
    assert any(
        line.startswith("| dated_by |") and "evaluation_start_date" in line for line in summary.splitlines()
    )
    assert not any("dated_by" in m.metadata for m in materializations)
    assert "evaluation_start_date" in rows.columns and "date" in rows.columns
    assert rows.filter(pl.col("date") != pl.col("evaluation_start_date")).height == 0


CASES: dict[str, Case] = {
    "503_then_ok": Case(
        "feedback/details", "2025-01-01", "2025-03-31",
        [{"path": "feedback/details", "kind": "status", "status": 503, "times": 2}], recovers=True,
    ),
    "dropped_download_then_ok": Case(
        "sales/transactions", "2025-02-01", "2025-02-07",
        [{"path": DOWNLOAD, "kind": "drop", "times": 1}], recovers=True,
    ),
    "short_page": Case(
        "feedback/details", "2025-01-01", "2025-03-31",
        [{"path": "feedback/details", "kind": "short_page", "fraction": 0.5, "times": 1}], recovers=False,
        message=("feedback/details", "partitions 2025-01-01..2025-03-31", "totalCount", "Expected"),
    ),
    "short_export": Case(
        "sales/transactions", "2025-02-01", "2025-02-07",
        [{"path": DOWNLOAD, "kind": "short_file", "fraction": 0.6}], recovers=False,
        message=("sales/transactions", "partitions 2025-02-01..2025-02-07", "fewer records", "Expected"),
    ),
    "export_cut_mid_record": Case(
        "sales/transactions", "2025-02-01", "2025-02-07",
        [{"path": DOWNLOAD, "kind": "cut_record", "fraction": 0.5}], recovers=False,
        message=("sales/transactions", "partitions 2025-02-01..2025-02-07", "truncated"),
    ),
    "attribution_cut_mid_record": Case(
        "marketing/attribution", "2025-02-01", "2025-02-07",
        [{"path": DOWNLOAD, "kind": "cut_record", "fraction": 0.7}], recovers=False,
        message=("marketing/attribution", "truncated"),
    ),
    "catalog_short_file": Case(
        "catalog/product_catalog", SNAPSHOT.isoformat(), SNAPSHOT.isoformat(),
        [{"path": "_objects", "kind": "short_file", "fraction": 0.5}], recovers=False,
        message=("catalog/product_catalog", f"partition {SNAPSHOT}", "truncated", "ETag"),
    ),
    "catalog_cut_mid_record": Case(
        "catalog/product_catalog", SNAPSHOT.isoformat(), SNAPSHOT.isoformat(),
        [{"path": "_objects", "kind": "cut_record", "fraction": 0.5}], recovers=False,
        message=("catalog/product_catalog", "truncated"),
    ),
    "headers_echoed_in_400": Case(
        "feedback/details", "2025-01-01", "2025-01-31",
        [{"path": "feedback/details", "kind": "echo_headers", "status": 400}], recovers=False,
        message=("feedback/details", "partitions 2025-01-01..2025-01-31", "HTTP 400", "Authorization: ***"),
    ),
    "html_200": Case(
        "evaluations/by_hosting", "2025-02-02", "2025-02-15",
        [{"path": "evaluations/hosting", "kind": "html"}], recovers=False,
        message=("evaluations/by_hosting", "HTML", "proxy", "<!DOCTYPE html"),
    ),
    "type_drift_csv_export": Case(
        "sales/transactions", "2025-02-01", "2025-02-07",
        [{"path": DOWNLOAD, "kind": "type_drift", "field": "purchaseDetails.vendorAmount", "record": -1}],
        recovers=False,
        message=("sales/transactions", "purchase_details_vendor_amount", "n/a", "expected", "received"),
    ),
    "type_drift_json": Case(
        "evaluations/by_hosting", "2025-02-02", "2025-02-08",
        [{"path": "evaluations/hosting", "kind": "malformed", "body": DRIFTED_SERIES}], recovers=False,
        message=("evaluations/by_hosting", "'count'", "n/a", "expected a number", "String (text)"),
    ),
    "date_drift_json": Case(
        "feedback/details", "2025-01-01", "2025-01-31",
        [{"path": "feedback/details", "kind": "type_drift", "field": "date", "value": "n/a"}], recovers=False,
        message=("feedback/details", "'date'", "n/a"),
    ),
    "null_identity_key": Case(
        "sales/transactions", "2025-02-01", "2025-02-07",
        [{"path": DOWNLOAD, "kind": "type_drift", "field": "transactionLineItemId", "value": ""}],
        recovers=False,
        message=("sales/transactions", "identity_keys_present", "transaction_line_item_id"),
    ),
    "export_never_completes": Case(
        "sales/transactions", "2025-02-01", "2025-02-07", [], recovers=False,
        exports={"never_complete": True}, marketplace={"export_deadline": 1.5},
        message=("sales/transactions", "did not complete within the deadline", "waited", "export "),
    ),
    "attribution_second_shape": Case(
        "marketing/attribution", "2025-02-01", "2025-02-07", [], recovers=True,
        exports={"attribution_shape": "evaluation"}, check=_dated_by_evaluation_start,
    ),
}  # fmt: skip


@pytest.fixture
def sandbox() -> Sandbox:
    sandbox = Sandbox(developer_id=DEV, email=EMAIL, token=TOKEN)
    configure_exports(sandbox, polls_to_complete=1)
    set_catalog_date(sandbox.world, SNAPSHOT)
    return sandbox


@pytest.fixture
def base_url(sandbox: Sandbox):
    with serve(sandbox, port=0) as url:
        yield url


def load(case: Case, base_url: str, warehouse: Path) -> dg.ExecuteInProcessResult:
    settings = {"max_attempts": 3, "transient_retries": 0, "export_poll_interval": 0.05, **case.marketplace}
    resource = MarketplaceResource(
        developer_id=DEV, email=EMAIL, api_token=TOKEN, base_url=base_url, **settings
    )
    tags = {RANGE_START_TAG: case.start, RANGE_END_TAG: case.end}
    kw: dict[str, Any] = {"partition_key": case.start} if case.start == case.end else {"tags": tags}
    instance = dg.DagsterInstance.ephemeral()
    if ASSETS[case.asset].partitions_def == CATALOG_SNAPSHOTS:
        # The catalog's partitions are the snapshots taken: its sensor adds each before the run.
        instance.add_dynamic_partitions(CATALOG_SNAPSHOTS.name, [case.start])
    return dg.materialize(
        [ASSETS[case.asset]],
        resources=asset_resources(resource, warehouse),
        instance=instance,
        raise_on_error=False,
        **kw,
    )


def partition_rows(warehouse: Path, case: Case) -> pl.DataFrame:
    table, column = TABLES[case.asset]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(
            f"SELECT * FROM {table} WHERE {column} BETWEEN ? AND ?", params=[case.start, case.end]
        ).pl()


def fingerprint(warehouse: Path, case: Case) -> tuple[int, int, str]:
    """(rows in the table, rows in the case's partitions, an MD5 of those rows in a fixed order)."""
    table, column = TABLES[case.asset]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        [(total,)] = con.execute(f"SELECT count(*) FROM {table}").fetchall()
        [(rows, checksum)] = con.execute(
            f"""SELECT count(*),
                md5(coalesce(string_agg(CAST(t AS VARCHAR), chr(10) ORDER BY CAST(t AS VARCHAR)), ''))
            FROM (SELECT * FROM {table} WHERE {column} BETWEEN ? AND ?) AS t""",
            [case.start, case.end],
        ).fetchall()
    return int(total), int(rows), str(checksum)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1, [e.message for e in result.all_events if e.is_failure]
    error = failures[0].step_failure_data.error
    return str(error) if error else ""


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name: str, sandbox: Sandbox, base_url: str, tmp_path: Path) -> None:
    case = CASES[name]
    warehouse = tmp_path / "w.duckdb"
    clean = load(case, base_url, warehouse)
    assert clean.success, "the clean load works before the fault"
    before = fingerprint(warehouse, case)
    assert before[1] > 0, "the clean load stored rows for the case's partitions"

    sandbox.faults.extend(FaultRule.from_dict(f) for f in case.faults)
    if case.exports:
        configure_exports(sandbox, **case.exports)
    result = load(case, base_url, warehouse)

    if case.recovers:
        assert result.success, failure_text(result)
        if case.check is not None:
            case.check(result, partition_rows(warehouse, case))
        else:
            assert fingerprint(warehouse, case) == before, "recovered with exactly the clean rows"
        return
    assert not result.success
    message = failure_text(result)
    for expected in case.message:
        assert expected.lower() in message.lower(), f"{expected!r} not in: {message}"
    assert TOKEN not in message and BASIC not in message
    assert fingerprint(warehouse, case) == before, "a failed run leaves the partitions exactly as they were"
