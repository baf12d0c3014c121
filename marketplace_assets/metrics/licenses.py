"""Metrics from the license history (licenses/licenses: every version of every license, one per license
and day, keyed app_entitlement_number + last_updated): active paid licenses per day, and how many
evaluations convert to paid.

Both SQL texts run as they are on DuckDB and PostgreSQL (`metrics/sql.py` binds `:start` and `:end`, the
partition's window [start, end)).
"""

from __future__ import annotations

from marketplace_assets.metrics.metric import COUNT, DATE, TEXT, Column

# License types that are paid for. Evaluations (EVALUATION, net_new_evaluation, upgrade_evaluation) and
# free licenses (COMMUNITY, OPEN_SOURCE, DEMONSTRATION, starter, ...) are not; an unknown new type is
# not counted as paid until it is added here.
PAID_LICENSE_TYPES = ("COMMERCIAL", "ACADEMIC")
_PAID = "upper({alias}license_type) IN (" + ", ".join(f"'{t}'" for t in PAID_LICENSE_TYPES) + ")"
CONVERSION_WINDOWS = (30, 60, 90)

# Each version holds from its last_updated until the license's next version; a day counts the version
# holding on it (the latest known on that day). The history keeps one version per license and day
# (the merge keeps the last row the API sent for the day), so no two versions tie.
ACTIVE_LICENSES_DAILY_SQL = f"""
WITH versions AS (
    SELECT
        app_entitlement_number,
        addon_key,
        hosting,
        app_edition,
        license_type,
        status,
        maintenance_start_date,
        maintenance_end_date,
        last_updated,
        lead(last_updated) OVER (PARTITION BY app_entitlement_number ORDER BY last_updated) AS superseded_on
    FROM licenses.licenses
    WHERE last_updated < :end
),
days AS (
    SELECT CAST(calendar.day AS DATE) AS day
    FROM generate_series(
        CAST(:start AS TIMESTAMP), CAST(:end AS TIMESTAMP) - INTERVAL '1 day', INTERVAL '1 day'
    ) AS calendar(day)
)
SELECT
    days.day,
    v.addon_key,
    v.hosting,
    v.app_edition AS edition,
    count(DISTINCT v.app_entitlement_number) AS active_licenses
FROM days
JOIN versions AS v
    ON v.last_updated <= days.day AND (v.superseded_on IS NULL OR days.day < v.superseded_on)
WHERE {_PAID.format(alias="v.")}
    AND lower(v.status) = 'active'
    AND (v.maintenance_start_date IS NULL OR v.maintenance_start_date <= days.day)
    AND v.maintenance_end_date >= days.day
GROUP BY days.day, v.addon_key, v.hosting, v.app_edition
ORDER BY days.day, v.addon_key, v.hosting, v.app_edition
"""

ACTIVE_LICENSES_DAILY_COLUMNS: dict[str, Column] = {
    "day": Column("The day the licenses were active on (the partition key)", DATE),
    "addon_key": Column("The app's key (e.g. com.example.myapp)", TEXT),
    "hosting": Column("Cloud, Data Center or Server", TEXT),
    "edition": Column(
        "The app's edition on the license (e.g. Standard, Advanced), as the API spells it", TEXT
    ),
    "active_licenses": Column(
        "Licenses active and paid on the day (see the asset's description for the rule)", COUNT
    ),
}

ACTIVE_LICENSES_DAILY_DESCRIPTION = f"""\
**Active paid licenses per day**, app, hosting and edition, from the license history \
`licenses/licenses`.

A license counts on a day when the version of it that holds on that day (its latest version with \
`last_updated` on or before the day; each version holds until the license's next one) is:
- **paid**: `license_type` is {" or ".join(PAID_LICENSE_TYPES)} (case ignored). Evaluations and free \
licenses (community, open source, demonstration, starter) are not paid;
- **active**: `status` is `active`;
- **in its maintenance period**: the day lies between `maintenance_start_date` and \
`maintenance_end_date`, inclusive. A license whose period ended without a new version (it lapsed, or \
its renewal has not arrived yet) stops counting the day after its end date.

The history keeps one version per license and day (the merge keeps the last one the API sent that \
day), so a license changed several times in a day counts as its last version of the day. Only versions \
the history has observed count: a license history loaded by a one-off backfill holds each license as \
it was on the day of the backfill, not the versions before it."""

_EVALUATION = "lower({alias}license_type) LIKE '%evaluation%'"
# The conversion windows as columns: an evaluation converted within N days is paid on or before its
# start day + N.
_WINDOW_COUNTS = ",\n    ".join(
    f"count(*) FILTER (WHERE days_to_paid <= {n}) AS converted_within_{n}_days" for n in CONVERSION_WINDOWS
)

# The data-insight fields of a license (docs/api-notes.md, "Data insights"), read as text whatever type
# the loader gave them: a date, and a number of days, or NA.
_INSIGHT_START = (
    "CASE WHEN CAST(evaluation_start_date AS VARCHAR) SIMILAR TO '[0-9]{4}-[0-9]{2}-[0-9]{2}' "
    "THEN CAST(CAST(evaluation_start_date AS VARCHAR) AS DATE) END"
)
_INSIGHT_DAYS = (
    "CASE WHEN CAST(days_to_convert_eval AS VARCHAR) SIMILAR TO '[0-9]+' "
    "THEN CAST(CAST(days_to_convert_eval AS VARCHAR) AS INTEGER) END"
)

# The CTE `evaluations`: one row per evaluation (license), with its app, hosting, type, start day and,
# from the data insights, the days it took to convert. A license is an evaluation if the history holds an
# evaluation version of it, or if its data insights give an evaluation start (a license that converted
# before the history was loaded is stored as paid only, but still says it began as an evaluation). The
# metric below and its reconciliation with Atlassian's conversion report (reconcile_sql.py) share it.
EVALUATIONS_CTE = f"""evaluations AS (
    SELECT
        app_entitlement_number,
        min(addon_key) AS addon_key,
        min(hosting) AS hosting,
        min(CASE WHEN {_EVALUATION.format(alias="")} THEN license_type END) AS evaluation_type,
        coalesce(
            min(CASE WHEN {_EVALUATION.format(alias="")}
                THEN coalesce(maintenance_start_date, last_updated) END),
            min({_INSIGHT_START})
        ) AS started_on,
        min({_INSIGHT_DAYS}) AS days_to_convert
    FROM licenses.licenses
    WHERE {_EVALUATION.format(alias="")} OR {_INSIGHT_START} IS NOT NULL
    GROUP BY app_entitlement_number
)"""


def paid_cte(evaluations: str) -> str:
    """The CTE `paid`: for each evaluation of the relation `evaluations` that became paid, the day it did:
    its start plus the data insights' days to convert when they give them, else the last_updated of the
    license's first paid version on or after the start.

    The paid versions are matched to their evaluation by a window over one stream of days per license
    (the evaluation's start, then its paid versions), not by a join: PostgreSQL estimates a filtered
    aggregate such as `evaluations` at a row or two, and then rescans the whole license history once per
    evaluation in a nested loop (minutes at the sandbox's volume 10, where this runs in well under a
    second)."""
    return f"""paid AS (
    SELECT app_entitlement_number, min(paid_on) AS paid_on
    FROM (
        SELECT app_entitlement_number, started_on + days_to_convert AS paid_on
        FROM {evaluations}
        WHERE days_to_convert IS NOT NULL
        UNION ALL
        SELECT app_entitlement_number, day AS paid_on
        FROM (
            SELECT
                app_entitlement_number,
                day,
                is_paid,
                max(CASE WHEN NOT is_paid THEN day END)
                    OVER (PARTITION BY app_entitlement_number) AS started_on
            FROM (
                SELECT app_entitlement_number, started_on AS day, FALSE AS is_paid
                FROM {evaluations}
                WHERE days_to_convert IS NULL
                UNION ALL
                SELECT v.app_entitlement_number, v.last_updated, TRUE
                FROM licenses.licenses AS v
                WHERE {_PAID.format(alias="v.")}
            ) AS license_days
        ) AS dated_days
        WHERE is_paid AND day >= started_on
    ) AS conversions
    GROUP BY app_entitlement_number
)"""


TRIAL_CONVERSION_MONTHLY_SQL = f"""
WITH {EVALUATIONS_CTE},
cohort AS (
    SELECT * FROM evaluations WHERE started_on >= :start AND started_on < :end
),
{paid_cte("cohort")},
outcomes AS (
    SELECT cohort.*, paid.paid_on - cohort.started_on AS days_to_paid
    FROM cohort
    LEFT JOIN paid ON paid.app_entitlement_number = cohort.app_entitlement_number
)
SELECT
    CAST(date_trunc('month', started_on) AS DATE) AS month,
    addon_key,
    hosting,
    evaluation_type,
    count(*) AS evaluations,
    {_WINDOW_COUNTS},
    count(days_to_paid) AS converted_to_date,
    (SELECT max(last_updated) FROM licenses.licenses) AS history_through
FROM outcomes
GROUP BY CAST(date_trunc('month', started_on) AS DATE), addon_key, hosting, evaluation_type
ORDER BY month, addon_key, hosting, evaluation_type
"""

TRIAL_CONVERSION_MONTHLY_COLUMNS: dict[str, Column] = {
    "month": Column(
        "The 1st of the cohort month: the month the evaluations started in (the partition key)", DATE
    ),
    "addon_key": Column("The app's key (e.g. com.example.myapp)", TEXT),
    "hosting": Column("Cloud, Data Center or Server", TEXT),
    "evaluation_type": Column(
        "The evaluation's license type (e.g. EVALUATION, net_new_evaluation, upgrade_evaluation), as the "
        "API spells it; null for evaluations known only from a paid license's data insights",
        TEXT,
    ),
    "evaluations": Column("Evaluations started in the month", COUNT),
    **{
        f"converted_within_{n}_days": Column(
            f"Of those, evaluations whose license became paid at most {n} days after the evaluation "
            f"started (counts so far while the {n}-day window is open: see history_through)",
            COUNT,
        )
        for n in CONVERSION_WINDOWS
    },
    "converted_to_date": Column(
        "Of those, evaluations whose license has become paid so far, however long it took", COUNT
    ),
    "history_through": Column(
        "The latest last_updated in the license history when the row was computed: a cohort's N-day "
        "window is complete once this is at least N days after the cohort month's last day",
        DATE,
    ),
}

TRIAL_CONVERSION_MONTHLY_DESCRIPTION = f"""\
**Trial conversion per cohort month**, app, hosting and evaluation type, from the license history \
`licenses/licenses`.

- **An evaluation** is a license (`app_entitlement_number`) with a version whose `license_type` is an \
evaluation type (`EVALUATION`, `net_new_evaluation`, `upgrade_evaluation`: any type containing \
"evaluation"), or whose data insights give an `evaluation_start_date` (a license that converted before \
the history was loaded is stored as paid only, and still says it began as an evaluation; its \
`evaluation_type` is then null). It **starts** on the earliest `maintenance_start_date` of its \
evaluation versions (an evaluation's maintenance period is the trial), else on its \
`evaluation_start_date`, and belongs to the cohort of that month.
- **It converts** on its start day plus the data insights' `days_to_convert_eval` when they give it, \
else on the `last_updated` of the first version of the same license, on or after the start, whose type \
is paid ({" or ".join(PAID_LICENSE_TYPES)}). Days to paid = that day minus the start day; \
`converted_within_30_days`, `_60_` and `_90_` count the evaluations paid within that many days \
(day 30 itself is within 30), and `converted_to_date` those paid at all so far.
- **Unfinished windows**: a cohort's N-day window ends N days after the cohort month's last day. Until \
the license history reaches that day (`history_through`), the column counts the conversions seen so \
far and can still grow; the automation re-computes the last 4 cohorts after each license refresh. In \
the lineage a cohort depends on the license history from its month to the 4th month after it: the \
90-day window of an evaluation started on the month's last day can end in the 4th month (31 January + \
90 days = 1 May).
- The license exports ask for the data insights, so an evaluation that had converted before the \
history was first loaded (stored as a paid license only) is still counted, from its \
`evaluation_start_date` and `days_to_convert_eval`. The API has them for licenses from 2018-07-01 on. \
An evaluation converted into a new license (Server and Data Center trials) is not linked to it."""
