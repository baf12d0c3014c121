"""`metrics/mrr_monthly`: MRR, ARR and their movements per month x app x hosting, from `sales.transactions`.

One SQL text runs as it is on DuckDB and on PostgreSQL (parameters bound by `metrics/sql.py`). Money is
exact until the one rounding to cents at the end:

- A line item's `purchase_details_vendor_amount` is read as DECIMAL(38, 6) (the warehouse stores it as
  DOUBLE on DuckDB and as exact numeric on PostgreSQL; the API sends whole cents, so no digit is lost).
- Its monthly share is vendor_amount / n. DuckDB divides decimals in floating point, so the SQL never
  divides an amount: every share is scaled by one common denominator, the least common multiple `d` of
  all the n in the data (a recursive fold with `lcm`), and vendor_amount * (d / n) is an exact decimal.
  Sums, comparisons with zero and differences of scaled values are exact.
- Rounding a scaled total `x` to cents, half away from zero, is floor((200 |x| + d) / 2d) with the sign
  of `x`: an integer division, written as (a - a % b) / b so that the division is exact. DuckDB still
  divides in floating point, but the quotient is a whole number of cents and the float lies within far
  less than half a cent of it for any total below 10^13 dollars; the cast to DECIMAL(38, 0) takes the
  nearest whole number. `d / n` is exact the same way while d < 2^53; the SQL fails with a conversion
  error naming d if the periods ever make it larger (d is 132 when every period is 1, 11 or 12 months,
  and 144403552893600 with every length from 1 to 36 months).
"""

from __future__ import annotations

from marketplace_assets.metrics.sql import MONTH_NUMBER

# The SQL reads every line item whose maintenance period starts before the window's end, whatever its
# sale date: a refund or a late invoice sold after the month can cover it (the Marketplace API
# reference's own transaction sample is a renewal sold on 2025-05-01 for maintenance from 2025-03-21),
# and telling a new license from a reactivated one needs each license's whole history. So no number of
# months before the partition is enough: None means the whole history, every daily partition of
# sales/transactions, earlier and later than the month.
MRR_TRANSACTION_MONTHS_BEFORE: int | None = None


MRR_MONTHLY_SQL = f"""
WITH RECURSIVE
-- The window's months [start, end) by month number (year * 12 + month), and each one's 1st day.
window_bounds AS (
    SELECT
        {MONTH_NUMBER.format(d="CAST(:start AS DATE)")} AS first_month,
        {MONTH_NUMBER.format(d="CAST(:end AS DATE)")} - 1 AS last_month
),
-- The series' bounds are the parameters' expressions, not window_bounds' columns, so that PostgreSQL
-- knows how many months there are (it guesses 1000 rows otherwise, and the plan's inflated cost then
-- buys seconds of JIT compilation per query).
window_months AS (
    SELECT
        g.month_number,
        CAST(CAST(:start AS DATE) + (g.month_number - b.first_month) * INTERVAL '1 month' AS DATE) AS month
    FROM window_bounds AS b
    CROSS JOIN generate_series(
        {MONTH_NUMBER.format(d="CAST(:start AS DATE)")}, {MONTH_NUMBER.format(d="CAST(:end AS DATE)")} - 1
    ) AS g(month_number)
),
-- Every line item whose maintenance starts before the window ends, refunds included (negative).
-- A license is its app entitlement number; a line item without one stands for itself.
-- n (months) = whole months from the maintenance start to its end, at least 1.
dated_items AS (
    SELECT
        t.*,
        COALESCE(t.purchase_details_maintenance_start_date, t.purchase_details_sale_date) AS starts
    FROM sales.transactions AS t
),
line_items AS (
    SELECT
        addon_key,
        purchase_details_hosting AS hosting,
        COALESCE(app_entitlement_number, transaction_line_item_id) AS license,
        CAST(purchase_details_vendor_amount AS DECIMAL(38, 6)) AS vendor_amount,
        {MONTH_NUMBER.format(d="starts")} AS first_month,
        CAST(GREATEST(1, COALESCE(
            12 * (EXTRACT(YEAR FROM purchase_details_maintenance_end_date) - EXTRACT(YEAR FROM starts))
            + EXTRACT(MONTH FROM purchase_details_maintenance_end_date) - EXTRACT(MONTH FROM starts),
            1
        )) AS INTEGER) AS months
    FROM dated_items
    WHERE starts < CAST(:end AS DATE)
),
-- The common denominator d, the least common multiple of every n, folded one distinct n at a time.
periods AS (
    SELECT months, ROW_NUMBER() OVER (ORDER BY months) AS position
    FROM (SELECT DISTINCT months FROM line_items) AS distinct_periods
),
common_multiples (position, multiple) AS (
    SELECT CAST(0 AS BIGINT), CAST(1 AS BIGINT)
    UNION ALL
    SELECT p.position, lcm(c.multiple, CAST(p.months AS BIGINT))
    FROM common_multiples AS c JOIN periods AS p ON p.position = c.position + 1
),
denominator AS (
    SELECT CASE
        WHEN MAX(multiple) < 9007199254740992 THEN MAX(multiple)
        ELSE CAST(CONCAT('MRR common denominator too large ', MAX(multiple)) AS BIGINT)
    END AS d
    FROM common_multiples
),
-- Each line item's monthly share times d (exact), and the months it covers.
line_shares AS (
    SELECT
        i.addon_key, i.hosting, i.license, i.first_month, i.first_month + i.months - 1 AS last_month,
        i.vendor_amount * CAST(den.d / i.months AS BIGINT) AS share_scaled
    FROM line_items AS i CROSS JOIN denominator AS den
),
-- Each license's MRR (times d) in the window's months and the month before.
compared_months AS (
    SELECT month_number FROM window_months
    UNION ALL
    SELECT first_month - 1 FROM window_bounds
),
window_license_months AS (
    SELECT s.addon_key, s.hosting, s.license, m.month_number, SUM(s.share_scaled) AS mrr_scaled
    FROM line_shares AS s
    JOIN compared_months AS m ON m.month_number BETWEEN s.first_month AND s.last_month
    GROUP BY s.addon_key, s.hosting, s.license, m.month_number
),
-- Each license's MRR in a window month and in the month before (0 where it has none).
license_changes AS (
    SELECT
        addon_key, hosting, license, month_number,
        SUM(now_scaled) AS now_scaled,
        SUM(previous_scaled) AS previous_scaled
    FROM (
        SELECT addon_key, hosting, license, month_number, mrr_scaled AS now_scaled, 0 AS previous_scaled
        FROM window_license_months
        UNION ALL
        SELECT addon_key, hosting, license, month_number + 1, 0, mrr_scaled
        FROM window_license_months
    ) AS both_months
    CROSS JOIN window_bounds AS b
    WHERE both_months.month_number BETWEEN b.first_month AND b.last_month
    GROUP BY addon_key, hosting, license, month_number
),
-- A license paying in a window month and not the month before is new, or reactivated if it paid in
-- an earlier month: its first paying month, from its whole history, for those licenses only. A
-- license's MRR changes only in a month where one of its line items starts or after one ends, so its
-- MRR is computed in those months alone.
candidates AS (
    SELECT s.*
    FROM line_shares AS s
    WHERE s.license IN (SELECT license FROM license_changes WHERE now_scaled > 0 AND previous_scaled <= 0)
),
changing_months AS (
    SELECT addon_key, hosting, license, first_month AS month_number FROM candidates
    UNION
    SELECT addon_key, hosting, license, last_month + 1 FROM candidates
),
earlier_months AS (
    SELECT k.addon_key, k.hosting, k.license, k.month_number, SUM(s.share_scaled) AS mrr_scaled
    FROM changing_months AS k
    JOIN candidates AS s
        ON s.license = k.license
        AND s.addon_key IS NOT DISTINCT FROM k.addon_key
        AND s.hosting IS NOT DISTINCT FROM k.hosting
        AND k.month_number BETWEEN s.first_month AND s.last_month
    GROUP BY k.addon_key, k.hosting, k.license, k.month_number
),
first_paying AS (
    SELECT addon_key, hosting, license, MIN(month_number) AS first_paying_month
    FROM earlier_months
    WHERE mrr_scaled > 0
    GROUP BY addon_key, hosting, license
),
movements AS (
    SELECT
        c.*,
        c.now_scaled - c.previous_scaled AS change_scaled,
        CASE
            WHEN c.now_scaled > 0 AND c.previous_scaled <= 0 AND f.first_paying_month < c.month_number
                THEN 'reactivated'
            WHEN c.now_scaled > 0 AND c.previous_scaled <= 0 THEN 'new'
            WHEN c.previous_scaled > 0 AND c.now_scaled <= 0 THEN 'churned'
            WHEN c.now_scaled > c.previous_scaled THEN 'expansion'
            WHEN c.now_scaled < c.previous_scaled THEN 'contraction'
        END AS movement
    FROM license_changes AS c
    LEFT JOIN first_paying AS f
        ON f.license = c.license
        AND f.addon_key IS NOT DISTINCT FROM c.addon_key
        AND f.hosting IS NOT DISTINCT FROM c.hosting
),
app_months AS (
    SELECT
        addon_key, hosting, month_number,
        SUM(previous_scaled) AS opening_scaled,
        SUM(CASE WHEN movement = 'new' THEN change_scaled ELSE 0 END) AS new_scaled,
        SUM(CASE WHEN movement = 'reactivated' THEN change_scaled ELSE 0 END) AS reactivated_scaled,
        SUM(CASE WHEN movement = 'expansion' THEN change_scaled ELSE 0 END) AS expansion_scaled,
        SUM(CASE WHEN movement = 'contraction' THEN -change_scaled ELSE 0 END) AS contraction_scaled,
        SUM(now_scaled) AS closing_scaled,
        COUNT(CASE WHEN now_scaled > 0 THEN 1 END) AS paying_licenses,
        COUNT(CASE WHEN movement = 'new' THEN 1 END) AS new_licenses,
        COUNT(CASE WHEN movement = 'reactivated' THEN 1 END) AS reactivated_licenses,
        COUNT(CASE WHEN movement = 'expansion' THEN 1 END) AS expansion_licenses,
        COUNT(CASE WHEN movement = 'contraction' THEN 1 END) AS contraction_licenses,
        COUNT(CASE WHEN movement = 'churned' THEN 1 END) AS churned_licenses
    FROM movements
    GROUP BY addon_key, hosting, month_number
),
-- What the loaded history can vouch for. A month's MRR counts every line item whose period covers it,
-- so it needs the sales since the month in which the longest period could have started to cover it
-- (longest - 1 months before); its opening MRR and movements need one month more (the month before's
-- MRR). The longest period is that of the line items starting in or before the month (no later one can
-- cover it), so a window's rows equal its months' rows queried one by one. MATERIALIZED: computed once;
-- PostgreSQL would otherwise inline it and scan sales.transactions again for every row of the result.
history AS MATERIALIZED (
    SELECT
        min(purchase_details_sale_date) AS first_day,
        {MONTH_NUMBER.format(d="min(purchase_details_sale_date)")} AS first_month
    FROM sales.transactions
),
longest_periods AS (
    SELECT w.month_number, max(i.months) AS longest
    FROM window_months AS w
    JOIN (SELECT first_month, max(months) AS months FROM line_items GROUP BY first_month) AS i
        ON i.first_month <= w.month_number
    GROUP BY w.month_number
),
-- The running total from the month before to this month, one movement at a time (step 5 is this
-- month's MRR, equal to step 4 less churned). Each step is rounded to cents once; a movement is the
-- difference of two rounded steps, so the rounded movements add up exactly.
running_totals AS (
    SELECT
        a.*,
        s.step,
        CASE s.step
            WHEN 0 THEN opening_scaled
            WHEN 1 THEN opening_scaled + new_scaled
            WHEN 2 THEN opening_scaled + new_scaled + reactivated_scaled
            WHEN 3 THEN opening_scaled + new_scaled + reactivated_scaled + expansion_scaled
            WHEN 4 THEN opening_scaled + new_scaled + reactivated_scaled + expansion_scaled
                - contraction_scaled
            ELSE closing_scaled
        END AS total_scaled
    FROM app_months AS a
    CROSS JOIN (VALUES (0), (1), (2), (3), (4), (5)) AS s(step)
),
-- Cents, half away from zero = sign * floor((200 |total| + d) / 2d), as (a - a % b) / b.
rounded AS (
    SELECT
        r.*,
        CASE WHEN r.total_scaled < 0 THEN -1 ELSE 1 END
            * CAST((r.halves - r.halves % (2 * r.d)) / (2 * r.d) AS DECIMAL(38, 0)) AS cents
    FROM (
        SELECT t.*, den.d, 200 * ABS(t.total_scaled) + den.d AS halves
        FROM running_totals AS t CROSS JOIN denominator AS den
    ) AS r
),
steps AS (
    SELECT
        addon_key, hosting, month_number,
        MAX(CASE WHEN step = 0 THEN cents END) AS step_0,
        MAX(CASE WHEN step = 1 THEN cents END) AS step_1,
        MAX(CASE WHEN step = 2 THEN cents END) AS step_2,
        MAX(CASE WHEN step = 3 THEN cents END) AS step_3,
        MAX(CASE WHEN step = 4 THEN cents END) AS step_4,
        MAX(CASE WHEN step = 5 THEN cents END) AS step_5,
        MAX(paying_licenses) AS paying_licenses,
        MAX(new_licenses) AS new_licenses,
        MAX(reactivated_licenses) AS reactivated_licenses,
        MAX(expansion_licenses) AS expansion_licenses,
        MAX(contraction_licenses) AS contraction_licenses,
        MAX(churned_licenses) AS churned_licenses
    FROM rounded
    GROUP BY addon_key, hosting, month_number
)
SELECT
    w.month,
    s.addon_key,
    s.hosting,
    CAST(s.step_5 * 0.01 AS DECIMAL(18, 2)) AS mrr,
    CAST(s.step_5 * 0.12 AS DECIMAL(18, 2)) AS arr,
    CAST(s.step_0 * 0.01 AS DECIMAL(18, 2)) AS opening_mrr,
    CAST((s.step_1 - s.step_0) * 0.01 AS DECIMAL(18, 2)) AS new_mrr,
    CAST((s.step_2 - s.step_1) * 0.01 AS DECIMAL(18, 2)) AS reactivated_mrr,
    CAST((s.step_3 - s.step_2) * 0.01 AS DECIMAL(18, 2)) AS expansion_mrr,
    CAST((s.step_3 - s.step_4) * 0.01 AS DECIMAL(18, 2)) AS contraction_mrr,
    CAST((s.step_4 - s.step_5) * 0.01 AS DECIMAL(18, 2)) AS churned_mrr,
    CAST(s.paying_licenses AS BIGINT) AS paying_licenses,
    CAST(s.new_licenses AS BIGINT) AS new_licenses,
    CAST(s.reactivated_licenses AS BIGINT) AS reactivated_licenses,
    CAST(s.expansion_licenses AS BIGINT) AS expansion_licenses,
    CAST(s.contraction_licenses AS BIGINT) AS contraction_licenses,
    CAST(s.churned_licenses AS BIGINT) AS churned_licenses,
    CAST(h.first_day AS DATE) AS history_from,
    CAST(coalesce(h.first_month <= w.month_number - (p.longest - 1), FALSE) AS BOOLEAN) AS mrr_complete,
    CAST(coalesce(h.first_month <= w.month_number - p.longest, FALSE) AS BOOLEAN) AS movements_complete
FROM steps AS s
JOIN window_months AS w ON w.month_number = s.month_number
JOIN longest_periods AS p ON p.month_number = w.month_number
CROSS JOIN history AS h
ORDER BY w.month, s.addon_key, s.hosting
"""

MRR_MONTHLY_DESCRIPTION = """\
Monthly recurring revenue (MRR) and annual recurring revenue (ARR) per month, app (`addon_key`) and
hosting, with the month's movements against the month before, computed from `sales.transactions`.

**Spread.** Every transaction line item, refunds and downgrades included as the negative amounts the
API reports, contributes its vendor amount (USD, after Atlassian's share) to its app and hosting,
spread evenly over the whole months of its maintenance period: n = 12 x (end year - start year) +
(end month - start month), at least 1, from the maintenance start date to the maintenance end date
(the day of the month is not counted). The item counts vendor amount / n in each of the n calendar
months starting with the month of its maintenance start. Monthly billing counts in its one month, an
annual plan 1/12 in each of its 12 months (across a year end as needed), a mid-term upgrade's prorated
amount over the months left in its period, and a refund or downgrade is netted in the months its
period covers. A line item without maintenance dates counts in the month of its sale date.

**Rounding.** A month's MRR is the exact sum of the contributions, rounded to cents once at the end,
half away from zero (1/3 + 1/3 of a dollar is $0.67, not $0.66). ARR = 12 x MRR.

**Movements** compare each license (its `app_entitlement_number`; a line item without one is a license
of its own) within the app and hosting, its MRR this month against the month before. A license is
paying in a month when its MRR there is above zero.
- new: paying this month, never paying before (its whole history);
- reactivated: paying this month, not the month before, paying in some earlier month;
- churned: paying the month before, not this month;
- expansion / contraction: any other license whose MRR rose / fell (upgrades, downgrades, partial
  refunds; also a license paying in neither month whose MRR changed, such as a refund larger than its
  sale);
- each movement's amount is the sum of its licenses' change of MRR, contraction and churned as positive
  amounts, so opening_mrr + new_mrr + reactivated_mrr + expansion_mrr - contraction_mrr - churned_mrr
  = mrr holds exactly, and the month before's paying_licenses + new + reactivated - churned licenses =
  paying_licenses. To add up to the cent, the movements are rounded as a running total: opening MRR,
  then + new, + reactivated, + expansion, - contraction, - churned, each total rounded to cents once and
  each movement the difference of two rounded totals (within a cent of its exact amount).

**What a month's partition reads.** Every line item of `sales.transactions` whose maintenance period
starts before the month ends, whatever its sale date, as the warehouse holds it when the partition runs:
a refund sold after the month still lowers the months its period covers, and the new / reactivated
split needs each license's whole history. Materialize the months again after loading new
transactions. The SQL (one text for DuckDB and PostgreSQL) is `MRR_MONTHLY_SQL` in
`marketplace_assets/metrics/mrr.py`.
"""

_MOVEMENT = "rounded as a running total so the movements add up (see the description)"
MRR_MONTHLY_COLUMNS: dict[str, str] = {
    "month": "The 1st of the month the row covers",
    "addon_key": "The app's key",
    "hosting": "The line items' hosting (purchase_details_hosting: Cloud, Data Center or Server)",
    "mrr": "Monthly recurring revenue in USD: the month's share of every line item's vendor amount, "
    "refunds and downgrades netted, summed exactly and rounded to cents once (half away from zero)",
    "arr": "Annual recurring revenue in USD: 12 x mrr",
    "opening_mrr": "The month before's MRR, from the same line items (the month before's mrr, unless "
    "line items arrived since that month was computed)",
    "new_mrr": "The MRR of licenses paying this month and never before (their change from the month "
    f"before); {_MOVEMENT}",
    "reactivated_mrr": "The MRR of licenses paying this month, not the month before but in some earlier "
    f"month (their change from the month before); {_MOVEMENT}",
    "expansion_mrr": "The MRR gained by other licenses whose MRR rose (upgrades; also licenses paying in "
    f"neither month); {_MOVEMENT}",
    "contraction_mrr": "The MRR lost, as a positive amount, by licenses whose MRR fell without churning "
    f"(downgrades, partial refunds; also licenses paying in neither month); {_MOVEMENT}",
    "churned_mrr": "The MRR lost, as a positive amount, by licenses paying the month before and not "
    f"this month (their change from the month before); {_MOVEMENT}",
    "paying_licenses": "Licenses (app entitlements) of the app and hosting with MRR above zero this month",
    "new_licenses": "Licenses paying this month and never before",
    "reactivated_licenses": "Licenses paying this month, not the month before but in some earlier month",
    "expansion_licenses": "Licenses counted in expansion_mrr",
    "contraction_licenses": "Licenses counted in contraction_mrr",
    "churned_licenses": "Licenses paying the month before and not this month",
    "history_from": "The earliest sale date in sales.transactions when the row was computed (see "
    "mrr_complete and movements_complete)",
    "mrr_complete": "True when the sales loaded (from history_from) cover every line item that can count "
    "in this month: those since the month in which the longest maintenance period starting in or before "
    "the month would start to cover it (11 months before the month for annual plans). False: mrr may be "
    "short; load earlier transactions and materialize the month again",
    "movements_complete": "True when the sales loaded (from history_from) also cover the month before's "
    "MRR: one month more than mrr_complete (12 months before the month for annual plans). False: "
    "opening_mrr and the movements may be wrong (renewals of annual plans count as new licenses, and "
    "their lapses are missed)",
}
