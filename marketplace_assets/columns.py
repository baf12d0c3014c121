"""What the warehouse's columns mean, for the column schema the UI shows with each materialization.

Columns are the API's field names in snake_case, flattened (`purchase_details_vendor_amount`), so one
glossary of names plus a few naming rules describes every table without a list per report.
"""

from __future__ import annotations

from marketplace_assets.pii import contact_columns

GLOSSARY: dict[str, str] = {
    "scope": "`total` for all apps together, `app` for one app's rows",
    "addon_key": "The app's key (null on total rows)",
    "product_id": "The app's product id (UUID)",
    "app_name": "The app's name (null on total rows)",
    "addon_name": "The app's name",
    "dataset": "The response's dataset (e.g. billing period); null where the report has none",
    "series": "The series within the dataset (e.g. a country, hosting or tier)",
    "date": "The day, or the first day of the week (Sunday) or month the row covers",
    "month": "The first day of the month the row covers",
    "snapshot_date": "The day of the catalog snapshot",
    "event_date": "The day the event happened",
    "last_updated": "The day the row last changed at Atlassian (rows are revised after the fact)",
    "count": "Number of events (evaluations, sales, feedback, searches, ...) in the period",
    "net_count": "Number of sales net of refunds in the period",
    "revenue": "Revenue in USD in the period",
    "unique_total": "Unique customers over the requested period (not additive over weeks or apps)",
    "transaction_id": "The invoice; one transaction can have several line items",
    "transaction_line_item_id": "One line of a transaction: the unique key of sales/transactions",
    "app_entitlement_number": "The license (entitlement) number, E-XXX-XXX-XXX-XXX",
    "app_entitlement_id": "The license (entitlement) id",
    "host_entitlement_number": "The parent product's entitlement number",
    "cloud_id": "The Cloud site's id",
    "cloud_site_hostname": "The Cloud site's hostname",
    "hosting": "Cloud, Data Center or Server",
    "tier": "The user tier",
    "app_edition": "The app's edition (free, standard, advanced)",
    "license_type": "Commercial, academic, evaluation, ... (kept as text: the API adds values)",
    "status": "The license's status",
    "search_keyword": "The search keyword",
    "percentage": "Share of all searches in the period, in percent",
}


def describe_column(name: str) -> str | None:
    """A description for a warehouse column, or None when nothing useful can be said."""
    if name in GLOSSARY:
        return GLOSSARY[name]
    if contact_columns([name]):
        return "Customer or partner contact detail; stored as MARKETPLACE_PII says (keep, hash or drop)"
    if name.endswith(("_amount", "_price")):
        return "Amount in USD"
    if name.endswith("_date"):
        return "A date (YYYY-MM-DD)"
    if name.endswith(("_company", "_country", "_region")):
        return "The customer's organisation, country or region (not personal data)"
    return None
