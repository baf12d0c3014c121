"""The reconciliation checks of the metrics (issue 14, item 5), each with its tolerance and why.

Each is an asset check on its metric (`assets.py` builds it): it runs after every materialization of the
metric, for the run's months, or on its own from the UI (then for every month the metric holds). Its
SQL is in `reconcile_sql.py`; `reconcile.py` turns the rows into the result.
"""

from __future__ import annotations

from marketplace_assets.metrics.reconcile import Reconciliation
from marketplace_assets.metrics.reconcile_sql import (
    CONVERSION,
    HALF_CENT,
    LICENSES,
    MRR_VS_RECURRING_REVENUE_SQL,
    RECURRING_REVENUE,
    REVENUE_VS_TRANSACTIONS_BY_HOSTING_SQL,
    TRANSACTIONS,
    TRANSACTIONS_BY_HOSTING,
    TRIAL_CONVERSION_VS_CONVERSION_SQL,
    WEEKLY_ELEMENT_ROUNDING,
)

_OUTCOME = """\
**Outcome.** Passed when every month was compared and every row is within its tolerance. Otherwise a \
**warning** (severity WARN, never blocking) that names each app and month outside tolerance, and each \
month not compared with the reason. Metadata: the totals compared (ours, Atlassian's, the difference), \
the counts of rows compared, outside tolerance and months not compared, and a table of every row (month, \
app, what, ours, Atlassian, difference, tolerance). Both sides are whole cents, so each tolerance is shown \
and applied rounded down to cents (it passes the same differences).

**When it runs.** With every materialization of the metric launched from the UI, the CLI or a backfill, \
for its months. On its own, for every month the metric holds: from the UI's Execute, and by the sensor \
`metrics_after_raw_inputs` once the metric or Atlassian's report was refreshed without it (an automated \
refresh of the metric, or of Atlassian's report alone), when neither is being materialized."""

MRR_VS_RECURRING_REVENUE = Reconciliation(
    name="reconciles_with_recurring_revenue",
    against=RECURRING_REVENUE,
    reads=(RECURRING_REVENUE, TRANSACTIONS),
    sql=MRR_VS_RECURRING_REVENUE_SQL,
    unit="USD",
    description=f"""\
**Reconciles MRR with Atlassian's own** (`partner_metrics/recurring_revenue`, the partner metrics' \
closing MRR per app and month).

**Compared**, per app and month: the sum of this metric's `mrr` over the app's hostings, and Atlassian's \
`closing_mrr` for the month (the app's value: that report has no hosting). A month's closing MRR is that \
month's MRR, and both spread each line item's vendor amount evenly over the months of its maintenance \
period, so they mean the same. An app missing from Atlassian's month counts as 0 there.

**Tolerance**, per app and month: ${HALF_CENT} x (the line items of `sales/transactions` whose maintenance \
period covers the month + the app's hostings). Ours sums the monthly shares exactly and rounds each \
hosting's total to cents once; Atlassian may round each line item's monthly share to cents before \
summing (half a cent per line item at most) and rounds each hosting's value (half a cent each).

**Not tolerated: timing.** Each side counts the line items it knew when it was computed. A refund or \
late invoice on one side only (a refund already in `sales/transactions` that Atlassian's MRR does not \
have yet) changes every month its maintenance period covers by its amount / n: a real difference, shown \
as a warning naming the app and each of those months.

**Not compared**: a month without any row in `partner_metrics/recurring_revenue` (not materialized for \
it); a month whose rows of this metric say `mrr_complete` false (computed from sales that start too late \
for every line item that counts in it); a month Atlassian has MRR for and this metric has no row for (not \
materialized). Nothing vouches for the month, so the check warns that it is not reconciled.

{_OUTCOME}""",
)

REVENUE_VS_TRANSACTIONS_BY_HOSTING = Reconciliation(
    name="reconciles_with_transactions_by_hosting",
    against=TRANSACTIONS_BY_HOSTING,
    reads=(TRANSACTIONS_BY_HOSTING, TRANSACTIONS),
    sql=REVENUE_VS_TRANSACTIONS_BY_HOSTING_SQL,
    unit="USD",
    description=f"""\
**Reconciles revenue with Atlassian's own** (`sales/transactions_by_hosting`: weekly revenue per app and \
hosting, weeks starting on Sunday, each line item on its sale date, refunds negative).

**On Atlassian's calendar.** Weeks do not fit in months, so a month here is the weeks that **start** in \
it (its last week may end up to 6 days into the next month). Atlassian's figure is the sum of those \
weeks' revenue. Ours is this metric's `vendor_amount` for the month (every sale type, refunds included), \
shifted to the same days by the metric's own definition (vendor amount by sale date) applied to \
`sales/transactions`: minus the line items sold in the month before its first Sunday, plus those sold \
after its end up to the Saturday that ends its last week. Both sides then cover exactly the same days, \
so calendar timing never shows as a difference; the table shows ours after the shift.

**Compared** per app, hosting and month. **Tolerance**: ${WEEKLY_ELEMENT_ROUNDING} per weekly element \
compared (one hosting, one week): Atlassian's weekly revenue may be rounded, to whole dollars at worst; \
otherwise both sides add whole cents exactly. A line item on one side only (a late-arriving refund: in \
`sales/transactions`, not yet in Atlassian's report) is a real difference, shown as a warning naming \
the app, the hosting and the month of its week.

**Not compared**: a month for which `sales/transactions_by_hosting` lacks a week that starts in it (not \
materialized, or the last week is not over yet), or when `sales/transactions` ends before the month's \
last week does.

{_OUTCOME}""",
)

TRIAL_CONVERSION_VS_CONVERSION = Reconciliation(
    name="reconciles_with_conversion",
    against=CONVERSION,
    reads=(CONVERSION, LICENSES),
    sql=TRIAL_CONVERSION_VS_CONVERSION_SQL,
    unit="count",
    description=f"""\
**Reconciles trial conversion with Atlassian's own** (`sales/conversion`: Cloud evaluations started and \
converted per week, weeks starting on Sunday; evaluations dated by their start day, conversions by the \
day the evaluation became paid).

**Cloud only**: Atlassian's conversion report counts Cloud evaluations only, so ours is this metric's \
Cloud rows. Its evaluation types (`EVALUATION`, `net_new_evaluation`, `upgrade_evaluation`) are summed, \
as are Atlassian's conversion types (`Net new`, `Upgrade`). A month is the weeks that **start** in it.

**Compared**, per app and month, two rows:
- **Cloud evaluations** started: Atlassian's `Evaluations` against this metric's `evaluations` of the \
cohort month, shifted to the same days by the metric's own definition of an evaluation and its start \
day applied to `licenses/licenses` (minus those started in the month before its first Sunday, plus those \
started after its end within its last week).
- **Cloud conversions**: Atlassian's `Conversions` against the Cloud evaluations that became paid by the \
metric's rule (the first paid version of the license on or after the start), counted on the day they \
did. The metric itself counts conversions by cohort (the month the evaluation started, within 30, 60 \
and 90 days), which no by-day count can be compared with; the same rule dated by conversion day can.

**Tolerance: 0.** Both sides count the same licenses in whole numbers, by the same days.

**A history loaded by a backfill.** It holds an evaluation that had already converted as a paid \
license only; the metric still counts it from the license's data insights (`evaluation_start_date`, \
`days_to_convert_eval`), which the license exports ask for. Licenses loaded before the exports asked for \
them lack those fields: re-load the license history, or the check shows ours below Atlassian's.

**Not compared**: a month for which `sales/conversion` lacks a week that starts in it, or when the \
license history ends before the month's last week does.

{_OUTCOME}""",
)
