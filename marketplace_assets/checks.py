"""Asset checks: the invariants a report's rows must satisfy, evaluated on every materialization.

They run inside the asset, on exactly the rows being written (after the PII policy), so each result
speaks about the partitions of that run. `no_new_fields` is judged from the write itself: the IO manager
records the columns it added to the table (`added_columns`), and the asset reads them back once the
rows are written. A report states its invariants in the catalog
(`reports/invariants.py`); every asset also gets `no_new_fields` and, when partitioned by time,
`dates_in_partition`. Checks whose data the asset does not have are not declared at all, so the UI
shows only checks that mean something for that asset.

Blocking checks (`blocking=True`: `dates_in_partition`, `identity_keys_present`) stop the run before
anything is written when they fail: the UI labels them blocking, and the run fails naming the check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
import polars as pl

from marketplace_assets.reports.fetch import Window
from marketplace_assets.reports.invariants import DIMENSIONS, TOTAL, Invariants
from marketplace_assets.warehouse.scope import PartitionScope

UNIQUE = "unique_keys"
NON_NEGATIVE = "non_negative_counts"
TOTALS = "totals_match_apps"
DATES = "dates_in_partition"
KEYS_PRESENT = "identity_keys_present"
NEW_FIELDS = "no_new_fields"
# Totals are compared to the cent: amounts arrive as floats with at most two decimals.
CENT = 0.005
_APP_COLUMNS = ("scope", "addon_key", "product_id", "app_name")
_HASH = "__key_hash"
# Checks run on a frame in memory or lazily on staged batches (only the columns a check needs are read).
Frame = pl.DataFrame | pl.LazyFrame


@dataclass(frozen=True)
class _Check:
    """One check an asset declares: its name, what it asserts, and how it is evaluated on a frame."""

    name: str
    description: str
    # None: evaluated from the IO manager's write result instead (`new_fields_written`).
    evaluate: Callable[[Frame, Window | None], dg.AssetCheckResult] | None
    # A failure stops the write: the run fails and nothing is stored.
    blocking: bool = False


def _declared(invariants: Invariants, date_column: str | None) -> list[_Check]:
    """The checks that mean something for an asset with these invariants and partition column."""
    checks = []
    if identity := invariants.identity:
        checks.append(
            _Check(
                KEYS_PRESENT,
                f"No row has a null in its identity {_names(identity)}: such a row could never be told "
                "apart, updated or de-duplicated. Blocking: a failure stops the write.",
                lambda f, w: keys_present(f, identity),
                blocking=True,
            )
        )
    if keys := invariants.unique_keys:
        shown = "every non-numeric column" if keys == DIMENSIONS else _names(keys)
        errors = invariants.duplicates_are_errors
        checks.append(
            _Check(UNIQUE, f"No two rows share {shown}.", lambda f, w: unique_keys(f, keys, errors=errors))
        )
    if counts := invariants.non_negative:
        checks.append(
            _Check(
                NON_NEGATIVE, f"{_names(counts)} are never negative.", lambda f, w: non_negative(f, counts)
            )
        )
    if additive := invariants.additive:
        checks.append(
            _Check(
                TOTALS,
                f"Each total row's {_names(additive)} equals the sum over the app rows of the same date, "
                "dataset, series and attributes, to the cent.",
                lambda f, w: totals_match_apps(f, additive),
            )
        )
    if column := date_column:
        checks.append(
            _Check(
                DATES,
                f"Every row's {column} lies inside the run's partitions. "
                "Blocking: a failure stops the write.",
                lambda f, w: dates_in_partition(f, column, w),
                blocking=True,
            )
        )
    checks.append(
        _Check(
            NEW_FIELDS,
            "Warns when the API sends a field the warehouse table has not had before (the column is added; "
            "check the parser and the docs).",
            None,
        )
    )
    return checks


def check_specs(
    key: dg.AssetKey, invariants: Invariants, *, date_column: str | None
) -> list[dg.AssetCheckSpec]:
    """The checks an asset declares, from its invariants and its partition column."""
    return [
        dg.AssetCheckSpec(c.name, asset=key, description=c.description, blocking=c.blocking)
        for c in _declared(invariants, date_column)
    ]


def evaluate_checks(
    frame: Frame,
    invariants: Invariants,
    *,
    date_column: str | None,
    window: Window | None,
) -> list[dg.AssetCheckResult]:
    """One result per check evaluated on the rows before the write, in the order of `check_specs`.
    `no_new_fields` is not among them: it is judged from the write (`new_fields_written`)."""
    return [c.evaluate(frame, window) for c in _declared(invariants, date_column) if c.evaluate]


def unique_keys(frame: Frame, keys: Sequence[str], *, errors: bool = True) -> dg.AssetCheckResult:
    lazy, schema = _lazy(frame)
    columns = _dimensions(schema) if tuple(keys) == DIMENSIONS else [k for k in keys if k in schema]
    severity = dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN
    rows = _count(lazy)
    if not columns or not rows:
        return dg.AssetCheckResult(check_name=UNIQUE, passed=True, metadata={"rows": rows})
    repeated = repeated_keys(lazy, columns)
    metadata: dict[str, object] = {
        "key": ", ".join(columns),
        "rows": rows,
        "rows_repeating_a_key": repeated.height,
    }
    if repeated.height:
        metadata["example"] = _example(repeated)
    return dg.AssetCheckResult(
        check_name=UNIQUE, passed=repeated.height == 0, severity=severity, metadata=metadata
    )


def repeated_keys(lazy: pl.LazyFrame, columns: list[str]) -> pl.DataFrame:
    """The key values of every row whose key another row shares. Keys are compared by hash first, so
    only 8 bytes a row are held whatever the row count, then exactly on the few candidates. The hashes
    are sorted in place and compared with their neighbours: a hash table of them (group_by) measured
    +570 MB for ten million rows, the sort +210 MB."""
    hashes = lazy.select(pl.struct(columns).hash().alias(_HASH)).collect(engine="streaming")[_HASH]
    hashes.sort(in_place=True)
    candidates = hashes.filter(hashes == hashes.shift(1)).unique()
    del hashes
    if not candidates.len():
        return pl.DataFrame(schema={c: pl.String for c in columns})
    rows = lazy.filter(pl.struct(columns).hash().is_in(candidates.implode())).select(columns)
    found = rows.collect(engine="streaming")
    return found.filter(pl.struct(columns).is_duplicated())


def keys_present(frame: Frame, keys: Sequence[str]) -> dg.AssetCheckResult:
    lazy, schema = _lazy(frame)
    columns = [k for k in keys if k in schema]
    missing = [k for k in keys if k not in schema]
    rows = _count(lazy)
    if not rows:
        return dg.AssetCheckResult(check_name=KEYS_PRESENT, passed=True, metadata={"rows": 0})
    keyless = lazy.filter(pl.any_horizontal(pl.col(c).is_null() for c in columns)) if columns else lazy
    without = _count(keyless)
    metadata: dict[str, object] = {"key": ", ".join(keys), "rows": rows, "rows_without_key": without}
    if missing:
        metadata["missing_columns"] = ", ".join(missing)
    if not without and not missing:
        return dg.AssetCheckResult(check_name=KEYS_PRESENT, passed=True, metadata=metadata)
    metadata["example"] = _example(keyless.head(1).collect())
    return dg.AssetCheckResult(
        check_name=KEYS_PRESENT,
        passed=False,
        metadata=metadata,
        description=f"{without} of {rows} row(s) have no {'/'.join(keys)}"
        + (f" (the API sent no column {', '.join(missing)})" if missing else f" (e.g. {metadata['example']})")
        + ".",
    )


def non_negative(frame: Frame, columns: Sequence[str]) -> dg.AssetCheckResult:
    lazy, schema = _lazy(frame)
    present = [c for c in columns if c in schema and schema[c].is_numeric()]
    counts = (
        lazy.select(pl.col(c).lt(0).sum() for c in present).collect(engine="streaming") if present else None
    )
    negatives = {c: int(counts[c][0] or 0) for c in present} if counts is not None else {}
    metadata: dict[str, object] = {f"negative_{c}": n for c, n in negatives.items()}
    bad = [c for c, n in negatives.items() if n]
    if bad:
        metadata["example"] = _example(
            lazy.filter(pl.any_horizontal(pl.col(c) < 0 for c in bad)).head(1).collect()
        )
    return dg.AssetCheckResult(check_name=NON_NEGATIVE, passed=not bad, metadata=metadata)


def totals_match_apps(frame: Frame, additive: Sequence[str]) -> dg.AssetCheckResult:
    lazy, schema = _lazy(frame)
    columns = [c for c in additive if c in schema]
    if "scope" not in schema or not columns or not _count(lazy.filter(~TOTAL)):
        return dg.AssetCheckResult(check_name=TOTALS, passed=True, metadata={"groups_compared": 0})
    group = [c for c in _dimensions(schema) if c not in _APP_COLUMNS]
    sums = [pl.col(c).fill_null(0).sum().alias(c) for c in columns]
    totals = lazy.filter(TOTAL).group_by(group, maintain_order=True).agg(sums)
    apps = lazy.filter(~TOTAL).group_by(group, maintain_order=True).agg(sums)
    joined = (
        totals.join(apps, on=group, how="full", suffix="_apps", coalesce=True, nulls_equal=True)
        .fill_null(0)
        .collect()
    )
    off = pl.any_horizontal((pl.col(c) - pl.col(f"{c}_apps")).abs() > CENT for c in columns)
    mismatched = joined.filter(off)
    metadata: dict[str, object] = {"groups_compared": joined.height, "groups_mismatched": mismatched.height}
    if mismatched.height:
        metadata["example"] = _example(mismatched)
    return dg.AssetCheckResult(check_name=TOTALS, passed=mismatched.height == 0, metadata=metadata)


def dates_in_partition(frame: Frame, column: str, window: Window | None) -> dg.AssetCheckResult:
    lazy, schema = _lazy(frame)
    rows = _count(lazy)
    if window is None or column not in schema or not rows:
        return dg.AssetCheckResult(check_name=DATES, passed=True, metadata={"rows": rows})
    # The warehouse's own test of "inside the partitions", over the run's half-open window, applied to
    # the column's distinct values (a few hundred dates, whatever the row count).
    scope = PartitionScope.time_window(column, window.start, window.end + timedelta(days=1))
    values = lazy.select(pl.col(column)).unique().collect(engine="streaming")
    bad_values = scope.rows_outside(values)
    outside = lazy.filter(
        pl.col(column).is_in(bad_values[column].drop_nulls().implode()) | pl.col(column).is_null()
    )
    count = _count(outside) if bad_values.height else 0
    metadata: dict[str, object] = {
        "window": f"{window.start}..{window.end}",
        "rows": rows,
        "rows_outside": count,
    }
    if not count:
        return dg.AssetCheckResult(check_name=DATES, passed=True, metadata=metadata)
    metadata["example"] = _example(outside.select(column).head(1).collect())
    return dg.AssetCheckResult(
        check_name=DATES,
        passed=False,
        metadata=metadata,
        description=f"{count} of {rows} row(s) have {column} outside "
        f"{window.start}..{window.end} (e.g. {metadata['example']}).",
    )


def no_new_fields(frame: Frame, stored_columns: Mapping[str, str]) -> dg.AssetCheckResult:
    """`new_fields_written` for rows about to be written to a table with these columns."""
    _, schema = _lazy(frame)
    new = [c for c in schema if c not in stored_columns]
    return new_fields_written(len(schema), new, table_created=not stored_columns)


def new_fields_written(fields: int, new: Sequence[str], *, table_created: bool) -> dg.AssetCheckResult:
    """From what a write did: the columns it added to the table. Passes when it created the table (the
    first materialization: every field is new by definition)."""
    if table_created:
        return dg.AssetCheckResult(
            check_name=NEW_FIELDS, passed=True, metadata={"fields": fields, "first_materialization": True}
        )
    metadata: dict[str, object] = {"fields": fields, "new_fields": ", ".join(new) or "none"}
    return dg.AssetCheckResult(
        check_name=NEW_FIELDS,
        passed=not new,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=f"The API sent {len(new)} field(s) not seen before: {', '.join(new)}" if new else None,
    )


def failed_before_write(
    results: Sequence[dg.AssetCheckResult], invariants: Invariants, date_column: str | None
) -> dg.AssetCheckResult | None:
    """The first failed blocking check: rows outside the partitions would corrupt other partitions, rows
    without an identity could never be told apart."""
    blocking = {c.name for c in _declared(invariants, date_column) if c.blocking}
    return next((r for r in results if r.check_name in blocking and not r.passed), None)


def _dimensions(schema: pl.Schema) -> list[str]:
    return [c for c, dtype in schema.items() if not dtype.is_numeric() and not isinstance(dtype, pl.List)]


def _lazy(frame: Frame) -> tuple[pl.LazyFrame, pl.Schema]:
    lazy = frame.lazy()
    return lazy, lazy.collect_schema()


def _count(lazy: pl.LazyFrame) -> int:
    return int(lazy.select(pl.len()).collect(engine="streaming").item())


def _names(columns: Sequence[str]) -> str:
    return ", ".join(f"`{c}`" for c in columns)


def _example(rows: pl.DataFrame) -> str:
    # One offending row names the problem well enough to find it upstream.
    return ", ".join(f"{k}={v}" for k, v in rows.row(0, named=True).items())
