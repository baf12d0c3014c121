"""The three reconciliations of issue 14: each metric against Atlassian's own figure, as SQL and in words.

Each SQL text runs as it is on DuckDB and PostgreSQL (`metrics/sql.py` binds `:start` and `:end`, the
months compared) and returns the rows `metrics/reconcile.py` describes. Atlassian's weekly reports date
their weeks by the Sunday that starts them, so a calendar month of the metric and the weeks summed for it
cover different days; the two weekly comparisons put ours on Atlassian's calendar instead: a month is the
weeks that START in it (the last one may end up to 6 days into the next month), and ours is the metric's
month shifted to those same days, from the same raw table and by the metric's own definition.
"""

from __future__ import annotations

import dagster as dg

from marketplace_assets.metrics.licenses import EVALUATIONS_CTE, paid_cte
from marketplace_assets.metrics.sql import MONTH_NUMBER

TRANSACTIONS = dg.AssetKey(["sales", "transactions"])
LICENSES = dg.AssetKey(["licenses", "licenses"])
RECURRING_REVENUE = dg.AssetKey(["partner_metrics", "recurring_revenue"])
TRANSACTIONS_BY_HOSTING = dg.AssetKey(["sales", "transactions_by_hosting"])
CONVERSION = dg.AssetKey(["sales", "conversion"])

# Atlassian's weekly revenue may be rounded per element (one series, one week): to whole dollars at
# worst, $0.50 per element.
WEEKLY_ELEMENT_ROUNDING = "0.50"
# A monthly share or a total rounded to cents on one side and not the other: half a cent each.
HALF_CENT = "0.005"

_MONTHS = """months AS (
    SELECT CAST(g.first_day AS DATE) AS month
    FROM generate_series(
        CAST(:start AS TIMESTAMP), CAST(:end AS TIMESTAMP) - INTERVAL '1 month', INTERVAL '1 month'
    ) AS g(first_day)
)"""

# The Sundays of the window's months: each month's weeks are those that start on one of them, and its
# last week ends on its last Sunday + 6 days.
_CALENDAR = """sundays AS (
    SELECT CAST(date_trunc('month', g.day) AS DATE) AS month, CAST(g.day AS DATE) AS sunday
    FROM generate_series(
        CAST(:start AS TIMESTAMP), CAST(:end AS TIMESTAMP) - INTERVAL '1 day', INTERVAL '1 day'
    ) AS g(day)
    WHERE EXTRACT(DOW FROM g.day) = 0
),
calendar AS (
    SELECT month, count(*) AS weeks, CAST(max(sunday) + INTERVAL '6 days' AS DATE) AS last_day
    FROM sundays
    GROUP BY month
)"""


def _week_month(day: str) -> str:
    """The month of the week a day falls in: the month of the Sunday that starts its week."""
    sunday = f"{day} - CAST(EXTRACT(DOW FROM {day}) AS INTEGER) * INTERVAL '1 day'"
    return f"CAST(date_trunc('month', {sunday}) AS DATE)"


def _coverage(report: str, loaded_weeks: str, ours_through: str, ours_table: str) -> str:
    """The CTE `coverage`: why each month cannot be compared (null: it can). A month needs every week
    that starts in it on Atlassian's side, and ours must reach the end of its last week."""
    return f"""coverage AS (
    SELECT
        m.month,
        CASE
            WHEN coalesce(l.weeks, 0) = 0 THEN '{report} has no week starting in the month'
            WHEN l.weeks < c.weeks THEN '{report} has ' || CAST(l.weeks AS VARCHAR) || ' of the '
                || CAST(c.weeks AS VARCHAR) || ' weeks starting in the month'
            WHEN t.last_day IS NULL OR t.last_day < c.last_day THEN '{ours_table} ends on '
                || coalesce(CAST(t.last_day AS VARCHAR), 'no day') || ', before the month''s last week ends ('
                || CAST(c.last_day AS VARCHAR) || ')'
        END AS missing
    FROM months AS m
    JOIN calendar AS c ON c.month = m.month
    LEFT JOIN (SELECT month, count(DISTINCT week) AS weeks FROM {loaded_weeks} GROUP BY month) AS l
        ON l.month = m.month
    CROSS JOIN ({ours_through}) AS t
)"""


def _weekly_report(table: str, what: str, figure: str, where: str = "") -> str:
    """The CTE `atlassian_weeks`: the per-app elements of a weekly report (`table`) for the weeks that
    start in the window's months, each with its month, week, app, `what` it is and its `figure`."""
    return f"""atlassian_weeks AS (
    SELECT
        CAST(date_trunc('month', date) AS DATE) AS month,
        date AS week,
        addon_key,
        {what},
        {figure}
    FROM {table}
    WHERE scope = 'app'{where} AND date >= :start AND date < :end
)"""


def _three_sides(dimension: str) -> str:
    """Every (month, app, `dimension`) of Atlassian's side, the metric's and the calendar shift's, as
    `k`, joined to each of the three (the CTEs `atlassian`, `metric` and `shift`)."""
    sides = ("atlassian", "metric", "shift")
    keys = "\n        UNION ".join(f"SELECT month, addon_key, {dimension} FROM {side}" for side in sides)
    joins = "\n".join(
        f"    LEFT JOIN {side} ON {side}.month = k.month AND {side}.addon_key = k.addon_key\n"
        f"        AND {side}.{dimension} IS NOT DISTINCT FROM k.{dimension}"
        for side in sides
    )
    return f"(\n        {keys}\n    ) AS k\n{joins}"


# Every month of the window, with its rows (one row with a null app when neither side has any).
_RESULT = """
SELECT
    m.month,
    p.addon_key,
    p.compared,
    CAST(coalesce(p.ours, 0) AS DECIMAL(18, 2)) AS ours,
    CAST(CASE WHEN c.missing IS NULL THEN coalesce(p.atlassian, 0) END AS DECIMAL(18, 2)) AS atlassian,
    -- Both sides are in cents, so a tolerance rounded down to cents passes the same differences.
    CAST(FLOOR(CAST(coalesce(p.tolerance, 0) AS DECIMAL(18, 3)) * 100) / 100 AS DECIMAL(18, 2)) AS tolerance,
    c.missing
FROM months AS m
JOIN coverage AS c ON c.month = m.month
LEFT JOIN pairs AS p ON p.month = m.month
ORDER BY m.month, p.addon_key, p.compared
"""


MRR_VS_RECURRING_REVENUE_SQL = f"""
WITH {_MONTHS},
ours AS (
    SELECT month, addon_key, sum(mrr) AS mrr, count(*) AS hostings
    FROM metrics.mrr_monthly
    WHERE month >= :start AND month < :end
    GROUP BY month, addon_key
),
atlassian AS (
    SELECT
        CAST(date_trunc('month', date) AS DATE) AS month,
        app_key AS addon_key,
        sum(CAST(closing_mrr AS DECIMAL(18, 2))) AS mrr
    FROM partner_metrics.recurring_revenue
    WHERE date >= :start AND date < :end
    GROUP BY CAST(date_trunc('month', date) AS DATE), app_key
),
-- For the tolerance: the line items whose maintenance period covers each month (the MRR rule's n
-- months from the month of the maintenance start), per app.
dated_items AS (
    SELECT
        addon_key,
        COALESCE(purchase_details_maintenance_start_date, purchase_details_sale_date) AS starts,
        purchase_details_maintenance_end_date AS ends
    FROM sales.transactions
),
-- Counted per app, first month and length first (a few hundred groups), so the range join with the
-- months compares those groups, not every line item (seconds on PostgreSQL at the sandbox's volume 10).
periods AS (
    SELECT addon_key, first_month, months, count(*) AS line_items
    FROM (
        SELECT
            addon_key,
            {MONTH_NUMBER.format(d="starts")} AS first_month,
            GREATEST(1, COALESCE({MONTH_NUMBER.format(d="ends")} - {MONTH_NUMBER.format(d="starts")}, 1))
                AS months
        FROM dated_items
        WHERE starts < CAST(:end AS DATE)
    ) AS line_items
    GROUP BY addon_key, first_month, months
),
covering AS (
    SELECT m.month, p.addon_key, sum(p.line_items) AS line_items
    FROM months AS m
    JOIN periods AS p
        ON {MONTH_NUMBER.format(d="m.month")} BETWEEN p.first_month AND p.first_month + p.months - 1
    GROUP BY m.month, p.addon_key
),
pairs AS (
    SELECT
        k.month,
        k.addon_key,
        'MRR, all hostings' AS compared,
        o.mrr AS ours,
        a.mrr AS atlassian,
        {HALF_CENT} * (coalesce(cv.line_items, 0) + coalesce(o.hostings, 1)) AS tolerance
    FROM (SELECT month, addon_key FROM ours UNION SELECT month, addon_key FROM atlassian) AS k
    LEFT JOIN ours AS o ON o.month = k.month AND o.addon_key = k.addon_key
    LEFT JOIN atlassian AS a ON a.month = k.month AND a.addon_key = k.addon_key
    LEFT JOIN covering AS cv ON cv.month = k.month AND cv.addon_key = k.addon_key
),
-- Whether ours is complete for a month is the metric's own verdict, stored on its rows when they were
-- computed (mrr_complete: the loaded sales start early enough for every line item that counts in the
-- month; metrics/mrr.py). Rows stored before that column existed say null, and are compared.
ours_history AS (
    SELECT month, bool_and(mrr_complete) AS complete, min(history_from) AS history_from
    FROM metrics.mrr_monthly
    WHERE month >= :start AND month < :end
    GROUP BY month
),
coverage AS (
    SELECT
        m.month,
        CASE
            WHEN NOT EXISTS (SELECT 1 FROM atlassian AS a WHERE a.month = m.month)
                THEN 'partner_metrics/recurring_revenue has no row for the month'
            WHEN h.month IS NULL
                AND EXISTS (SELECT 1 FROM atlassian AS a WHERE a.month = m.month AND a.mrr <> 0)
                THEN 'metrics/mrr_monthly has no row for the month: materialize it for the month'
            WHEN NOT h.complete
                THEN 'metrics/mrr_monthly was computed from sales since '
                    || coalesce(CAST(h.history_from AS VARCHAR), 'no day')
                    || ', too late for every line item that counts in the month (mrr_complete is false):'
                    || ' ours may be short'
        END AS missing
    FROM months AS m
    LEFT JOIN ours_history AS h ON h.month = m.month
)
{_RESULT}"""

REVENUE_VS_TRANSACTIONS_BY_HOSTING_SQL = f"""
WITH {_MONTHS},
{_CALENDAR},
{
    _weekly_report(
        "sales.transactions_by_hosting", "series AS hosting", "CAST(revenue AS DECIMAL(18, 2)) AS revenue"
    )
},
atlassian AS (
    SELECT month, addon_key, hosting, sum(revenue) AS revenue, count(*) AS elements
    FROM atlassian_weeks
    GROUP BY month, addon_key, hosting
),
metric AS (
    SELECT month, addon_key, hosting, sum(vendor_amount) AS revenue
    FROM metrics.revenue_monthly
    WHERE month >= :start AND month < :end
    GROUP BY month, addon_key, hosting
),
-- The line items sold on the days where the calendar month and Atlassian's weeks part: before the
-- month's first Sunday (in the week of the month before) and after its end (in its last week).
edge_items AS (
    SELECT
        addon_key,
        purchase_details_hosting AS hosting,
        CAST(purchase_details_vendor_amount AS DECIMAL(24, 6)) AS amount,
        CAST(date_trunc('month', purchase_details_sale_date) AS DATE) AS sale_month,
        {_week_month("purchase_details_sale_date")} AS week_month
    FROM sales.transactions
    WHERE purchase_details_sale_date >= CAST(:start AS DATE) - INTERVAL '6 days'
        AND purchase_details_sale_date < CAST(:end AS DATE) + INTERVAL '6 days'
),
shift AS (
    SELECT month, addon_key, hosting, round(sum(amount), 2) AS amount
    FROM (
        SELECT week_month AS month, addon_key, hosting, amount FROM edge_items WHERE week_month <> sale_month
        UNION ALL
        SELECT sale_month, addon_key, hosting, -amount FROM edge_items WHERE week_month <> sale_month
    ) AS moved
    GROUP BY month, addon_key, hosting
),
pairs AS (
    SELECT
        k.month,
        k.addon_key,
        'revenue, ' || coalesce(k.hosting, 'no hosting') AS compared,
        coalesce(metric.revenue, 0) + coalesce(shift.amount, 0) AS ours,
        atlassian.revenue AS atlassian,
        {WEEKLY_ELEMENT_ROUNDING} * coalesce(atlassian.elements, c.weeks) AS tolerance
    FROM {_three_sides("hosting")}
    JOIN calendar AS c ON c.month = k.month
),
{
    _coverage(
        "sales/transactions_by_hosting",
        "atlassian_weeks",
        "SELECT max(purchase_details_sale_date) AS last_day FROM sales.transactions",
        "sales/transactions",
    )
}
{_RESULT}"""

TRIAL_CONVERSION_VS_CONVERSION_SQL = f"""
WITH {_MONTHS},
{_CALENDAR},
{
    _weekly_report(
        "sales.conversion",
        "lower(series) AS compared",
        "count",
        " AND lower(series) IN ('evaluations', 'conversions')",
    )
},
atlassian AS (
    SELECT month, addon_key, compared, sum(count) AS count
    FROM atlassian_weeks
    GROUP BY month, addon_key, compared
),
metric AS (
    SELECT month, addon_key, 'evaluations' AS compared, sum(evaluations) AS count
    FROM metrics.trial_conversion_monthly
    WHERE month >= :start AND month < :end AND lower(hosting) = 'cloud'
    GROUP BY month, addon_key
),
{EVALUATIONS_CTE},
cloud AS (
    SELECT * FROM evaluations
    WHERE lower(hosting) = 'cloud' AND started_on < CAST(:end AS DATE) + INTERVAL '6 days'
),
{paid_cte("cloud")},
-- Each Cloud evaluation on its start day and, once paid, each conversion on its conversion day.
events AS (
    SELECT addon_key, 'evaluations' AS compared, started_on AS day FROM cloud
    UNION ALL
    SELECT cloud.addon_key, 'conversions', paid.paid_on
    FROM cloud JOIN paid ON paid.app_entitlement_number = cloud.app_entitlement_number
),
dated AS (
    SELECT
        addon_key,
        compared,
        CAST(date_trunc('month', day) AS DATE) AS calendar_month,
        {_week_month("day")} AS week_month
    FROM events
    WHERE day >= CAST(:start AS DATE) - INTERVAL '6 days' AND day < CAST(:end AS DATE) + INTERVAL '6 days'
),
-- Evaluations: the metric's cohort months shifted to Atlassian's weeks. Conversions: counted on
-- Atlassian's weeks directly (the metric dates them by their cohort, not by the conversion day).
shift AS (
    SELECT month, addon_key, compared, sum(change) AS count
    FROM (
        SELECT week_month AS month, addon_key, compared, 1 AS change
        FROM dated WHERE compared = 'conversions' OR week_month <> calendar_month
        UNION ALL
        SELECT calendar_month, addon_key, compared, -1
        FROM dated WHERE compared = 'evaluations' AND week_month <> calendar_month
    ) AS moved
    GROUP BY month, addon_key, compared
),
pairs AS (
    SELECT
        k.month,
        k.addon_key,
        'Cloud ' || k.compared AS compared,
        coalesce(metric.count, 0) + coalesce(shift.count, 0) AS ours,
        atlassian.count AS atlassian,
        0 AS tolerance
    FROM {_three_sides("compared")}
    JOIN months AS m ON m.month = k.month
),
{
    _coverage(
        "sales/conversion",
        "atlassian_weeks",
        "SELECT max(last_updated) AS last_day FROM licenses.licenses",
        "licenses/licenses",
    )
}
{_RESULT}"""
