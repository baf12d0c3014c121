"""Licensing and sales endpoints: licenses, transactions, their sync and async exports, marketing
attribution exports and the free starter tier export (/rest/3/reporting/developer-space/{id}/...).

Everything is seen as of the sandbox clock (`licensing_data.clock`); async export files are what the
data was when the export started. Export bodies are streamed (`Reply.stream`). A marketing-attribution
file has the record shape the sandbox's export settings had when it started (`attribution_shape`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date, timedelta
from typing import Any

from marketplace_assets.sandbox.data import DATA_START, World
from marketplace_assets.sandbox.export_reports import (
    FREE_STARTER_COLUMNS,
    attribution_columns,
    attribution_rows,
    evaluation_attribution_row,
    free_starter_rows,
)
from marketplace_assets.sandbox.exports import (
    ExportJob,
    csv_chunks,
    export_body,
    find_job,
    json_chunks,
    poll,
    start_export,
)
from marketplace_assets.sandbox.license_query import (
    LicenseFilter,
    iter_licenses,
    license_columns,
    license_page,
    loose,
    tier_numbers,
)
from marketplace_assets.sandbox.licensing_data import clock
from marketplace_assets.sandbox.routing import ApiError, ApiRequest, Reply, Route, href
from marketplace_assets.sandbox.sales_data import (
    TRANSACTION_COLUMNS,
    TransactionFilter,
    iter_transactions,
    transaction_page,
)

DEV = r"/rest/3/reporting/developer-space/(?P<developerId>[^/]+)"
EXPORT_ID = r"(?P<exportId>[^/]+)"
FORMATS = ("csv", "json")
LICENSE_QUERY = (
    "{?productId*,startDate,endDate,text,tier*,dateType,licenseType*,partnerType*,hosting*,status*,"
    "withAttribution,withDataInsights,includeAtlassianLicenses,lastUpdated,sortBy,order,offset,limit}"
)
TRANSACTION_QUERY = (
    "{?productId*,startDate,endDate,text,tier*,saleType*,partnerType*,hosting*,billingPeriod*,lastUpdated,"
    "excludeZeroTransactions,includeManualInvoice,paymentStatus*,sortBy,order,offset,limit}"
)
# Where each kind of async export lives (marketing attribution: the generic developer-space paths).
ASYNC_BASE = {
    "licenses": "licenses/async/export",
    "transactions": "sales/transactions/async/export",
    "attribution": "async/export",
}
START_PATH = {
    "licenses": "licenses/async/export",
    "transactions": "sales/transactions/async/export",
    "attribution": "marketing-attribution/async/export",
}


def dev_path(world: World, rest: str) -> str:
    return f"/rest/3/reporting/developer-space/{world.developer_id}/{rest}"


def _window(req: ApiRequest, as_of: date) -> tuple[date, date]:
    return req.day("startDate") or DATA_START, req.day("endDate") or as_of


def export_format(req: ApiRequest) -> str:
    """`accept=csv|json`; without it the Accept header decides (CSV unless it asks for JSON only)."""
    fmt = req.choice("accept", FORMATS, "")
    if fmt:
        return fmt
    accept = req.headers.get("accept", "").lower()
    return "json" if "application/json" in accept and "text/csv" not in accept else "csv"


def license_filter(req: ApiRequest, as_of: date) -> tuple[LicenseFilter, bool]:
    start, end = _window(req, as_of)
    where = LicenseFilter(
        start=start,
        end=end,
        date_type=req.choice("dateType", ("start", "end"), "start"),
        last_updated=req.day("lastUpdated"),
        product_ids=frozenset(req.many("productId")) or None,
        hosting=loose(req.many("hosting")),
        license_types=loose(req.many("licenseType")),
        tiers=tier_numbers(req.many("tier")),
        statuses=loose(req.many("status")),
        text=req.one("text") or None,
    )
    req.boolean("withAttribution")  # accepted; the reference sample shows no attribution fields
    return where, req.boolean("withDataInsights")


def transaction_filter(req: ApiRequest, as_of: date) -> TransactionFilter:
    start, end = _window(req, as_of)
    return TransactionFilter(
        start=start,
        end=end,
        last_updated=req.day("lastUpdated"),
        product_ids=frozenset(req.many("productId")) or None,
        sale_types=loose(req.many("saleType")),
        hosting=loose(req.many("hosting")),
        tiers=tier_numbers(req.many("tier")),
        partner_types=loose(req.many("partnerType")),
        billing_periods=loose(req.many("billingPeriod")),
        payment_statuses=loose(req.many("paymentStatus")),
        editions=loose(req.many("appEdition")),
        text=req.one("text") or None,
        exclude_zero=req.boolean("excludeZeroTransactions"),
    )


def attribution_file(
    world: World, req: ApiRequest, as_of: date, shape: str = "daily"
) -> Iterator[dict[str, Any]]:
    """Marketing attribution rows, day by day (default window: the 30 days up to the clock), in `shape`
    (the dates select the day of the row, which is the evaluation start day in the evaluation shape)."""
    end = min(req.day("endDate") or as_of, as_of)
    start = max(req.day("startDate") or end - timedelta(days=29), DATA_START)
    ids = frozenset(req.many("productId")) or None
    text = (req.one("text") or "").lower()
    day = start
    while day <= end:
        for row in attribution_rows(world, day, ids):
            if not text or any(text in row[k].lower() for k in ("channel", "source", "campaign")):
                yield row if shape == "daily" else evaluation_attribution_row(world.seed, row)
        day += timedelta(days=1)


def _file(rows: Iterable[dict[str, Any]], fmt: str, columns: tuple[str, ...], name: str) -> Reply:
    if fmt == "csv":
        reply = Reply.chunks(csv_chunks(rows, columns), "text/csv")
    else:
        reply = Reply.chunks(json_chunks(rows), "application/json")
    reply.headers["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return reply


Rows = Iterable[dict[str, Any]]


def _rows(
    world: World, kind: str, req: ApiRequest, as_of: date, shape: str = "daily"
) -> tuple[Rows, tuple[str, ...]]:
    """The rows and CSV columns of an export of `kind` (filters validated before any row is made);
    `shape` is the record shape of marketing attribution."""
    if kind == "licenses":
        where, insights = license_filter(req, as_of)
        return iter_licenses(world, where, as_of, insights), license_columns(insights)
    if kind == "transactions":
        return iter_transactions(world, transaction_filter(req, as_of), as_of), TRANSACTION_COLUMNS
    req.day("startDate"), req.day("endDate")  # validate now: the rows are made while streaming
    return attribution_file(world, req, as_of, shape), attribution_columns(shape)


# --- lists ---------------------------------------------------------------------------------------


def _page_links(
    world: World, req: ApiRequest, rest: str, template: str, offset: int, limit: int, total: int
) -> dict[str, Any]:
    path = dev_path(world, rest)
    base = req.query_without("offset", "limit")
    filters = req.query_without("offset", "limit", "accept")
    links: dict[str, Any] = {
        "self": {"href": href(world, path, req.query)},
        "query": {"href": href(world, path) + template, "templated": True},
        "export": [
            {"href": href(world, f"{path}/export", [*filters, ("accept", fmt)]), "type": mime}
            for fmt, mime in (("csv", "text/csv"), ("json", "application/json"))
        ],
    }
    if offset > 0:
        prev = [*base, ("offset", str(max(0, offset - limit))), ("limit", str(limit))]
        links["prev"] = {"href": href(world, path, prev)}
    if offset + limit < total:
        links["next"] = {
            "href": href(world, path, [*base, ("offset", str(offset + limit)), ("limit", str(limit))])
        }
    return links


def licenses(world: World, req: ApiRequest) -> Reply:
    """GET .../licenses: offset-paged licenses as of the clock (duplicate rows included, as live)."""
    as_of = clock(world)
    where, insights = license_filter(req, as_of)
    offset, limit = req.page()
    total, rows = license_page(world, where, as_of, offset, limit, insights)
    links = _page_links(world, req, "licenses", LICENSE_QUERY, offset, limit, total)
    return Reply({"_links": links, "totalCount": total, "licenses": rows})


def transactions(world: World, req: ApiRequest) -> Reply:
    """GET .../sales/transactions: offset-paged transaction line items as of the clock."""
    as_of = clock(world)
    where = transaction_filter(req, as_of)
    offset, limit = req.page()
    total, rows = transaction_page(world, where, as_of, offset, limit)
    links = _page_links(world, req, "sales/transactions", TRANSACTION_QUERY, offset, limit, total)
    return Reply({"_links": links, "totalCount": total, "transactions": rows})


def sync_export(kind: str) -> Callable[[World, ApiRequest], Reply]:
    def handler(world: World, req: ApiRequest) -> Reply:
        fmt = export_format(req)
        rows, columns = _rows(world, kind, req, clock(world))
        return _file(rows, fmt, columns, kind)

    handler.__doc__ = f"GET .../{kind} export: the whole filtered result, streamed as CSV or JSON."
    return handler


def free_starter_tier(world: World, req: ApiRequest) -> Reply:
    """GET .../sales/freeStarterTier/export: one `date` (ranges are ignored); no productId column."""
    fmt = export_format(req)
    as_of = clock(world)
    day = req.day("date") or as_of
    ids = req.many("productId")
    if any(world.app(product_id) is None for product_id in ids):
        raise ApiError(500, "Internal server error")  # the live service answers 500, not 400/404
    rows = free_starter_rows(world, day, frozenset(ids) or None) if day <= as_of else iter(())
    return _file(rows, fmt, FREE_STARTER_COLUMNS, "free-starter-tier")


# --- async exports -------------------------------------------------------------------------------


def _job_links(world: World, job: ExportJob) -> tuple[str, str]:
    base = dev_path(world, f"{ASYNC_BASE[job.kind]}/{job.id}")
    return href(world, f"{base}/status"), href(world, base)


def start(kind: str) -> Callable[[World, ApiRequest], Reply]:
    def handler(world: World, req: ApiRequest) -> Reply:
        as_of = clock(world)
        fmt = export_format(req)
        _rows(world, kind, req, as_of)  # validates the filters: a bad one is a 400 now, not a failed export
        query = req.query_without("accept")
        job = start_export(world, kind, query, fmt, as_of, dedupe=kind == "attribution")
        status, download = _job_links(world, job)
        path = dev_path(world, START_PATH[kind])
        links = {
            "self": {"href": href(world, path)},
            "query": {"href": href(world, path, req.query)},
            "status": {"href": status},
            "download": {"href": download},
        }
        return Reply({"_links": links, "export": {"id": job.id}})

    handler.__doc__ = f"POST .../{START_PATH[kind]}: start an async export of {kind}."
    return handler


def _job(world: World, req: ApiRequest, kind: str | None) -> ExportJob:
    job = find_job(world, req.params["exportId"], kind)
    if job is None:
        raise ApiError(404, f"Export '{req.params['exportId']}' not found")
    return job


def status(kind: str | None) -> Callable[[World, ApiRequest], Reply]:
    def handler(world: World, req: ApiRequest) -> Reply:
        job = _job(world, req, kind)
        current = poll(world, job)
        status_href, download = _job_links(world, job)
        links = {
            "self": {"href": status_href},
            "query": {"href": status_href},
            "download": {"href": download},
        }
        return Reply({"_links": links, "export": {"id": job.id, "status": current}})

    return handler


def download(kind: str | None) -> Callable[[World, ApiRequest], Reply]:
    def handler(world: World, req: ApiRequest) -> Reply:
        job = _job(world, req, kind)
        if job.status == "FAILED":
            raise ApiError(404, f"Export '{job.id}' failed")
        if job.status != "COMPLETED":
            raise ApiError(404, "Export is being processed")
        stored = ApiRequest("GET", req.path, list(job.query), {}, b"")
        rows, columns = _rows(world, job.kind, stored, job.as_of, job.attribution_shape)
        reply = _file(rows, job.accept, columns, f"{job.kind}-{job.id}")
        generated = reply.stream
        assert generated is not None  # an export file is always streamed
        reply.stream = export_body(world, job, lambda: generated)
        return reply

    return handler


def _async_routes(kind: str, base: str, lookup: str | None) -> tuple[Route, ...]:
    return (
        Route("GET", f"{DEV}/{base}/{EXPORT_ID}/status", status(lookup), f"{kind}_export_status"),
        Route("GET", f"{DEV}/{base}/{EXPORT_ID}", download(lookup), f"{kind}_export_download"),
    )


ROUTES: tuple[Route, ...] = (
    Route("GET", DEV + r"/licenses", licenses, "licenses"),
    Route("GET", DEV + r"/licenses/export", sync_export("licenses"), "licenses_export"),
    Route("POST", DEV + r"/licenses/async/export", start("licenses"), "licenses_export_start"),
    *_async_routes("licenses", "licenses/async/export", "licenses"),
    Route("GET", DEV + r"/sales/transactions", transactions, "transactions"),
    Route("GET", DEV + r"/sales/transactions/export", sync_export("transactions"), "transactions_export"),
    Route(
        "POST", DEV + r"/sales/transactions/async/export", start("transactions"), "transactions_export_start"
    ),
    *_async_routes("transactions", "sales/transactions/async/export", "transactions"),
    Route(
        "POST", DEV + r"/marketing-attribution/async/export", start("attribution"), "attribution_export_start"
    ),
    # Status and download of marketing attribution live at the generic paths (any export answers
    # there); the reference sample's hrefs use marketing-attribution/... paths, so those answer too.
    *_async_routes("generic", "async/export", None),
    *_async_routes("attribution", "marketing-attribution/async/export", "attribution"),
    Route("GET", DEV + r"/sales/freeStarterTier/export", free_starter_tier, "free_starter_tier_export"),
)
