"""metrics/revenue_monthly: the month's sales and refunds per app x hosting x sale type, from
sales/transactions, to the cent.

The SQL runs as it is on DuckDB and PostgreSQL (`metrics/sql.py` binds `:start` and `:end`, the month's
window [start, end)). Amounts are summed exactly: each line item's amount is read as a decimal with 6
places (the raw column is DOUBLE on DuckDB, exact numeric on PostgreSQL) and the group's sum is rounded
to cents once, half away from zero.
"""

from __future__ import annotations

from marketplace_assets.metrics.metric import COUNT, DATE, MONEY, TEXT, Column

# The month of a sale is the month of its sale date (purchase_details_sale_date, the partition column
# of sales/transactions). A refund is a line item whose sale type is Refund, whatever its case.
REVENUE_MONTHLY_SQL = """
WITH line_items AS (
    SELECT
        CAST(date_trunc('month', purchase_details_sale_date) AS DATE) AS month,
        addon_key,
        purchase_details_hosting AS hosting,
        purchase_details_sale_type AS sale_type,
        CAST(purchase_details_vendor_amount AS DECIMAL(24, 6)) AS vendor_amount,
        CAST(purchase_details_purchase_price AS DECIMAL(24, 6)) AS purchase_price,
        lower(purchase_details_sale_type) = 'refund' AS is_refund
    FROM sales.transactions
    WHERE purchase_details_sale_date >= :start AND purchase_details_sale_date < :end
)
SELECT
    month,
    addon_key,
    hosting,
    sale_type,
    CAST(round(sum(vendor_amount), 2) AS DECIMAL(18, 2)) AS vendor_amount,
    CAST(round(sum(purchase_price), 2) AS DECIMAL(18, 2)) AS purchase_price,
    count(*) AS line_items,
    count(*) FILTER (WHERE is_refund) AS refunds,
    CAST(round(coalesce(sum(vendor_amount) FILTER (WHERE is_refund), 0), 2) AS DECIMAL(18, 2))
        AS refund_amount
FROM line_items
GROUP BY month, addon_key, hosting, sale_type
ORDER BY month, addon_key, hosting, sale_type
"""

REVENUE_MONTHLY_COLUMNS: dict[str, Column] = {
    "month": Column("The 1st of the month the sales fall in, by sale date (the partition key)", DATE),
    "addon_key": Column("The app's key (e.g. com.example.myapp)", TEXT),
    "hosting": Column("Cloud, Data Center or Server, as the line items say", TEXT),
    "sale_type": Column(
        "The sale type of the line items (e.g. New, Renewal, Upgrade, Downgrade, Refund; as the API "
        "spells it)",
        TEXT,
    ),
    "vendor_amount": Column(
        "What you receive, in USD: the sum of the line items' vendor amounts, refunds included as the "
        "negative amounts the API reports; exact, rounded to cents once",
        MONEY,
    ),
    "purchase_price": Column(
        "What the customers paid, in USD: the sum of the line items' purchase prices, refunds included as "
        "negative amounts; exact, rounded to cents once",
        MONEY,
    ),
    "line_items": Column("The number of transaction line items (sales and refunds)", COUNT),
    "refunds": Column("The number of line items that are refunds (sale type Refund)", COUNT),
    "refund_amount": Column(
        "The vendor amount of the refunds, in USD (negative or zero); already included in vendor_amount",
        MONEY,
    ),
}

REVENUE_MONTHLY_DESCRIPTION = """\
**Revenue per month**, app, hosting and sale type, from every transaction line item of \
`sales/transactions` whose sale date falls in the month.

- `vendor_amount` (what you receive) and `purchase_price` (what the customer paid) are the sums of the \
month's line items, **refunds included** as the negative amounts the API reports. The month's total over \
all rows equals the sum of `sales.transactions` for the month to the cent: amounts are added exactly \
(as decimals, never floats) and each row's sum is rounded to cents once.
- `line_items` counts the line items; `refunds` counts those with sale type Refund and `refund_amount` is \
their vendor amount, shown apart but already in `vendor_amount` (net revenue).
- A refund counts in the month of its own sale date, not in the month of the sale it refunds."""
