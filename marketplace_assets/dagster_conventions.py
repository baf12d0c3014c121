"""What this project relies on from Dagster without a public API for it, in one place.

- The run tags that make one run cover a range of partitions (a single-run backfill, or a schedule's
  run over its lookback window). Dagster sets and reads them but exports no public constant.
- Whether a cron string is one a schedule accepts: asked of `dg.ScheduleDefinition` itself (public), so
  our settings refuse exactly what Dagster would refuse.
- The Dagster parameters in beta that the project uses on purpose (`backfill_policy`: a backfill of any
  range is one run; `allow_nonexistent_upstream_partitions` of the metrics' partition mappings). Their
  warnings tell a user nothing to act on, so they are silenced where the project passes them, and only
  there (`beta_parameters`).

`marketplace_assets_tests/test_dagster_conventions.py` fails if Dagster changes either.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(start: str, end: str) -> dict[str, str]:
    """The tags of one run over the partitions `start`..`end` (inclusive keys)."""
    return {RANGE_START_TAG: start, RANGE_END_TAG: end}


# allow_nonexistent_upstream_partitions: a metric's partition mapping reaches past the raw assets' first
# or latest partition (metrics/catalog.py); those partitions are left out instead of raising.
BETA_PARAMETERS = ("backfill_policy", "allow_nonexistent_upstream_partitions")


@contextmanager
def beta_parameters() -> Iterator[None]:
    """Inside: Dagster's BetaWarning for the parameters in `BETA_PARAMETERS` is not shown. Any other
    beta or superseded API still warns."""
    names = "|".join(re.escape(name) for name in BETA_PARAMETERS)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=rf"Parameter `({names})` ", category=dg.BetaWarning)
        yield


@dg.op
def _noop() -> None:
    return None


@dg.job
def _probe_job() -> None:
    _noop()


def is_valid_cron(cron: str) -> bool:
    """True when a Dagster schedule accepts `cron`."""
    try:
        dg.ScheduleDefinition(name="cron_probe", cron_schedule=cron, job=_probe_job)
    except dg.DagsterInvalidDefinitionError:
        return False
    return True
