"""What the UI shows, read from the GraphQL its pages query (issue 13): the points scripts/ui_tour.py
screenshots in a browser, kept as assertions so CI needs no browser.

- an old backfill's partitions each carry their own figures and none of the run's; the run's facts and
  a table of every partition's figures are on its last partition, the latest materialization;
- checks are labelled blocking exactly as they behave;
- the catalog's snapshots are dynamic partitions: none missing before a snapshot is taken;
- partitioned assets say what their keys are and which is the first.

That `licenses/current` refreshes by an automation sensor on by default is asserted, with each asset's
schedule or sensor, checks and freshness policy, in test_e2e_dagster_dev.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from marketplace_assets.checks import DATES, KEYS_PRESENT, UNIQUE
from marketplace_assets_tests.conftest import SharedInstance

pytestmark = pytest.mark.e2e

TRANSACTIONS = ["sales", "transactions"]
# Old days, outside the 120 partitions the UI plots. Other tests of the shared instance may write them
# too (a quarter's backfill does): the assertions read only this test's own run's events.
OLD_DAYS = ["2025-01-13", "2025-01-14", "2025-01-15"]
RUN_FACTS = {
    "api_requests",
    "rows_in_export",
    "export_id",
    "completeness",
    "partition_scope",
    "rows_replaced",
}

MATERIALIZATIONS = """query($path: [String!]!, $partitions: [String!]) {
  assetNodes(assetKeys: [{path: $path}]) {
    assetMaterializations(partitions: $partitions) {
      runId partition timestamp
      metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on FloatMetadataEntry { floatValue }
        ... on MarkdownMetadataEntry { mdStr }
        ... on TextMetadataEntry { text }
      }
    }
  }
}"""

ASSETS = """query {
  assetNodes {
    assetKey { path }
    description
    partitionDefinition { type dimensionTypes { type dynamicPartitionsDefinitionName } }
    partitionStats { numMaterialized numPartitions numFailed }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
}"""


def _entries(event: dict[str, Any]) -> dict[str, Any]:
    return {
        m["label"]: next((m[k] for k in ("intValue", "floatValue", "mdStr", "text") if k in m), None)
        for m in event["metadataEntries"]
    }


def _markdown_rows(markdown: str) -> list[dict[str, str]]:
    """The body rows of a markdown table, as {header: cell}."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[2:]
    ]


@pytest.fixture(scope="module")
def nodes(shared_dev: SharedInstance) -> dict[str, dict[str, Any]]:
    return {"/".join(n["assetKey"]["path"]): n for n in shared_dev.dev.graphql(ASSETS)["assetNodes"]}


def test_an_old_backfill_plots_per_partition_figures_and_summarizes_the_run_once(
    shared_dev: SharedInstance,
) -> None:
    dev = shared_dev.dev
    backfill = dev.launch_backfill([TRANSACTIONS], OLD_DAYS)
    assert dev.wait_for_backfill(backfill) == "COMPLETED_SUCCESS", dev.log_tail()
    [run] = dev.runs({"dagster/backfill": backfill})
    found = dev.graphql(MATERIALIZATIONS, {"path": TRANSACTIONS, "partitions": OLD_DAYS})
    events = [e for e in found["assetNodes"][0]["assetMaterializations"] if e["runId"] == run["runId"]]
    by_day = {e["partition"]: _entries(e) for e in events}
    assert sorted(by_day) == OLD_DAYS
    # The plots' points: each day its own rows and amounts, and no run-level figure drawn as a flat line.
    for day, metadata in by_day.items():
        assert not RUN_FACTS & set(metadata), f"{day} carries the run's facts {RUN_FACTS & set(metadata)}"
        assert metadata["source"] == "live"
    rows = {day: metadata["dagster/row_count"] for day, metadata in by_day.items()}
    assert len(set(rows.values())) > 1, f"the days should differ for the test to mean anything: {rows}"
    # The run's summary and the table of every day's figures: once, on the last day, the newest event.
    newest = max(events, key=lambda e: float(e["timestamp"]))
    assert newest["partition"] == OLD_DAYS[-1]
    assert [day for day, metadata in by_day.items() if "run_summary" in metadata] == [OLD_DAYS[-1]]
    last = by_day[OLD_DAYS[-1]]
    assert f"{len(OLD_DAYS)} partitions, {sum(rows.values()):,} rows" in last["run_summary"]
    assert "| api_requests |" in last["run_summary"] and "| rows_in_export |" in last["run_summary"]
    table = {row["partition"]: row for row in _markdown_rows(last["figures_by_partition"])}
    for day in OLD_DAYS:
        assert table[day]["rows"] == f"{rows[day]:,}"
        assert table[day]["vendor_amount"] == f"{by_day[day]['vendor_amount']:,.2f}"
    assert last["preview"].startswith("|")


def test_checks_are_labelled_blocking_as_they_behave(nodes: dict[str, dict[str, Any]]) -> None:
    checks = {c["name"]: c["blocking"] for c in nodes["sales/transactions"]["assetChecksOrError"]["checks"]}
    # A failed dates_in_partition or identity_keys_present stops the write; repeated keys only warn.
    assert checks[DATES] is True and checks[KEYS_PRESENT] is True and checks[UNIQUE] is False
    for path, node in nodes.items():
        labelled = {c["name"]: c["blocking"] for c in node["assetChecksOrError"]["checks"]}
        if DATES in labelled:
            assert labelled[DATES] is True, (
                f"{path}: dates_in_partition blocks the write but is not labelled so"
            )


def test_the_catalog_has_a_partition_per_snapshot_taken_and_none_missing(
    nodes: dict[str, dict[str, Any]],
) -> None:
    catalog = nodes["catalog/product_catalog"]
    assert catalog["partitionDefinition"] == {
        "type": "DYNAMIC",
        "dimensionTypes": [{"type": "DYNAMIC", "dynamicPartitionsDefinitionName": "catalog_snapshots"}],
    }
    stats = catalog["partitionStats"]
    # The UI's "missing" is numPartitions - numMaterialized - numFailed: no snapshot that cannot be fetched.
    assert stats["numPartitions"] - stats["numMaterialized"] - stats["numFailed"] <= 1, stats


def test_partitioned_assets_say_what_their_keys_are(nodes: dict[str, dict[str, Any]]) -> None:
    assert (
        "Partition key: the Sunday that starts the week (YYYY-MM-DD)"
        in nodes["evaluations/by_hosting"]["description"]
    )
    assert "Partition key: the day (YYYY-MM-DD)" in nodes["sales/transactions"]["description"]
    for path, node in nodes.items():
        if node["partitionDefinition"] is not None and node["partitionDefinition"]["type"] == "TIME_WINDOW":
            assert "Partition key:" in node["description"] and "the first is" in node["description"], path
