"""One parser (and request shape) per response family. The catalog row picks the family.

- time series: `total` / `addons` → optional `datasets` → `series` → `elements`, stored tidy.
- offset list: `_links.next` + `totalCount` pages of records under a key (feedback, licenses, ...).
- cursor list: `links.next` pages of `items` (product listings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import polars as pl

from marketplace_assets.api.client import MarketplaceClient, validate_range
from marketplace_assets.api.errors import ReportShapeError
from marketplace_assets.reports.normalize import records_frame, snake_case

if TYPE_CHECKING:
    from marketplace_assets.reports.catalog import Report


@dataclass(frozen=True)
class Window:
    """An inclusive date range, as the API's startDate/endDate take it."""

    start: date
    end: date

    def __post_init__(self) -> None:
        validate_range(self.start, self.end)

    def params(self) -> dict[str, str]:
        return {"startDate": self.start.isoformat(), "endDate": self.end.isoformat()}


# The tidy time-series shape of DESIGN.md. Series attributes and element numbers beyond these become
# columns of their own (evaluation_type, net_count, revenue, ...).
TIME_SERIES_SCHEMA: dict[str, pl.DataType] = {
    "scope": pl.String(),
    "addon_key": pl.String(),
    "product_id": pl.String(),
    "app_name": pl.String(),
    "dataset": pl.String(),
    "series": pl.String(),
    "date": pl.Date(),
}
_BLOCK_KEYS = {"name", "series", "datasets", "addonKey", "productId", "_links"}


def parse_time_series(body: Any, report: str) -> pl.DataFrame:
    """One row per element, for the all-apps total and for each app."""
    if not isinstance(body, dict) or ("total" not in body and "addons" not in body):
        found = sorted(body)[:10] if isinstance(body, dict) else type(body).__name__
        raise ReportShapeError(report, f"expected 'total' and/or 'addons', found {found}")
    rows: list[dict[str, Any]] = []
    if isinstance(body.get("total"), dict):
        rows += _block_rows(
            body["total"], report, scope="total", addon_key=None, product_id=None, app_name=None
        )
    addons = body.get("addons") or []
    if not isinstance(addons, list):
        raise ReportShapeError(report, f"'addons' is a {type(addons).__name__}, expected a list")
    for addon in addons:
        rows += _block_rows(
            addon,
            report,
            scope="app",
            addon_key=addon.get("addonKey"),
            product_id=addon.get("productId"),
            app_name=addon.get("name"),
        )
    return records_frame(rows, base_schema=TIME_SERIES_SCHEMA, date_columns=("date",))


def _block_rows(block: Mapping[str, Any], report: str, **identity: Any) -> list[dict[str, Any]]:
    extra = {snake_case(k): v for k, v in block.items() if k not in _BLOCK_KEYS and not isinstance(v, list)}
    if isinstance(block.get("datasets"), list):
        groups = [(ds.get("name"), ds.get("series")) for ds in block["datasets"]]
    else:
        groups = [(None, block.get("series"))]
    rows: list[dict[str, Any]] = []
    for dataset, series_list in groups:
        if not isinstance(series_list, list):
            raise ReportShapeError(report, f"a block has no 'series' list (dataset {dataset!r})")
        for series in series_list:
            attributes = {k: v for k, v in series.items() if k not in ("name", "elements")}
            for element in series.get("elements") or []:
                rows.append(
                    {
                        **extra,
                        **identity,
                        "dataset": dataset,
                        "series": series.get("name"),
                        **attributes,
                        **element,
                    }
                )
    return rows


def parse_records(records: list[dict[str, Any]], report: Report) -> pl.DataFrame:
    return records_frame(records, base_schema=report.base_schema, date_columns=report.date_columns)


# -- request shapes ------------------------------------------------------------------------------------
Fetcher = Callable[[MarketplaceClient, "Report", str, Window | None], pl.DataFrame]


def fetch_time_series(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    assert window is not None, f"{report.label} is a time series and needs a date window"
    params = {"aggregation": report.aggregation, **window.params(), **report.params}
    return parse_time_series(client.get_json(report.resolve_path(developer_id), params), report.label)


def fetch_offset_list(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    assert report.records_key, f"{report.label} needs records_key in its catalog row"
    params = {**(window.params() if window else {}), **report.params}
    records = client.get_offset_paged(report.resolve_path(developer_id), params, report.records_key)
    return parse_records(records, report)


def fetch_cursor_list(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    params = {**(window.params() if window else {}), **report.params}
    items = client.get_cursor_paged(report.resolve_path(developer_id), params, report.records_key or "items")
    return parse_records(items, report)
