"""Reading a downloaded file (an async export's CSV or JSON, a CSV report) into a snake_case frame.

Both readers stay inside polars (no Python object per row), so a file of a million line items is read
in bounded memory. Columns come out as in `normalize.flatten`: the leaf path joined with `_`.

A file whose last record is cut fails as truncated before it is parsed: polars would read a CSV line
cut short as a row with nulls in its missing fields (docs/api-notes.md, "Completeness").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import polars as pl

from marketplace_assets.api.errors import IncompleteDataError, ReportShapeError, TypeDriftError
from marketplace_assets.reports.normalize import parse_dates, snake_case
from marketplace_assets.warehouse.batches import BATCH_ROWS, Batches, BatchWriter

# polars' message when a value does not fit the type it inferred from the first rows.
_UNPARSABLE = re.compile(
    r"could not parse `(?P<value>.*?)` as dtype `(?P<dtype>[^`]+)` at column '(?P<column>[^']+)'"
)
_TAIL = 4096
T = TypeVar("T")

# polars' streaming CSV reader takes the file in chunks of this many bytes. Its default chunk made a
# million-row export peak at 580 MB while being staged; 1 MiB chunks peak at 350 MB at the same speed
# (bench/results/large_export.md). polars reads the variable at each scan; a value set before the
# process starts wins.
os.environ.setdefault("POLARS_CSV_CHUNK_SIZE", str(1 << 20))

# Identifiers that look numeric but are text (postcodes, phone numbers, entitlement numbers, ...): read
# as strings so leading zeros and formats survive.
_TEXT_LIKE = re.compile(r"(postcode|phone|id|number|key|hostname|tier|name|email|address)$", re.IGNORECASE)


def _leaf(column: str) -> str:
    return column.rsplit(".", 1)[-1]


def check_file_complete(path: Path, fmt: str, report: str) -> None:
    """Refuse a file whose last record is cut: a CSV must end with a line end, a JSON document with the
    bracket or brace that closes it. (An empty file is an empty result, not a cut one.)"""
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb") as file:
        file.seek(max(0, size - _TAIL))
        tail = file.read()
    last = tail.rstrip(b" \t\r\n")[-1:] if fmt == "json" else tail[-1:]
    expected = (b"]", b"}") if fmt == "json" else (b"\n",)
    if last not in expected:
        ending = tail.splitlines()[-1][-80:].decode("utf-8", "replace") if tail.strip() else ""
        raise IncompleteDataError(
            f"Report {report}",
            f"the {fmt.upper()} file ({size} bytes) is truncated: its last record is cut off "
            f"(it ends with {ending!r}, not {' or '.join(repr(e.decode()) for e in expected)})",
        )


def read_csv_export(path: Path, report: str) -> pl.DataFrame:
    """A CSV export: dotted camelCase headers (`purchaseDetails.purchasePrice`), lists as JSON text."""
    check_file_complete(path, "csv", report)
    try:
        header = pl.read_csv(path, n_rows=0).columns
    except pl.exceptions.NoDataError:
        return pl.DataFrame()
    overrides = {c: pl.String for c in header if _TEXT_LIKE.search(_leaf(c))}
    frame = read_csv_checked(path, report, schema_overrides=overrides, infer_schema_length=10_000)
    frame = frame.rename({c: snake_case(c) for c in frame.columns})
    return _decode_json_lists(frame)


def read_csv_checked(path: Path, report: str, **options: object) -> pl.DataFrame:
    """`pl.read_csv`, with its failures said in the report's terms: a value that does not fit the type
    the column had in earlier rows is type drift; anything else is a file that does not parse."""
    return _csv_errors_named(report, lambda: pl.read_csv(path, **options))  # type: ignore[arg-type]


def _decode_json_lists(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV exports write arrays (discounts, ...) as JSON text; arrays are list columns everywhere else."""
    for column, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        values = frame[column].drop_nulls()
        if values.len() and values.str.starts_with("[").all():
            # The Series method infers the list's type; polars 2's expression form needs it spelled out.
            frame = frame.with_columns(frame[column].str.json_decode())
    return frame


def read_json_export(path: Path, report: str) -> pl.DataFrame:
    """A JSON export (an array of objects): nested objects unnested into columns, lists kept as lists."""
    if path.stat().st_size <= 2:
        return pl.DataFrame()
    check_file_complete(path, "json", report)
    try:
        frame = pl.read_json(path, infer_schema_length=None)
    except (pl.exceptions.ComputeError, ValueError) as exc:
        raise ReportShapeError(report, f"the export JSON does not parse: {str(exc).splitlines()[0]}") from exc
    frame = _unnest_all(frame)
    return frame.rename({c: snake_case(c) for c in frame.columns})


def _unnest_all(frame: pl.DataFrame) -> pl.DataFrame:
    while structs := [c for c, dtype in frame.schema.items() if isinstance(dtype, pl.Struct)]:
        for column in structs:
            fields = [f.name for f in frame.schema[column].fields]  # type: ignore[union-attr]
            frame = frame.with_columns(
                pl.col(column).struct.rename_fields([f"{column}.{f}" for f in fields])
            ).unnest(column)
    return frame


def stage_export(
    path: Path,
    accept: str,
    report: str,
    date_columns: Sequence[str] = (),
    transform: Callable[[pl.DataFrame], pl.DataFrame] = lambda frame: frame,
) -> tuple[Batches, int]:
    """The export as staged batches, each read, normalized and `transform`ed on its own, and the number
    of records the file held. A CSV is read `BATCH_ROWS` at a time (memory bounded by a batch whatever
    the file's size); a JSON array cannot be read in parts and is read whole, then staged."""
    batches = (parse_dates(batch, report, date_columns) for batch in _export_batches(path, accept, report))
    return _stage(batches, transform)


def stage_csv(
    path: Path, report: str, transform: Callable[[pl.DataFrame], pl.DataFrame] = lambda frame: frame
) -> tuple[Batches, int]:
    """A CSV report (not an export: types as polars infers them, no text-like identifiers, no JSON
    lists) staged `BATCH_ROWS` at a time, each batch `transform`ed; and the number of records."""
    return _stage(_csv_batches(path, report, export_conventions=False), transform)


def _stage(
    batches: Iterator[pl.DataFrame], transform: Callable[[pl.DataFrame], pl.DataFrame]
) -> tuple[Batches, int]:
    """Each batch `transform`ed and staged; the records counted before the transform."""
    writer = BatchWriter()
    records = 0
    try:
        for batch in batches:
            records += batch.height
            writer.add(transform(batch))
    except BaseException:
        writer.discard()
        raise
    return writer.finish(), records


def _export_batches(path: Path, accept: str, report: str) -> Iterator[pl.DataFrame]:
    if accept != "csv":
        frame = read_json_export(path, report)
        yield from (frame.slice(o, BATCH_ROWS) for o in range(0, max(frame.height, 1), BATCH_ROWS))
        return
    yield from _csv_batches(path, report, export_conventions=True)


def _csv_batches(path: Path, report: str, *, export_conventions: bool) -> Iterator[pl.DataFrame]:
    """The CSV's rows in batches, headers snake_cased. With `export_conventions`, as the async exports
    write them: identifiers that look numeric stay text, and arrays written as JSON text become lists."""
    check_file_complete(path, "csv", report)
    try:
        header = pl.read_csv(path, n_rows=0).columns
    except pl.exceptions.NoDataError:
        yield pl.DataFrame()
        return
    overrides = {c: pl.String for c in header if export_conventions and _TEXT_LIKE.search(_leaf(c))}
    scan = pl.scan_csv(path, schema_overrides=overrides, infer_schema_length=10_000)
    renames = {c: snake_case(c) for c in header}
    batches = _csv_errors_named(report, lambda: iter(scan.collect_batches(chunk_size=BATCH_ROWS)))
    empty = True
    while (batch := _csv_errors_named(report, lambda: next(batches, None))) is not None:
        empty = False
        batch = batch.rename(renames)
        yield _decode_json_lists(batch) if export_conventions else batch
    if empty:
        yield pl.DataFrame(schema={renames[c]: pl.String for c in header})


def _csv_errors_named(report: str, step: Callable[[], T]) -> T:
    """A polars CSV failure in the report's terms (type drift, or a file that does not parse)."""
    try:
        return step()
    except pl.exceptions.ComputeError as exc:
        if match := _UNPARSABLE.search(str(exc)):
            raise TypeDriftError(
                report, snake_case(match["column"]), match["dtype"], "text", match["value"]
            ) from None
        raise ReportShapeError(report, f"the CSV file does not parse: {str(exc).splitlines()[0]}") from exc


def read_export(path: Path, accept: str, report: str, date_columns: Sequence[str] = ()) -> pl.DataFrame:
    frame = read_csv_export(path, report) if accept == "csv" else read_json_export(path, report)
    return parse_dates(frame, report, date_columns)
