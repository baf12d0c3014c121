"""What the warehouse's columns mean, for the column schema the UI shows with each materialization.

Columns are the API's field names in snake_case, flattened (`purchase_details_vendor_amount`). Most
mean the same in every table that has them: they are described once, in `SHARED` below. Where a
column's meaning depends on the table (`date` is a Sunday in weekly tables and the 1st in monthly ones;
`count` counts evaluations in one report and feedback in another; `addon_key` is null on the total rows
of time series, and feedback has none), `column_descriptions.py` says so per table, per report family
or per cadence, and is looked up first (its docstring gives the order).

`describe_column(table, column)` answers for a table such as `feedback/details`. A column with no
description answers None; the test `test_column_descriptions.py` materializes every asset against the
sandbox and fails on any such column, so a new field gets its description when it appears.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from functools import cache

import dagster as dg

from marketplace_assets.column_descriptions import BY_CADENCE, BY_FAMILY, BY_TABLE
from marketplace_assets.pii import contact_columns
from marketplace_assets.reports.catalog import REPORTS_BY_KEY

# Columns that mean the same in every table that has them.
SHARED: dict[str, str] = {
    # -- the app -----------------------------------------------------------------------------------
    "addon_key": "The app's key (e.g. com.example.myapp)",
    "app_key": "The app's key (e.g. com.example.myapp)",
    "product_id": "The app's product id (UUID)",
    "addon_name": "The app's name",
    "app_name": "The app's name",
    "app_edition": "The app's edition (e.g. Free, Standard, Advanced; kept as the API spells it)",
    "hosting": "Cloud, Data Center or Server",
    # -- licenses (entitlements) and sites -------------------------------------------------------------
    "app_entitlement_id": "The license's (app entitlement's) id (UUID)",
    "app_entitlement_number": "The license's (app entitlement's) number, E-XXX-XXX-XXX-XXX: the key that "
    "joins licenses, sales, events and feedback",
    "host_entitlement_id": "The parent product's (host) entitlement id",
    "host_entitlement_number": "The parent product's (host) entitlement number",
    "cloud_id": "The Cloud site's id; null for Data Center and Server",
    "cloud_site_hostname": "The Cloud site's hostname (e.g. example.atlassian.net); null outside Cloud",
    "cloud_compliance_boundaries": "The Cloud compliance boundaries the license is in (a list, e.g. "
    "commercial)",
    "license_type": "The license type (e.g. COMMERCIAL, ACADEMIC, COMMUNITY, EVALUATION; kept as text: "
    "the API adds values such as starter)",
    "status": "The license's status (e.g. active, inactive; kept as text)",
    "tier": "The user tier (e.g. 25 Users, Unlimited Users, Evaluation)",
    "maintenance_start_date": "The first day of the license's current maintenance (paid or evaluation) "
    "period",
    "maintenance_end_date": "The last day of the license's current maintenance (paid or evaluation) period",
    "last_updated": "The day Atlassian last changed the record (records are revised after the fact)",
    "new_billing_system": "Whether the license is on Atlassian's new Cloud billing system (Yes or No)",
    "extended_server_support": "Whether the Server license has extended support (Yes or No; NA outside "
    "Server)",
    "license_source_type": "Where the license comes from, as the API names it (e.g. Non-Atlassian)",
    "transaction_account_id": "The customer's transaction (billing) account id",
    "evaluation_opportunity_size": "The size (user tier) of the evaluation the license started as; NA "
    "when it was no evaluation",
    "evaluation_license": "The id of the evaluation license this license started as; null when none",
    "days_to_convert_eval": "Days from the evaluation's start to its conversion to paid; NA when it did "
    "not convert",
    "evaluation_start_date": "The first day of the evaluation the license started as",
    "evaluation_end_date": "The last day of the evaluation the license started as",
    "parent_product_name": "The parent (host) product, e.g. Jira or Confluence",
    "parent_product_edition": "The parent product's edition (e.g. Standard, Premium)",
    "parent_product_billing_cycle": "The parent product's billing cycle (Monthly or Annual; NA outside "
    "Cloud)",
    "installed_on_sandbox": "Whether the app is installed on a Cloud sandbox site (Yes or No)",
    # -- the customer's organisation (not personal data: kept whatever MARKETPLACE_PII says) -----------
    "company": "The customer's organisation",
    "country": "The customer's country",
    "region": "The customer's region (e.g. EMEA, Americas, APAC)",
    "contact_details_company": "The customer's organisation",
    "contact_details_country": "The customer's country",
    "contact_details_region": "The customer's region (e.g. EMEA, Americas, APAC)",
    "customer_details_company": "The customer's organisation",
    "customer_details_country": "The customer's country",
    "customer_details_region": "The customer's region (e.g. EMEA, Americas, APAC)",
    # -- transactions ----------------------------------------------------------------------------------
    "transaction_id": "The invoice (IN-...); one transaction can have several line items",
    "transaction_line_item_id": "One line of a transaction: the unique key of sales/transactions",
    "payment_status": "Whether the invoice is paid: Paid or Open (kept as text)",
    "purchase_details_sale_date": "The day of the sale (the partition column)",
    "purchase_details_sale_type": "The sale type (e.g. New, Renewal, Upgrade, Refund, Downgrade; kept "
    "as text)",
    "purchase_details_license_type": "The license type sold (e.g. COMMERCIAL, ACADEMIC, COMMUNITY)",
    "purchase_details_hosting": "Cloud, Data Center or Server",
    "purchase_details_tier": "The user tier the line item pays for (e.g. 10 Users)",
    "purchase_details_old_tier": "The user tier before the sale",
    "purchase_details_change_in_tier": "Whether the sale changed the user tier (Yes, No or Not Applicable, "
    "as the API sends it)",
    "purchase_details_billing_period": "The billing period the line item pays for (Monthly or Annual)",
    "purchase_details_old_billing_period": "The billing period before the sale",
    "purchase_details_change_in_billing_period": "Whether the sale changed the billing period (Yes or No)",
    "purchase_details_parent_product_name": "The parent (host) product, e.g. Jira or Confluence",
    "purchase_details_parent_product_edition": "The parent product's edition (e.g. Standard, Premium)",
    "purchase_details_old_parent_product_edition": "The parent product's edition before the sale",
    "purchase_details_change_in_parent_product_edition": "Whether the parent product's edition changed "
    "(Yes or No)",
    "purchase_details_purchase_price": "What the customer paid for the line item, in USD (negative for "
    "a refund)",
    "purchase_details_vendor_amount": "What you receive for the line item after Atlassian's share, in "
    "USD (negative for a refund)",
    "purchase_details_partner_discount_amount": "The discount the channel partner on the sale got, in USD",
    "purchase_details_discounts": "The discounts applied (a list of type, e.g. LOYALTY_DISCOUNT, and "
    "amount in USD)",
    "purchase_details_maintenance_start_date": "The first day of the maintenance period the line item "
    "pays for",
    "purchase_details_maintenance_end_date": "The last day of the maintenance period the line item pays for",
    "purchase_details_payment_terms": "The invoice's payment terms (e.g. Net30, Upfront)",
    "partner_details_partner_name": "The channel partner (Solution Partner) on the sale; null when the "
    "customer bought directly",
    "partner_details_partner_type": "The channel partner's type (e.g. Expert, Reseller)",
    # -- listings (the product-listing API) ------------------------------------------------------------
    "developer_id": "The developer space's id",
    "state": "The listing's state (e.g. PUBLIC, PRIVATE, READY_TO_LAUNCH)",
    "state_after_approval": "The state the listing moves to once approved",
    "approval_status": "The listing's approval status (e.g. APPROVED)",
    "approval_details_issue_key": "The approval's Marketplace support issue (e.g. MKPLHELP-12345)",
    "approval_details_submitted_date": "When the listing was submitted for approval (text, ISO 8601)",
    "approval_details_approval_date": "When the listing was approved (text, ISO 8601)",
    "approval_details_approved_by": "Who approved the listing, as the API gives it",
    "revision": "The listing's revision, which grows with every change (it detects conflicting updates)",
    "slug": "The listing's URL slug",
    "summary": "The app's summary, as listed",
    "tag_line": "The app's tagline, as listed",
    "community_enabled": "Whether the listing has Atlassian Community enabled",
    "cloud_compliance_boundary": "Whether the app is within the Cloud compliance boundary",
    "data_center_review_issue_key": "The app's Data Center review issue (e.g. DCHELP-123)",
    "marketing_labels": "The listing's marketing labels (a list)",
    "enrolled_programs": "The programs the app is enrolled in, per hosting (a list of id, name, "
    "hostingType and status)",
    "tags_category": "The listing's categories (a list of id and name)",
    "tags_keywords": "The listing's keywords (a list of id and name)",
    "hosting_visibility_cloud": "The listing's visibility setting for Cloud, as the API names it; null "
    "when unset",
    "hosting_visibility_data_center": "The listing's visibility setting for Data Center, as the API names "
    "it; null when unset",
    "hosting_visibility_server": "The listing's visibility setting for Server, as the API names it; null "
    "when unset",
    "images_icon_file_id": "The file id of the listing's icon",
    "images_banner_file_id": "The file id of the listing's banner",
    "images_title_logo_file_id": "The file id of the listing's title logo",
    "developer_links_issue_tracker": "The app's issue tracker URL",
    "developer_links_support_ticket_system": "The app's support portal URL",
    "developer_links_app_status_page": "The app's status page URL",
    "developer_links_forums": "The app's forums URL",
    "developer_links_privacy": "The app's privacy policy URL",
    "third_party_integrations_google_analytics_id": "The listing's Google Analytics (Universal) id",
    "third_party_integrations_google_analytics4_id": "The listing's Google Analytics 4 id",
    "third_party_integrations_segment_write_key": "The listing's Segment write key",
    "third_party_integrations_jsd_embedded_data_key": "The listing's Jira Service Management embedded "
    "data key",
}

# Contact fields (`pii.contact_columns`: the name, email, phone or address of a technical or billing
# contact) are matched by name, so a detail the API adds (address2, state, ...) is covered the day it
# appears. The channel partner's contact is under partner_details_; every other one is the customer's.
PERSONAL_DATA = "personal data, stored as MARKETPLACE_PII says (keep, hash or drop)"
PARTNER_CONTACT = (
    f"A detail of the channel partner's billing contact, as the column name says; {PERSONAL_DATA}"
)
CUSTOMER_CONTACT = (
    f"A detail of the customer's technical or billing contact, as the column name says; {PERSONAL_DATA}"
)


def describe_column(table: str | dg.AssetKey, column: str) -> str | None:
    """What `column` means in `table` (an asset key, or its user string `area/name`); None when no
    description exists."""
    label = table.to_user_string() if isinstance(table, dg.AssetKey) else table
    for descriptions in _lookup_order(label):
        if column in descriptions:
            return descriptions[column]
    if contact_columns([column]):
        return PARTNER_CONTACT if column.startswith("partner_details_") else CUSTOMER_CONTACT
    return None


@cache
def _lookup_order(label: str) -> tuple[Mapping[str, str], ...]:
    """The description tables consulted for `label`, most specific first (column_descriptions.py)."""
    patterns = [d for key, d in BY_TABLE.items() if key != label and fnmatchcase(label, key)]
    report = REPORTS_BY_KEY.get(dg.AssetKey(label.split("/")))
    family = BY_FAMILY.get(report.family.value, {}) if report else {}
    cadence = BY_CADENCE.get(report.cadence.value, {}) if report and report.cadence else {}
    return (BY_TABLE.get(label, {}), *patterns, family, cadence, SHARED)
