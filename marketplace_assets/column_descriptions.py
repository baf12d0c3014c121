"""Column descriptions that hold for some tables only: per table, per report family, per cadence.

`columns.py` has the shared vocabulary (a column that means the same in every table) and the lookup;
this module has the exceptions, looked up before it. For a table `area/name` the first of these that
describes the column wins:

1. `BY_TABLE["area/name"]`, then every `BY_TABLE` pattern that matches the name (`fnmatch`, e.g.
   `sales/transactions_by_*`); patterns never describe the same column of one table twice (tested);
2. `BY_FAMILY[<the catalog row's family>]` (`reports/report.py`, `Family`);
3. `BY_CADENCE[<the catalog row's cadence>]` (daily, weekly, monthly);
4. `columns.SHARED`.

To describe a new column: if it means the same wherever it appears, add it to `columns.SHARED`;
otherwise add it here, under the narrowest heading that is true.
"""

from __future__ import annotations

# Phrases several descriptions share.
_SUNDAY = "The Sunday that starts the week the row covers (weeks run Sunday to Saturday)"
_MONDAY = "The Monday that starts the week the row covers (partner-metric weeks run Monday to Sunday)"
_FIRST_OF_MONTH = "The 1st of the month the row covers"
_WEEK = "in the week, for the row's series and app (all apps on the total row)"
_ROW = "for the row's app (all apps on the total row)"
_EVENT_PERIOD = "the event concerns (a conversion's first paid period; the period a churn or renewal ends)"

# Reports with an all-apps total row beside the per-app rows (time series, benchmarks, app requests,
# search appearances): the app's identity is null on the total row.
_WITH_TOTAL_ROWS: dict[str, str] = {
    "scope": "`total` for the all-apps total row, `app` for one app's row",
    "addon_key": "The app's key; null on the total row (scope = total)",
    "product_id": "The app's product id (UUID); null on the total row (scope = total)",
    "app_name": "The app's name; null on the total row (scope = total)",
}

BY_CADENCE: dict[str, dict[str, str]] = {
    "daily": {"date": "The day the row covers"},
    "weekly": {"date": _SUNDAY},
    "monthly": {"date": _FIRST_OF_MONTH},
}

BY_FAMILY: dict[str, dict[str, str]] = {
    "time_series": {
        **_WITH_TOTAL_ROWS,
        "dataset": "Null: this report's response has no datasets (kept so every time series has the "
        "same columns)",
    },
    "scoped_records": _WITH_TOTAL_ROWS,
    "appearances": _WITH_TOTAL_ROWS,
}

BY_TABLE: dict[str, dict[str, str]] = {
    # -- evaluations (weekly time series) --------------------------------------------------------------
    "evaluations/*": {"count": f"New evaluations (trials started) {_WEEK}"},
    "evaluations/by_country": {"series": "The evaluating customer's country"},
    "evaluations/by_hosting": {
        "series": "The hosting evaluated: Cloud, Data Center or Server",
        "evaluation_type": "The kind of evaluation the series counts (e.g. Net new evaluation)",
    },
    "evaluations/by_partner": {"series": "The channel partner (Solution Partner) in the evaluations"},
    "evaluations/by_region": {"series": "The evaluating customer's region (e.g. EMEA, Americas, APAC)"},
    # -- sales (weekly time series) --------------------------------------------------------------------
    "sales/transactions_by_*": {
        "count": f"Transactions (sales and refunds) {_WEEK}",
        "net_count": f"Transactions net of refunds {_WEEK}; negative in a week with more refunds",
        "revenue": f"Revenue in USD, refunds netted out, {_WEEK}; can be negative",
        "evaluation_type": "An attribute the API sends on each series (the reference shows `Net new "
        "evaluation`); its meaning for sales is not documented",
    },
    "sales/transactions_by_country": {"series": "The customer's country"},
    "sales/transactions_by_hosting": {"series": "The hosting sold: Cloud, Data Center or Server"},
    "sales/transactions_by_partner": {"series": "The channel partner (Solution Partner) on the sales"},
    "sales/transactions_by_region": {"series": "The customer's region (e.g. EMEA, Americas, APAC)"},
    "sales/transactions_by_tier": {"series": "The user tier sold (e.g. 10 Users)"},
    "sales/transactions_by_type": {"series": "The sale type (e.g. New, Renewal, Upgrade, Downgrade)"},
    "sales/churn": {
        "dataset": "The customers' billing period: Monthly or Annual",
        "series": "Customers (Cloud customers due to renew) or Cancellations (those who cancelled)",
        "count": f"Customers due to renew (series Customers) or cancellations (series Cancellations) in the "
        f"week, {_ROW}",
        "unique_total": "Unique customers in the series over the row's week (each week is requested on "
        "its own); not additive over weeks or apps",
    },
    "sales/conversion": {
        "series": "Evaluations (Cloud evaluations) or Conversions (those that converted to paid)",
        "conversion_type": "The kind of conversion the series counts (e.g. Net new, Upgrade)",
        "count": f"Evaluations (series Evaluations) or evaluations converted to paid (series Conversions) "
        f"in the week, {_ROW}",
    },
    "sales/renewal": {
        "dataset": "The customers' billing period: Monthly or Annual",
        "series": "Renewal opportunities (Cloud subscriptions due to renew) or Renewals (those renewed)",
        "count": f"Renewal opportunities (series Renewal opportunities) or renewals (series Renewals) in "
        f"the week, {_ROW}",
    },
    # -- sales: license events (daily lists) -----------------------------------------------------------
    "sales/*_events": {
        "event_date": "The day of the event (the partition column)",
        "last_updated": "The day Atlassian last changed the event's record",
        "maintenance_start_date": f"The first day of the paid period {_EVENT_PERIOD}",
        "maintenance_end_date": f"The last day of the paid period {_EVENT_PERIOD}",
        "months_valid": "Months the paid period lasts (1: monthly billing, 12: annual)",
        "license_details": "Null: the event carried no license details (churn events never do); when "
        "it does, they are in the license_details_* columns",
        "license_details_app_entitlement_id": "The license's id (UUID), from the event's license details",
        "license_details_app_entitlement_number": "The license's number (E-...), from the event's "
        "license details",
        "license_details_cloud_id": "The Cloud site's id, from the event's license details",
        "license_details_maintenance_start_date": "The first day of the paid period, from the event's "
        "license details (text, YYYY-MM-DD)",
        "license_details_maintenance_end_date": "The last day of the paid period, from the event's "
        "license details (text, YYYY-MM-DD)",
        "license_details_months_valid": "Months the paid period lasts, from the event's license details",
    },
    # -- sales: transactions and the free starter tier (daily) -----------------------------------------
    "sales/transactions": {
        "last_updated": "The day Atlassian last changed the transaction (e.g. it was paid)",
    },
    "sales/free_starter_tier": {
        "date": "The day of the export: the row is an entitlement on the free starter tier that day",
    },
    # -- licenses --------------------------------------------------------------------------------------
    "licenses/licenses": {
        "last_updated": "The day this version of the license was recorded, i.e. the day it changed (the "
        "partition column); every change is a new row",
    },
    "licenses/current": {"last_updated": "The day the license last changed: this row is its latest version"},
    # -- marketing attribution (the record shape is not documented: both shapes seen are described) ----
    "marketing/attribution": {
        "date": "The day the row is dated by: the evaluations' start day, else the first date field the "
        "record has (the `dated_by` metadata says which)",
        "channel": "The marketing channel (e.g. Marketplace search, Organic search, Direct)",
        "source": "The traffic source (e.g. google, marketplace)",
        "medium": "The traffic medium (e.g. organic, cpc, referral)",
        "campaign": "The campaign the traffic came from; null when none",
        "referrer_domain": "The referring site's domain; null when none",
        "visits": "Visits to the app's Marketplace pages from the channel before the evaluations started",
        "unique_visitors": "Distinct visitors among those visits",
        "evaluations": "Evaluations attributed to the channel",
        "installs": "Installs (evaluations and free installs) attributed to the channel",
        "evaluation_start_date": "The day the evaluations started",
        "evaluation_license_type": "The license type of the evaluations",
        "app_key": "The app's key",
        "app_name": "The app's name",
        "app_product_id": "The app's product id (UUID)",
        "channel_name": "The marketing channel (e.g. Marketplace search, Organic search, Direct)",
        "channel_source": "The traffic source (e.g. google, marketplace)",
        "channel_medium": "The traffic medium (e.g. organic, cpc, referral)",
        "channel_campaign": "The campaign the traffic came from; null when none",
        "activity_window_start": "The first day of the 30-day activity window before the evaluations",
        "page_views": "Page views of the app's Marketplace pages in the activity window",
    },
    # -- feedback --------------------------------------------------------------------------------------
    "feedback/details": {
        "date": "The day the customer gave the feedback (the partition column)",
        "feedback_type": "What the customer did: uninstall, unsubscribe or disable (kept as text)",
        "reason_key": "The reason's key (e.g. expectations, cost, alternative)",
        "reason": "The reason the customer picked, in words",
        "message": "The customer's own words; null when they wrote none",
        "addon_version": "The version of the app the customer had",
        "application_key": "The parent product the app ran in (e.g. jira, confluence)",
    },
    "feedback/by_*": {"count": f"Feedback entries {_WEEK}"},
    "feedback/by_reason": {"series": "The feedback's reason key (e.g. alternative, cost, expectations)"},
    "feedback/by_type": {"series": "The feedback type: uninstall, unsubscribe or disable"},
    # -- benchmarks (monthly) --------------------------------------------------------------------------
    "benchmarks/churn": {
        "scope": "Always `app`: the churn benchmark has no all-apps total",
        "addon_key": "The app's key",
        "product_id": "The app's product id",
        "app_name": "The app's name",
        "year": "The year as the API sends it (text, YYYY); `date` has the month as a date",
        "month": "The month as the API sends it (text, 01 to 12); `date` has the month as a date",
        "churned_licenses": "The app's licenses that churned in the month",
        "total_licenses": "The app's licenses that could churn in the month (the base of churn_rate)",
        "churn_rate": "churned_licenses as a share of total_licenses, in percent",
        "isolated_churn_rate": "The app's isolated churn rate in the month, in percent, as Atlassian "
        "computes it",
        "churn_rate_benchmark": "The Marketplace benchmark for churn_rate in the month, in percent",
        "isolated_churn_rate_benchmark": "The Marketplace benchmark for isolated_churn_rate, in percent",
    },
    "benchmarks/evaluations": {
        "evaluation_count": "Cloud evaluations in the month (all apps on the total row)",
        "previous_month_evaluation_count": "Cloud evaluations in the month before",
        "evaluation_mo_m_growth": "Month-over-month growth of evaluation_count, in percent",
        "evaluation_percentile": "The month's evaluation count as a percentile: against all partners on "
        "the total row, against apps on the same base product on app rows",
        "evaluation_mo_m_growth_benchmark_all_partners": "All partners' month-over-month evaluation "
        "growth, in percent (total row)",
        "evaluation_mo_m_growth_benchmark_all_apps_on_base_product": "Month-over-month evaluation growth "
        "of all apps on the app's base product, in percent (app rows)",
        "evaluation_count_ytd": "Cloud evaluations from January to the month, inclusive",
        "evaluation_count_ytd_last_year": "Cloud evaluations in the same months of the year before",
        "evaluation_ytd_yo_y_growth": "Year-to-date evaluations against the same months of the year "
        "before, in percent",
        "evaluation_ytd_percentile": "The year-to-date evaluation count as a percentile (against all "
        "partners on the total row, apps on the same base product on app rows)",
        "evaluation_ytd_yo_y_growth_benchmark_all_partners": "All partners' year-to-date evaluation "
        "growth, in percent (total row)",
        "evaluation_ytd_yo_y_growth_benchmark_all_apps_on_base_product": "Year-to-date evaluation "
        "growth of all apps on the app's base product, in percent (app rows)",
    },
    "benchmarks/sales": {
        "sale": "Sales in the month, in USD (all apps on the total row)",
        "previous_month_sale": "Sales in the month before, in USD",
        "sales_mo_m_growth": "Month-over-month growth of sale, in percent",
        "sales_percentile": "The month's sales as a percentile against all partners",
        "sales_mo_m_growth_benchmark_all_partners": "All partners' month-over-month sales growth, in percent",
        "sales_ytd": "Sales from January to the month, inclusive, in USD",
        "sales_ytd_last_year": "Sales in the same months of the year before, in USD",
        "sales_ytd_yo_y_growth": "Year-to-date sales against the same months of the year before, in percent",
        "sales_ytd_percentile": "The year-to-date sales as a percentile against all partners",
        "sales_ytd_yo_y_growth_benchmark_all_partners": "All partners' year-to-date sales growth, in percent",
    },
    # -- customer insights (monthly): each table groups by one or two of the group_* columns ------------
    "customer_insights/*": {
        "group_region": "Null: this table does not group by region (customer_insights/regions does)",
        "group_edition": "Null: this table does not group by edition (customer_insights/editions does)",
        "group_active_users": "Null: this table does not group by paid activity "
        "(customer_insights/active_users does)",
        "group_product": "Null: this table does not group by product (customer_insights/tiers does)",
        "group_tier": "Null: this table does not group by tier (customer_insights/tiers does)",
        "users_distribution_users_count": "Users of your apps in the row's group in the month",
        "users_distribution_users_percent": "The group's share of your apps' users in the month, in percent",
        "users_distribution_users_marketplace_benchmark": "The Marketplace benchmark ratio for the group, "
        "comparing its share among your users with the Marketplace's",
    },
    "customer_insights/regions": {"group_region": "The row's group: the users' region (e.g. emea, apac)"},
    "customer_insights/editions": {
        "group_edition": "The row's group: the parent product edition (e.g. free, standard, premium)"
    },
    "customer_insights/active_users": {"group_active_users": "The row's group: paid or non-paid users"},
    "customer_insights/tiers": {
        "group_product": "The row's group, with group_tier: the parent product (e.g. Jira, Confluence)",
        "group_tier": "The row's group, with group_product: the user tier (e.g. 1-10, 11-100, Evaluation)",
        "users_distribution_users_percent": "The group's share of the product's users of your apps in "
        "the month, in percent",
    },
    # -- search ----------------------------------------------------------------------------------------
    "search/top_keywords_*": {"percentage": "The keyword's share of all searches in the month, in percent"},
    "search/top_keywords_marketplace": {
        "search_keyword": "A keyword people searched the Marketplace website with"
    },
    "search/top_keywords_embedded_marketplace": {
        "search_keyword": "A keyword people searched the in-product (embedded) Marketplace with"
    },
    "search/zero_result_keywords": {
        "search_keyword": "The keyword of Marketplace searches that found no app",
        "count": "Searches with this keyword and these filters in the month that found no app",
        "product_filter": "The product filter of those searches (e.g. jira, confluence)",
        "hosting_filter": "The hosting filter of those searches (e.g. cloud, dataCenter, server)",
        "category_filter": "The category filter of those searches",
        "other_filter": "Any other filter of those searches (e.g. Beta, Cloud fortified apps)",
    },
    "search/appearances_by_app": {
        "count": "Times the app appeared in Marketplace search results in the week; null on the total row",
        "search_appearances": "Search appearances in the week: the app's, or all your apps' on the total row",
        "leading_search_keyword": "The keyword that brought the app most appearances in the week; null on "
        "the total row",
        "top_search_keyword": "The week's top keyword across your apps; set on the total row only",
    },
    "search/keywords_by_app": {
        "month": "The 1st of the month the row's figures were requested for (the partition's month)",
        "date": "The Sunday that starts the element's week (the API's weekly elements; the first week "
        "can start in the month before)",
        "product_id": "The app's product id (the partition's app)",
        "addon_key": "The app's key",
        "app_name": "The app's name",
        "search_keyword": "A keyword the app appeared in Marketplace search results for",
        "keyword_count": "The app's appearances for this keyword over the month",
        "count": "The app's appearances for this keyword in the week that starts on `date`",
        "leading_search_keyword": "The keyword that brought the app most appearances in the month",
        "all_search_appearances": "The app's search appearances over the month, all keywords",
    },
    # -- app requests (monthly) ------------------------------------------------------------------------
    "app_requests/approvals": {
        "app_requests": "End users' requests for an admin to install the app, in the month",
        "app_requests_approved": "Those requests an admin approved",
        "app_requests_approval_rate": "app_requests_approved as a share of app_requests, in percent",
    },
    # -- partner metrics (one table per query; a query's granularity sets its period) ------------------
    "partner_metrics/*": {
        "date": "The first day of the period the row covers: the day, the Monday that starts the week "
        "(partner-metric weeks run Monday to Sunday) or the 1st of the month, per the query's granularity",
        "install_counts": "Active installs in the period (within the commercial compliance boundary)",
        "user_counts": "Users in the period",
        "download_counts": "Downloads in the period",
        "parent_software": "The parent product (e.g. Jira, Confluence)",
        "parent_software_version": "The parent product's exact version (e.g. 9.12.1)",
        "parent_software_major_versions": "The parent product's major version (e.g. 9.x.x)",
        "parent_software_minor_versions": "The parent product's minor version (e.g. 9.2.x)",
        "opening_mrr": "Monthly recurring revenue at the start of the period",
        "new_mrr": "Monthly recurring revenue from new subscriptions in the period",
        "expansion_mrr": "Monthly recurring revenue added by existing subscriptions (e.g. upgrades)",
        "contraction_mrr": "Monthly recurring revenue lost by existing subscriptions (e.g. downgrades)",
        "reactivated_mrr": "Monthly recurring revenue from subscriptions that came back",
        "expired_mrr": "Monthly recurring revenue lost to subscriptions that ended",
        "closing_mrr": "Monthly recurring revenue at the end of the period",
        "arr": "Annual recurring revenue at the end of the period",
        "lifetime_gmv": "Lifetime gross merchandise value of the app versions named in "
        "lifetime_gmv_app_version_type",
        "lifetime_gmv_app_version_type": "Which app versions lifetime_gmv covers (RUNS_ON_ATLASSIAN, "
        "NATIVE_APP or non-harmonised Forge versions, the default)",
        "non_harmonised_forge_versions_gmv": "Lifetime gross merchandise value of non-harmonised Forge "
        "app versions",
        "standard_forge_app_versions_gmv": "Lifetime gross merchandise value of standard Forge app versions",
    },
    # The default queries (reports/partner_metrics.py): their granularity, so their date, is known.
    "partner_metrics/installs_by_parent_software_version": {"date": _MONDAY},
    "partner_metrics/installs_by_major_version": {"date": _MONDAY},
    "partner_metrics/installs_by_minor_version": {"date": _MONDAY},
    "partner_metrics/gmv": {"date": _FIRST_OF_MONTH},
    "partner_metrics/recurring_revenue": {"date": _FIRST_OF_MONTH},
    # -- the product catalog snapshot (all vendors' apps; descriptions from the reference's CSV fields) -
    "catalog/product_catalog": {
        "snapshot_date": "The day of the catalog snapshot the row comes from (the partition)",
        "product_id": "The product's (app's) unique id; any vendor's app",
        "marketplace_app_key": "The app's unique human-readable key, e.g. mycompany.myapp",
        "marketplace_app_name": "The app's display name",
        "vendor_name": "The vendor's name",
        "summary": "The product's summary",
        "tag_line": "The product's tagline",
        "category_name_list": "The product's categories (a JSON list, as text)",
        "version_number": "The version's display name, e.g. 1.0.0",
        "version_status": "approved: manually approved by Atlassian Support; uninitiated: auto approved",
        "released_at": "When the version was released (text, as the CSV has it)",
        "app_software_hosting": "The version's hosting: CLOUD, DATA_CENTER or SERVER",
        "parent_software_list": "The parent products the version is compatible with (a JSON list, as text)",
        "supported_payment_model": "The version's payment model (e.g. PAID_VIA_ATLASSIAN, FREE)",
        "is_connect": "True if the version uses Atlassian Connect",
        "is_beta": "True if the version is a beta",
        "is_supported": "True if the version is officially supported",
        "is_auto_update_strategy_available": "True if automatic updates are allowed for the version",
        "publicly_visible": "Always true; kept by Atlassian for future use",
        "download_count": "Number of downloads; null where the snapshot has none",
        "number_of_reviews": "Number of reviews of the product",
        "review_score": "The product's review score; null when not rated",
        "average_stars": "The product's average star rating; null when not rated",
    },
}
