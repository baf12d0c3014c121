"""The pieces behind the fault matrix, one by one: redaction, HTML answers, export reconciliation,
duplicate handling, type drift, widened columns, step retries for transient failures only, and the
lock-wait messages.

No `from __future__ import annotations`: Dagster reads the toy assets' `context` annotation when
they are defined.
"""

import base64
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest

from marketplace_assets.api.client import MarketplaceClient, RetrySettings
from marketplace_assets.api.errors import (
    ConflictingRecordsError,
    IncompleteDataError,
    MarketplaceApiError,
    TypeDriftError,
    UnexpectedContentError,
    redact,
    secret_forms,
)
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.assets.common import MarketplaceAsset
from marketplace_assets.field_types import check_field_types
from marketplace_assets.pii import PiiPolicy
from marketplace_assets.reports.completeness import collapse_duplicates, reconcile
from marketplace_assets.reports.export_files import read_csv_export, read_json_export
from marketplace_assets.sandbox import FaultRule, Sandbox, serve
from marketplace_assets.sandbox.resource import SandboxMarketplaceResource
from marketplace_assets.warehouse.base import TableRef
from marketplace_assets.warehouse.duckdb import DuckDBWarehouse
from marketplace_assets_tests.resources import asset_resources
from marketplace_assets_tests.test_warehouse import HOLD_LOCK

EMAIL, TOKEN = "ops@example.com", "s3cr3t-Token/+=42"


# -- credentials ---------------------------------------------------------------------------------------
def test_redaction_covers_every_form_of_the_credentials() -> None:
    pair = f"{EMAIL}:{TOKEN}".encode()
    basic = base64.b64encode(pair).decode()
    text = (
        f"token={TOKEN} url={TOKEN.replace('/', '%2F').replace('+', '%2B').replace('=', '%3D')} "
        f"b64={basic} unpadded={basic.rstrip('=')} urlsafe={base64.urlsafe_b64encode(pair).decode()} "
        'headers: {"Authorization": "Basic c29tZW9uZTplbHNl", "X-Other": "kept"} '
        "Proxy-Authorization: Bearer abc.def.ghi; next bearer eyJhbGciOiJIUzI1NiJ9.e30 done"
    )
    masked = redact(text, secret_forms(EMAIL, TOKEN))
    assert TOKEN not in masked and basic not in masked and basic.rstrip("=") not in masked
    assert (
        "c29tZW9uZTplbHNl" not in masked
        and "abc.def.ghi" not in masked
        and "eyJhbGciOiJIUzI1NiJ9" not in masked
    )
    assert '"X-Other": "kept"' in masked and "next" in masked and masked.endswith("done")


def test_service_messages_keep_one_period_and_lose_the_credentials() -> None:
    error = MarketplaceApiError("GET https://x/rest/3/y", 401, "Client must be authenticated.")
    assert "authenticated. The credentials were refused" in str(error) and ".." not in str(error)


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(developer_id="d", email=EMAIL, token=TOKEN)


def client_for(sandbox: Sandbox) -> MarketplaceClient:
    return MarketplaceClient(
        "https://sandbox.invalid/marketplace", EMAIL, TOKEN, transport=sandbox.transport(),
        retry=RetrySettings(max_attempts=2, backoff_initial=0.0), sleep=lambda s: None,
    )  # fmt: skip


def test_an_html_page_with_status_200_is_named_and_not_retried(sandbox: Sandbox) -> None:
    sandbox.faults.add(FaultRule(path="feedback/details", kind="html"))
    with client_for(sandbox) as client, pytest.raises(UnexpectedContentError) as caught:
        client.get_json("reporting/developer-space/d/feedback/details")
    message = str(caught.value)
    assert "HTTP 200 with HTML" in message and "proxy" in message and "<!DOCTYPE html" in message
    assert "5xx" not in message and "overloaded" not in message
    assert sandbox.stats()["requests"] == 1, "an HTML page is not retried"


def test_a_short_page_is_lost_data_with_both_counts(sandbox: Sandbox) -> None:
    params = {"startDate": "2025-01-01", "endDate": "2025-03-31"}
    with client_for(sandbox) as client:
        complete = client.get_offset_paged("reporting/developer-space/d/feedback/details", params, "feedback")
    sandbox.faults.add(FaultRule(path="feedback/details", kind="short_page", fraction=0.5, times=1))
    with client_for(sandbox) as client, pytest.raises(IncompleteDataError) as caught:
        client.get_offset_paged("reporting/developer-space/d/feedback/details", params, "feedback")
    assert caught.value.expected == len(complete) and caught.value.received is not None
    assert caught.value.received < len(complete)


# -- exports -------------------------------------------------------------------------------------------
def test_reconcile_accepts_records_that_left_the_filter_and_fails_on_loss() -> None:
    warnings: list[str] = []
    assert "12 records" in reconcile("sales/transactions", "e1", 12, 12, lambda: 12, warnings.append)
    # The count fell from 12 to 10 during the export and the file holds 10: records left the filter.
    assert "fell from 12 to 10" in reconcile("licenses/licenses", "e2", 10, 12, lambda: 10, warnings.append)
    assert warnings and "left the filter" in warnings[0]
    with pytest.raises(IncompleteDataError) as caught:
        reconcile("sales/transactions", "e3", 7, 12, lambda: 12, warnings.append)
    assert (caught.value.expected, caught.value.received) == (12, 7) and "export e3" in str(caught.value)
    assert "not verifiable" in reconcile(
        "marketing/attribution", "e4", 5, None, lambda: None, warnings.append
    )


def test_identical_duplicates_collapse_and_conflicting_ones_fail() -> None:
    frame = pl.DataFrame({"id": ["a", "a", "b"], "amount": [1.5, 1.5, 2.0], "tags": [["x"], ["x"], []]})
    warnings: list[str] = []
    collapsed = collapse_duplicates(frame, "sales/transactions", ("id",), warnings.append)
    assert collapsed.sort("id")["id"].to_list() == ["a", "b"] and "dropped 1 row(s)" in warnings[0]
    conflicting = frame.with_columns(pl.Series("amount", [1.5, 9.0, 2.0]))
    with pytest.raises(ConflictingRecordsError, match=r"share a id .* differ in amount"):
        collapse_duplicates(conflicting, "sales/transactions", ("id",), warnings.append)


@pytest.mark.parametrize(
    ("body", "fmt"),
    [("a,b\n1,2\n3,", "csv"), ('a,b\n1,2\n3,"unterminated', "csv"), ('[{"a": 1}, {"a": 2', "json")],
)
def test_a_file_whose_last_record_is_cut_is_truncated(body: str, fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"export.{fmt}"
    path.write_text(body)
    reader = read_csv_export if fmt == "csv" else read_json_export
    with pytest.raises(IncompleteDataError, match="truncated: its last record is cut off"):
        reader(path, "sales/transactions")


def test_a_value_that_does_not_fit_the_column_type_inferred_from_earlier_rows_is_type_drift(
    tmp_path: Path,
) -> None:
    path = tmp_path / "export.csv"
    path.write_text("purchaseDetails.vendorAmount\n" + "1.5\n" * 10_500 + "n/a\n")
    with pytest.raises(TypeDriftError) as caught:
        read_csv_export(path, "sales/transactions")
    assert caught.value.field == "purchase_details_vendor_amount" and "'n/a'" in str(caught.value)


# -- type drift and widening ---------------------------------------------------------------------------
def test_type_drift_names_report_field_types_and_an_example() -> None:
    frame = pl.DataFrame({"amount": ["12.5", "n/a"], "day": ["2025-01-01", "x"], "note": [1, 2]})
    with pytest.raises(TypeDriftError) as caught:
        check_field_types(frame, "sales/transactions", {"amount": "DOUBLE"})
    assert str(caught.value).startswith("Report sales/transactions: field 'amount' changed type")
    assert "expected DOUBLE (number), received String (text) (e.g. 'n/a')" in str(caught.value)
    with pytest.raises(TypeDriftError, match="field 'amount'"):
        check_field_types(frame, "r", {}, numeric_columns=("amount",))  # declared numeric: a first load too
    with pytest.raises(TypeDriftError, match=r"field 'day'.*expected DATE"):
        check_field_types(frame.drop("amount"), "r", {"day": "DATE"})
    # Text columns take anything; integers fit a DOUBLE column; an all-null column fits any type.
    check_field_types(frame.select("note"), "r", {"note": "VARCHAR"})
    check_field_types(pl.DataFrame({"n": [1]}), "r", {"n": "DOUBLE"})
    check_field_types(pl.DataFrame({"n": [None]}), "r", {"n": "DOUBLE"})


def test_fractions_widen_an_integer_column_instead_of_being_rounded(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    table = TableRef("sales", "amounts")
    warehouse.write(table, pl.DataFrame({"id": [1], "amount": [100]}), None)
    result = warehouse.merge(table, pl.DataFrame({"id": [2], "amount": [12.5]}), ["id"])
    assert result.widened_columns == ["amount"] and result.columns["amount"] == "DOUBLE"
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT id, amount FROM sales.amounts ORDER BY id").fetchall() == [
            (1, 100.0),
            (2, 12.5),
        ]


# -- step retries: transient only ----------------------------------------------------------------------
def _feedback_asset() -> dg.AssetsDefinition:
    shape = MarketplaceAsset(dg.AssetKey(["toy", "feedback"]))

    @shape.define(description="toy", sandbox=False)
    def toy(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource, pii: PiiPolicy
    ) -> Iterator[Any]:
        with shape.api_run(context, marketplace) as run:
            run.client.get_json("reporting/developer-space/d/feedback/details")
            yield from shape.finish(context, run.output(pl.DataFrame({"id": [1]})), pii)

    return toy


@pytest.mark.parametrize(("status", "succeeds", "attempts"), [(503, True, 2), (400, False, 1)])
def test_only_an_unavailable_api_is_tried_again(
    sandbox: Sandbox, tmp_path: Path, status: int, succeeds: bool, attempts: int
) -> None:
    # The client's own attempts (2) all fail, once; a transient failure gets one more step attempt.
    sandbox.faults.add(FaultRule(path="feedback/details", kind="status", status=status, times=2))
    with serve(sandbox, port=0) as url:
        resource = MarketplaceResource(
            developer_id="d", email=EMAIL, api_token=TOKEN, base_url=url, max_attempts=2,
            transient_retries=1, transient_retry_wait=0.0,
        )  # fmt: skip
        result = dg.materialize(
            [_feedback_asset()],
            resources=asset_resources(resource, tmp_path / "w.duckdb"),
            raise_on_error=False,
        )
    assert result.success is succeeds
    starts = [e for e in result.all_events if e.event_type_value == "STEP_START"]
    restarts = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert len(starts) + len(restarts) == attempts
    if not succeeds:
        assert "HTTP 400" in str(result.failure_data_for_node("toy__feedback").error)


# -- waiting for the lock ------------------------------------------------------------------------------


def test_a_write_waiting_for_the_lock_says_so_every_ten_seconds_with_report_and_partitions(
    tmp_path: Path,
) -> None:
    warehouse = tmp_path / "w.duckdb"

    shape = MarketplaceAsset(
        dg.AssetKey(["toy", "events"]),
        partitions_def=dg.DailyPartitionsDefinition(start_date="2025-01-01"),
        partition_expr="date",
    )

    @shape.define(description="toy", sandbox=True)
    def toy(
        context: dg.AssetExecutionContext, marketplace: MarketplaceResource, pii: PiiPolicy
    ) -> Iterator[Any]:
        with shape.api_run(context, marketplace) as run:
            frame = pl.DataFrame({"date": [date(2025, 2, 3)], "n": [1]})
            yield from shape.finish(context, run.output(frame), pii)

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(warehouse), "15"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        resources = asset_resources(SandboxMarketplaceResource(developer_id="d"), warehouse)
        instance = dg.DagsterInstance.ephemeral()
        result = dg.materialize([toy], resources=resources, partition_key="2025-02-03", instance=instance)
    finally:
        holder.wait(timeout=60)
    assert result.success
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    waits = [m for m in logs if "waiting for the warehouse's" in m]
    assert len(waits) == 1 and "toy/events" in waits[0] and "2025-02-03" in waits[0]


def test_transport_verification_catches_a_body_shorter_than_its_etag(sandbox: Sandbox) -> None:
    # The catalog object's ETag is its MD5: half the bytes with a matching Content-Length still fail.
    sandbox.faults.add(FaultRule(path="_objects", kind="short_file", fraction=0.5))
    with client_for(sandbox) as client:
        latest = client.get_json("reporting/product-catalog/latest")
        with pytest.raises(Exception, match=r"MD5 .* differs from the object's ETag"):
            client.download(latest["presignedUrl"], authenticated=False)
