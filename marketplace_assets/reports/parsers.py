"""One parser per response family: JSON body in, tidy polars frame out. Pure functions, no I/O.

Parsing is by field name and tolerant: unknown fields become columns, missing optional fields become
nulls, enum-like values stay strings. A body that is not the family's shape at all raises
`ReportShapeError` naming the report and what was found.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from marketplace_assets.api.errors import ReportShapeError
from marketplace_assets.reports.export_files import check_file_complete, read_csv_checked
from marketplace_assets.reports.normalize import flatten, records_frame, snake_case

# The tidy shape (docs/api-notes.md, "Report shape"), shared by every per-app report: identity first, then
# the date.
SCOPED_SCHEMA: dict[str, pl.DataType] = {
    "scope": pl.String(),
    "addon_key": pl.String(),
    "product_id": pl.String(),
    "app_name": pl.String(),
}
TIME_SERIES_SCHEMA: dict[str, pl.DataType] = {
    **SCOPED_SCHEMA,
    "dataset": pl.String(),
    "series": pl.String(),
    "date": pl.Date(),
}
_BLOCK_KEYS = {"name", "series", "datasets", "addonKey", "productId", "_links"}


def _found(body: Any) -> str:
    return str(sorted(body)[:10]) if isinstance(body, dict) else type(body).__name__


def _identity(block: Mapping[str, Any], scope: str) -> dict[str, Any]:
    if scope == "total":
        return {"scope": "total", "addon_key": None, "product_id": None, "app_name": None}
    return {
        "scope": "app",
        "addon_key": block.get("addonKey") or block.get("appKey"),
        "product_id": block.get("productId"),
        "app_name": block.get("name") or block.get("appName") or block.get("addonName"),
    }


# -- time series ---------------------------------------------------------------------------------------
def parse_time_series(body: Any, report: str) -> pl.DataFrame:
    """One row per element, for the all-apps total and for each app."""
    if not isinstance(body, dict) or ("total" not in body and "addons" not in body):
        raise ReportShapeError(report, f"expected 'total' and/or 'addons', found {_found(body)}")
    addons = body.get("addons") or []
    if not isinstance(addons, list):
        raise ReportShapeError(report, f"'addons' is a {type(addons).__name__}, expected a list")
    blocks = [(body["total"], "total")] if isinstance(body.get("total"), dict) else []
    blocks += [(addon, "app") for addon in addons if isinstance(addon, dict)]
    rows: list[dict[str, Any]] = []
    for block, scope in blocks:
        rows += _series_rows(block, report, _identity(block, scope))
    return records_frame(rows, base_schema=TIME_SERIES_SCHEMA, date_columns=("date",))


def _series_rows(block: Mapping[str, Any], report: str, identity: dict[str, Any]) -> list[dict[str, Any]]:
    extra = {snake_case(k): v for k, v in block.items() if k not in _BLOCK_KEYS and not isinstance(v, list)}
    rows: list[dict[str, Any]] = []
    _walk_series(block, None, {**extra, **identity}, report, rows)
    return rows


def _walk_series(
    node: Mapping[str, Any],
    dataset: str | None,
    identity: dict[str, Any],
    report: str,
    rows: list[dict[str, Any]],
) -> None:
    """Collect every series under `node`, whatever the nesting.

    A node with `elements` is a series; a node with `series` is a dataset (named by its `name`). Walking
    by shape rather than by position keeps every element even where a response nests a dataset inside
    a series list or a series directly under `datasets`, as the reference's renewal sample does.
    """
    if isinstance(node.get("elements"), list):
        attributes = {k: v for k, v in node.items() if k not in ("name", "elements", "series", "datasets")}
        for element in node["elements"]:
            rows.append({**identity, "dataset": dataset, "series": node.get("name"), **attributes, **element})
        return
    for key in ("datasets", "series"):
        children = node.get(key)
        if children is None:
            continue
        if not isinstance(children, list):
            raise ReportShapeError(report, f"'{key}' of {node.get('name')!r} is not a list")
        for child in children:
            if not isinstance(child, dict):
                continue
            is_dataset = "elements" not in child and (key == "datasets" or "series" in child)
            _walk_series(child, child.get("name") if is_dataset else dataset, identity, report, rows)


# -- records -------------------------------------------------------------------------------------------
def parse_records(
    records: list[dict[str, Any]],
    *,
    base_schema: Mapping[str, pl.DataType] | None = None,
    date_columns: tuple[str, ...] = ("date",),
) -> pl.DataFrame:
    return records_frame(records, base_schema=base_schema, date_columns=date_columns)


def parse_scoped_records(body: Any, report: str) -> pl.DataFrame:
    """Benchmarks and app requests: a total block and per-app blocks, each with a list of records.

    The blocks' keys differ by endpoint (`total`/`totals`, `addons`/`CloudEvaluationBenchmarkPerApp`/
    `churnBenchmarkPerApp`, `salesBenchmarkPerMonth`/...), so they are found by shape: the total is a
    dict under `total(s)`, the apps are the top-level list of objects, a block's records are its list
    of objects. Records dated by `year` + `month` get a `date` on the 1st.
    """
    if not isinstance(body, dict):
        raise ReportShapeError(report, f"expected an object, found {_found(body)}")
    total = body.get("total") or body.get("totals")
    app_lists = [v for k, v in body.items() if k not in ("total", "totals", "_links") and _is_records(v)]
    if not isinstance(total, dict) and not app_lists:
        raise ReportShapeError(
            report, f"expected a total block and/or a list of app blocks, found {_found(body)}"
        )
    blocks = [(total, "total")] if isinstance(total, dict) else []
    blocks += [(block, "app") for apps in app_lists for block in apps]
    rows: list[dict[str, Any]] = []
    for block, scope in blocks:
        identity = _identity(block, scope)
        for key, records in block.items():
            if key == "_links" or not _is_records(records):
                continue
            for record in records:
                row = {**identity, **record}
                if "date" not in record and "year" in record and "month" in record:
                    row["date"] = f"{int(record['year']):04d}-{int(record['month']):02d}-01"
                rows.append(row)
    return records_frame(rows, base_schema={**SCOPED_SCHEMA, "date": pl.Date()}, date_columns=("date",))


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def parse_insights(body: Any, report: str) -> pl.DataFrame:
    """Customer insights: per month, one row per group with the group's and the distribution's fields."""
    months = (
        [v for k, v in body.items() if k != "_links" and _is_records(v)] if isinstance(body, dict) else []
    )
    if not months:
        raise ReportShapeError(report, f"expected a list of monthly insights, found {_found(body)}")
    rows = []
    for month in months[0]:
        for insight in month.get("insightsType") or []:
            value = insight.get("value", insight) if isinstance(insight, dict) else {}
            rows.append({"date": month.get("date"), **flatten(value)})
    return records_frame(rows, base_schema={"date": pl.Date()}, date_columns=("date",))


def parse_period_details(body: Any, report: str, period_start: date) -> pl.DataFrame:
    """Keyword lists that aggregate the requested window; each row gets its period's start as `date`."""
    if not isinstance(body, dict) or not _is_records(body.get("details", [])):
        raise ReportShapeError(report, f"expected a 'details' list, found {_found(body)}")
    rows = [{"date": period_start.isoformat(), **d} for d in body.get("details") or []]
    return records_frame(rows, base_schema={"date": pl.Date()}, date_columns=("date",))


def parse_appearances(body: Any, report: str, period_start: date) -> pl.DataFrame:
    """Search appearances: one total row for the period and one row per app and element."""
    if not isinstance(body, dict) or ("total" not in body and "addons" not in body):
        raise ReportShapeError(report, f"expected 'total' and/or 'addons', found {_found(body)}")
    rows: list[dict[str, Any]] = []
    if isinstance(body.get("total"), dict):
        rows.append({**_identity({}, "total"), "date": period_start.isoformat(), **body["total"]})
    for addon in body.get("addons") or []:
        summary = {
            k: v for k, v in addon.items() if k not in ("elements", "addonKey", "productId", "addonName")
        }
        elements = addon.get("elements") or [{"date": period_start.isoformat()}]
        rows += [{**_identity(addon, "app"), **summary, **element} for element in elements]
    return records_frame(rows, base_schema={**SCOPED_SCHEMA, "date": pl.Date()}, date_columns=("date",))


def parse_product_keywords(body: Any, report: str, period_start: date) -> pl.DataFrame:
    """One app's keywords for a period: one row per keyword and element, with the app's summary."""
    if not isinstance(body, dict) or not isinstance(body.get("summary", {}), dict):
        raise ReportShapeError(report, f"expected 'summary' and 'details', found {_found(body)}")
    summary = body.get("summary") or {}
    identity = {
        "month": period_start.isoformat(),
        "product_id": summary.get("productId"),
        "addon_key": summary.get("addonKey"),
        "app_name": summary.get("addonName"),
        "leading_search_keyword": summary.get("leadingSearchKeyword"),
        "all_search_appearances": summary.get("allSearchAppearances"),
    }
    rows = []
    for keyword in body.get("details") or []:
        attributes = {k: v for k, v in keyword.items() if k != "elements"}
        for element in keyword.get("elements") or [{}]:
            rows.append({**identity, **attributes, **element})
    schema = {"month": pl.Date(), "product_id": pl.String(), "search_keyword": pl.String(), "date": pl.Date()}
    return records_frame(rows, base_schema=schema, date_columns=("month", "date"))


def parse_csv(path: Path, report: str, *, stamp: Mapping[str, Any] | None = None) -> pl.DataFrame:
    """A CSV export: columns snake_cased, every value kept; `stamp` adds constant columns (e.g. date)."""
    check_file_complete(path, "csv", report)
    try:
        frame = read_csv_checked(path, report, infer_schema_length=10_000, try_parse_dates=False)
    except pl.exceptions.NoDataError:
        frame = pl.DataFrame()
    frame = frame.rename({c: snake_case(c) for c in frame.columns})
    for name, value in (stamp or {}).items():
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(value).alias(name))
    return frame
