"""How each response family is requested: the window becomes query parameters, the body a frame."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from marketplace_assets.api.client import MarketplaceClient, validate_range
from marketplace_assets.reports import parsers
from marketplace_assets.reports.report import Family, Report


@dataclass(frozen=True)
class Window:
    """An inclusive date range, as the API's startDate/endDate take it."""

    start: date
    end: date

    def __post_init__(self) -> None:
        validate_range(self.start, self.end)

    def params(self) -> dict[str, str]:
        return {"startDate": self.start.isoformat(), "endDate": self.end.isoformat()}


Fetcher = Callable[[MarketplaceClient, Report, str, "Window | None"], pl.DataFrame]


def _window(report: Report, window: Window | None) -> Window:
    if window is None:
        raise ValueError(f"{report.label} is partitioned by date and needs a date window")
    return window


def _ranged(report: Report, window: Window | None, **extra: Any) -> dict[str, Any]:
    return {**(window.params() if window else {}), **extra, **report.params}


def fetch_time_series(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    params = _ranged(report, _window(report, window), aggregation=report.aggregation)
    return parsers.parse_time_series(client.get_json(report.resolve_path(developer_id), params), report.label)


def fetch_offset_list(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    records_key = report.records_key or report.name
    records = client.get_offset_paged(report.resolve_path(developer_id), _ranged(report, window), records_key)
    return parsers.parse_records(records, base_schema=report.base_schema, date_columns=report.date_columns)


def fetch_cursor_list(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    items = client.get_cursor_paged(
        report.resolve_path(developer_id), _ranged(report, window), report.records_key or "items"
    )
    return parsers.parse_records(items, base_schema=report.base_schema, date_columns=report.date_columns)


def fetch_scoped_records(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    body = client.get_json(report.resolve_path(developer_id), _ranged(report, _window(report, window)))
    return parsers.parse_scoped_records(body, report.label)


def fetch_insights(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    body = client.get_json(report.resolve_path(developer_id), _ranged(report, _window(report, window)))
    return parsers.parse_insights(body, report.label)


def fetch_period_details(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    period = _window(report, window)
    body = client.get_json(report.resolve_path(developer_id), _ranged(report, period))
    return parsers.parse_period_details(body, report.label, period.start)


def fetch_appearances(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    period = _window(report, window)
    body = client.get_json(
        report.resolve_path(developer_id), _ranged(report, period, aggregation=report.aggregation)
    )
    return parsers.parse_appearances(body, report.label, period.start)


def fetch_csv_export(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    """A CSV export that takes one `date` (the free starter tier): one download per day."""
    day = _window(report, window).start
    path = client.download(
        report.resolve_path(developer_id),
        params={"accept": "csv", "date": day.isoformat(), **report.params},
        suffix=".csv",
    )
    try:
        frame = parsers.parse_csv(path, report.label, stamp={"date": day})
    finally:
        path.unlink(missing_ok=True)
    return frame.with_columns(pl.col("date").cast(pl.String).str.slice(0, 10).str.to_date("%Y-%m-%d"))


FETCHERS: dict[Family, Fetcher] = {
    Family.TIME_SERIES: fetch_time_series,
    Family.OFFSET_LIST: fetch_offset_list,
    Family.CURSOR_LIST: fetch_cursor_list,
    Family.SCOPED_RECORDS: fetch_scoped_records,
    Family.INSIGHTS: fetch_insights,
    Family.PERIOD_DETAILS: fetch_period_details,
    Family.APPEARANCES: fetch_appearances,
    Family.CSV_EXPORT: fetch_csv_export,
}


def fetch_report(
    client: MarketplaceClient, report: Report, developer_id: str, window: Window | None
) -> pl.DataFrame:
    return FETCHERS[report.family](client, report, developer_id, window)
