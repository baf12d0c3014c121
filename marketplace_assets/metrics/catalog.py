"""The metrics catalog: one `Metric` row per derived asset (`assets.py` builds one asset per row).

Each row names its SQL (in the module beside it), the raw assets it reads with their partition mappings,
its columns and its headline figures. A metric's reconciliations with Atlassian's own figures (issue 14,
item 5) are on its row (`reconciliations`), defined in `reconciliations.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import dagster as dg

from marketplace_assets.dagster_conventions import beta_parameters
from marketplace_assets.metrics.licenses import (
    ACTIVE_LICENSES_DAILY_COLUMNS,
    ACTIVE_LICENSES_DAILY_DESCRIPTION,
    ACTIVE_LICENSES_DAILY_SQL,
    CONVERSION_WINDOWS,
    TRIAL_CONVERSION_MONTHLY_COLUMNS,
    TRIAL_CONVERSION_MONTHLY_DESCRIPTION,
    TRIAL_CONVERSION_MONTHLY_SQL,
)
from marketplace_assets.metrics.metric import (
    COUNT,
    DATE,
    FLAG,
    MONEY,
    TEXT,
    Column,
    Completeness,
    Metric,
    Upstream,
)
from marketplace_assets.metrics.mrr import (
    MRR_MONTHLY_COLUMNS,
    MRR_MONTHLY_DESCRIPTION,
    MRR_MONTHLY_SQL,
    MRR_TRANSACTION_MONTHS_BEFORE,
)
from marketplace_assets.metrics.reconciliations import (
    MRR_VS_RECURRING_REVENUE,
    REVENUE_VS_TRANSACTIONS_BY_HOSTING,
    TRIAL_CONVERSION_VS_CONVERSION,
)
from marketplace_assets.metrics.revenue import (
    REVENUE_MONTHLY_COLUMNS,
    REVENUE_MONTHLY_DESCRIPTION,
    REVENUE_MONTHLY_SQL,
)
from marketplace_assets.reports.report import Cadence

TRANSACTIONS = dg.AssetKey(["sales", "transactions"])
LICENSES = dg.AssetKey(["licenses", "licenses"])
# The export sensor re-reads the last 5 days of licenses for late corrections (reports/catalog.py): the
# automation keeps the latest 6 days of active licenses up with them.
LICENSE_DAYS = 6
# Cohorts whose conversion windows a license refresh can still change: the 4 months before the current
# one (a cohort reads the license history up to the 4th month after it).
COHORTS = 4


def reaching_past_the_partitions(*, start_offset: int, end_offset: int) -> dg.TimeWindowPartitionMapping:
    """A mapping whose windows may reach before the raw asset's first partition or after its latest:
    those partitions are left out (they do not exist), not required."""
    with beta_parameters():
        return dg.TimeWindowPartitionMapping(
            start_offset=start_offset, end_offset=end_offset, allow_nonexistent_upstream_partitions=True
        )


REVENUE_MONTHLY = Metric(
    name="revenue_monthly",
    cadence=Cadence.MONTHLY,
    description=REVENUE_MONTHLY_DESCRIPTION,
    sql=REVENUE_MONTHLY_SQL,
    sql_location="marketplace_assets/metrics/revenue.py (REVENUE_MONTHLY_SQL)",
    columns=REVENUE_MONTHLY_COLUMNS,
    grain=("month", "addon_key", "hosting", "sale_type"),
    upstream=(Upstream(TRANSACTIONS, dg.TimeWindowPartitionMapping(), "the daily partitions of the month"),),
    money=("vendor_amount", "purchase_price", "refund_amount"),
    counts=("line_items", "refunds"),
    reconciliations=(REVENUE_VS_TRANSACTIONS_BY_HOSTING,),
)

ACTIVE_LICENSES_DAILY = Metric(
    name="active_licenses_daily",
    cadence=Cadence.DAILY,
    description=ACTIVE_LICENSES_DAILY_DESCRIPTION,
    sql=ACTIVE_LICENSES_DAILY_SQL,
    sql_location="marketplace_assets/metrics/licenses.py (ACTIVE_LICENSES_DAILY_SQL)",
    columns=ACTIVE_LICENSES_DAILY_COLUMNS,
    grain=("day", "addon_key", "hosting", "edition"),
    # A day reads every version up to it; the lineage is drawn to the day's own partition, the one each
    # daily refresh brings (a version from months ago would make every later day depend on everything).
    upstream=(
        Upstream(
            LICENSES,
            dg.TimeWindowPartitionMapping(),
            "the day's partition (the SQL reads every version up to the day: after a backfill of older "
            "license days, re-materialize this metric from the first of them)",
        ),
    ),
    counts=("active_licenses",),
    refresh_partitions=LICENSE_DAYS,
)

TRIAL_CONVERSION_MONTHLY = Metric(
    name="trial_conversion_monthly",
    cadence=Cadence.MONTHLY,
    description=TRIAL_CONVERSION_MONTHLY_DESCRIPTION,
    sql=TRIAL_CONVERSION_MONTHLY_SQL,
    sql_location="marketplace_assets/metrics/licenses.py (TRIAL_CONVERSION_MONTHLY_SQL)",
    columns=TRIAL_CONVERSION_MONTHLY_COLUMNS,
    grain=("month", "addon_key", "hosting", "evaluation_type"),
    upstream=(
        Upstream(
            LICENSES,
            # From the cohort month to 4 months after it: 90 days after the month's last day can fall in
            # the 4th month (31 January + 90 days = 1 May). Days not yet partitions are left out.
            reaching_past_the_partitions(start_offset=0, end_offset=4),
            "the daily partitions from the cohort month to the 4th month after it (the 90-day windows)",
        ),
    ),
    counts=(
        "evaluations",
        *(f"converted_within_{n}_days" for n in CONVERSION_WINDOWS),
        "converted_to_date",
    ),
    refresh_partitions=COHORTS,
    reconciliations=(TRIAL_CONVERSION_VS_CONVERSION,),
)

# The dimensions of mrr_monthly's rows; its license counts end in `_licenses`, every other column is an
# amount in USD (test_metrics_types.py holds these types against the SQL's own result types).
MRR_DIMENSIONS: dict[str, str] = {"month": DATE, "addon_key": TEXT, "hosting": TEXT}
# Not part of the grain: the earliest sale the row was computed from, and whether that history covers
# the row's MRR and its movements (mrr.py says why).
MRR_HISTORY: dict[str, str] = {"history_from": DATE, "mrr_complete": FLAG, "movements_complete": FLAG}
MRR_COMPLETENESS = (
    Completeness(
        "mrr_complete",
        "rows_with_incomplete_mrr",
        "MRR incomplete",
        "the sales loaded (see `history_from`) start too late for every line item that counts in the "
        "month (annual plans: from 11 months before it), so its MRR may be short",
    ),
    Completeness(
        "movements_complete",
        "rows_with_incomplete_movements",
        "movements incomplete",
        "the sales loaded start too late for the month before's MRR (annual plans: from 12 months "
        "before the month), so renewals may count as new licenses and lapses be missed",
    ),
)
# Refunds and late invoices change months already computed: the automation recomputes the latest 3.
MRR_MONTHS = 3


def _mrr_column_type(name: str) -> str:
    typed = MRR_DIMENSIONS.get(name) or MRR_HISTORY.get(name)
    return typed or (COUNT if name.endswith(("_licenses", "_count")) else MONEY)


def mrr_monthly_metric(
    sql: str, columns: Mapping[str, str], description: str, months_before: int | None
) -> Metric:
    """metrics/mrr_monthly from the module that holds its SQL (``metrics/mrr.py``): the SQL, its columns
    (column -> description), its markdown description, and how many months of transactions before its
    month a partition reads (None: every daily partition, earlier and later)."""
    typed = {name: Column(meaning, _mrr_column_type(name)) for name, meaning in columns.items()}
    if months_before is None:
        mapping: dg.PartitionMapping = dg.AllPartitionMapping()
        reads = (
            "every daily partition, earlier and later (a month reads every line item whose maintenance "
            "period starts before the month ends, whatever its sale date)"
        )
    else:
        mapping = reaching_past_the_partitions(start_offset=-months_before, end_offset=0)
        reads = f"the daily partitions of the month and the {months_before} months before it"
    return Metric(
        name="mrr_monthly",
        cadence=Cadence.MONTHLY,
        description=description,
        sql=sql,
        sql_location="marketplace_assets/metrics/mrr.py (MRR_MONTHLY_SQL)",
        columns=typed,
        grain=tuple(MRR_DIMENSIONS),
        upstream=(Upstream(TRANSACTIONS, mapping, reads),),
        money=tuple(n for n, c in typed.items() if c.sql_type == MONEY),
        counts=tuple(n for n, c in typed.items() if c.sql_type == COUNT),
        refresh_partitions=MRR_MONTHS,
        completeness=tuple(c for c in MRR_COMPLETENESS if c.column in typed),
    )


MRR_MONTHLY = dataclasses.replace(
    mrr_monthly_metric(
        MRR_MONTHLY_SQL, MRR_MONTHLY_COLUMNS, MRR_MONTHLY_DESCRIPTION, MRR_TRANSACTION_MONTHS_BEFORE
    ),
    reconciliations=(MRR_VS_RECURRING_REVENUE,),
)

METRICS: tuple[Metric, ...] = (REVENUE_MONTHLY, MRR_MONTHLY, ACTIVE_LICENSES_DAILY, TRIAL_CONVERSION_MONTHLY)
