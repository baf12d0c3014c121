"""The metrics' automation on the project's own definitions, evaluated tick by tick with Dagster's
`evaluate_automation_conditions` on a real (ephemeral) instance: which metric partitions and which
reconciliation checks a tick requests after raw, Atlassian and metric materializations. The sensor that
evaluates them in a deployment (`metrics_after_raw_inputs`) targets these same entities; the daemon running
it is exercised in test_e2e_metrics.py."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest

from marketplace_assets.definitions import build_definitions
from marketplace_assets.metrics.assets import AUTOMATION_SENSOR
from marketplace_assets.metrics.catalog import METRICS
from marketplace_assets.settings import load_settings

MRR = dg.AssetKey(["metrics", "mrr_monthly"])
RECURRING_REVENUE = dg.AssetKey(["partner_metrics", "recurring_revenue"])
TRANSACTIONS = dg.AssetKey(["sales", "transactions"])
MRR_CHECK = dg.AssetCheckKey(MRR, "reconciles_with_recurring_revenue")
CHECKS = {dg.AssetCheckKey(m.key, r.name) for m in METRICS for r in m.reconciliations}
# Dagster's own evaluate_automation_conditions passes a beta parameter to itself; it is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Parameter `include_sources` of function `AssetSelection.all`")


@pytest.fixture
def defs(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> dg.Definitions:
    monkeypatch.setenv("MARKETPLACE_SANDBOX", "true")
    monkeypatch.chdir(str(tmp_path))  # no stray .env file
    return build_definitions(load_settings())


class Ticks:
    """Successive automation ticks on one instance, each returning the entities it requested."""

    def __init__(self, defs: dg.Definitions) -> None:
        self.defs = defs
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: object = None

    def tick(self) -> set[dg.AssetKey | dg.AssetCheckKey]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs,
            instance=self.instance,
            cursor=self.cursor,  # type: ignore[arg-type]
        )
        self.cursor = result.cursor
        return {r.key for r in result.results if r.true_subset.size}

    def materialized(self, key: dg.AssetKey, latest: int = 1) -> None:
        """Materializations of the asset's `latest` partitions, recorded without a run."""
        partitions = self.defs.resolve_asset_graph().get(key).partitions_def
        assert partitions is not None
        for partition in partitions.get_partition_keys()[-latest:]:
            self.instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))


@pytest.fixture
def ticks(defs: dg.Definitions) -> Iterator[Ticks]:
    yield Ticks(defs)


def test_the_sensor_targets_every_metric_and_reconciliation_check(defs: dg.Definitions) -> None:
    sensor = defs.resolve_sensor_def(AUTOMATION_SENSOR)
    graph = defs.resolve_asset_graph()
    selection = sensor.asset_selection
    assert selection is not None
    assert selection.resolve(graph) == {m.key for m in METRICS}
    assert selection.resolve_checks(graph) >= CHECKS


def test_a_refresh_of_atlassians_side_alone_reruns_its_check_once(ticks: Ticks) -> None:
    assert not ticks.tick() & CHECKS, "nothing has been materialized"
    ticks.materialized(RECURRING_REVENUE)
    assert ticks.tick() & CHECKS == {MRR_CHECK}
    assert not ticks.tick() & CHECKS, "handled: not requested again"


def test_a_metric_refreshed_without_its_check_is_reconciled_on_the_next_tick(ticks: Ticks) -> None:
    ticks.tick()
    ticks.materialized(MRR)
    assert ticks.tick() & CHECKS == {MRR_CHECK}
    assert not ticks.tick() & CHECKS


def test_a_raw_refresh_alone_does_not_run_the_check(ticks: Ticks) -> None:
    """sales/transactions is read by the MRR check too, but its refresh leads to the metric's (whose
    materialization then triggers the check): checked alone, the check would compare a stale metric."""
    ticks.tick()
    ticks.materialized(TRANSACTIONS)
    assert not ticks.tick() & CHECKS


def test_the_check_waits_for_the_metric_requested_on_the_same_tick(ticks: Ticks) -> None:
    """A refresh of transactions requests MRR (its recent days are all loaded); the check, whose trigger
    that request sets, is not requested beside it (it would compare the metric before its run), but once
    the metric's run has written it."""
    ticks.tick()
    ticks.materialized(TRANSACTIONS, latest=130)
    first = ticks.tick()
    assert MRR in first and MRR_CHECK not in first
    ticks.materialized(MRR)
    assert MRR_CHECK in ticks.tick()


def test_a_refresh_after_an_execution_between_the_same_two_ticks_is_reconciled(ticks: Ticks) -> None:
    """The check executed (by a backfill, say), then Atlassian's side refreshed, both before the next
    tick: the refresh is newer than the execution, so the check runs again."""
    ticks.tick()
    ticks.instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(asset_key=MRR, check_name=MRR_CHECK.name, passed=True)
    )
    ticks.materialized(RECURRING_REVENUE)
    assert MRR_CHECK in ticks.tick()
