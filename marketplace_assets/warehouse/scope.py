"""Which rows of a table a write replaces or a read loads: backend-neutral partition scopes.

A scope is a set of *cells* over one or more partition columns. A row is in scope when it matches at
least one cell, and it matches a cell when, for every column, its value lies in the cell's half-open
time range ``[start, end)`` (time dimensions) or equals the cell's partition key (static and dynamic
dimensions, compared as text because Dagster partition keys are strings).

That one shape covers every partitioning the asset graph uses: a single time window, a range of them
(single-run backfills), a set of static or dynamic keys, and multi-partitions such as month x app,
where the cells are the (time window, key) combinations of the run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

import polars as pl

TimeBound = dt.date | dt.datetime

# Column names of the frame returned by `PartitionScope.cells_frame`, shared with backends.
START_SUFFIX = "_start"
END_SUFFIX = "_end"
_ROW_INDEX = "__wh_row"
_CELL_INDEX = "__wh_cell"
_SHOWN_CELLS = 3


@dataclass(frozen=True, order=True)
class TimeRange:
    """Half-open ``[start, end)``. Dates for day-aligned windows; naive datetimes are UTC."""

    start: TimeBound
    end: TimeBound

    def __post_init__(self) -> None:
        # A date is-not-a datetime for this purpose: mixing them would compare a date to a timestamp.
        if _is_datetime(self.start) != _is_datetime(self.end):
            raise TypeError(f"TimeRange bounds must both be dates or both datetimes: {self!s}")
        if _is_datetime(self.start) and (self.start.tzinfo or self.end.tzinfo):  # type: ignore[union-attr]
            raise ValueError(f"TimeRange datetimes must be naive UTC, got {self.start!r}, {self.end!r}")
        if not self.start < self.end:
            raise ValueError(f"TimeRange start must be before end: {self!s}")

    @property
    def is_dates(self) -> bool:
        return not _is_datetime(self.start)

    def as_datetimes(self) -> TimeRange:
        if not self.is_dates:
            return self
        return TimeRange(_to_datetime(self.start), _to_datetime(self.end))

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass(frozen=True)
class PartitionScope:
    """Rows matching any of ``cells``; each cell holds one constraint per entry of ``columns``."""

    columns: tuple[str, ...]
    cells: tuple[tuple[TimeRange | str, ...], ...]

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("A PartitionScope needs at least one partition column")
        if len({c.lower() for c in self.columns}) != len(self.columns):
            raise ValueError(f"Partition columns repeat: {self.columns}")
        for cell in self.cells:
            if len(cell) != len(self.columns):
                raise ValueError(f"Scope cell {cell!r} does not have one value per column {self.columns}")
        for i, column in enumerate(self.columns):
            values = [cell[i] for cell in self.cells]
            n_ranges = sum(isinstance(v, TimeRange) for v in values)
            if 0 < n_ranges < len(values):
                raise TypeError(f"Column {column!r} mixes time ranges and other values in one scope")
            bad = [v for v in values if not isinstance(v, TimeRange | str)]
            if bad:
                raise TypeError(f"Partition keys must be strings, got {bad[0]!r} for {column!r}")

    # -- constructors -------------------------------------------------------------------------------
    @classmethod
    def time_window(cls, column: str, start: TimeBound, end: TimeBound) -> PartitionScope:
        """One window, or a contiguous range of windows (a single-run backfill)."""
        return cls((column,), ((TimeRange(start, end),),))

    @classmethod
    def time_windows(cls, column: str, windows: Iterable[TimeRange]) -> PartitionScope:
        return cls((column,), tuple((w,) for w in windows)).merged()

    @classmethod
    def values(cls, column: str, keys: Iterable[str]) -> PartitionScope:
        """Static or dynamic partitions: rows whose ``column`` equals one of ``keys``."""
        return cls((column,), tuple((k,) for k in keys)).merged()

    @classmethod
    def combinations(
        cls, columns: Sequence[str], cells: Iterable[Sequence[TimeRange | str]]
    ) -> PartitionScope:
        """Multi-partitions: e.g. columns ("date", "product_id"), cells [(TimeRange(jan), "app1"), ...]."""
        return cls(tuple(columns), tuple(tuple(c) for c in cells)).merged()

    # -- shape --------------------------------------------------------------------------------------
    @property
    def time_columns(self) -> tuple[str, ...]:
        return tuple(c for i, c in enumerate(self.columns) if self._is_time(i))

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(c for i, c in enumerate(self.columns) if not self._is_time(i))

    def _is_time(self, i: int) -> bool:
        return bool(self.cells) and isinstance(self.cells[0][i], TimeRange)

    def merged(self) -> PartitionScope:
        """Deduplicate cells and join touching time ranges, so a backfill of 90 days is one range."""
        cells = _normalise_time_kinds(self.columns, self.cells)
        time_idx = [i for i in range(len(self.columns)) if cells and isinstance(cells[0][i], TimeRange)]
        if len(time_idx) != 1:
            # Merging across two time dimensions would need rectangle union; dedup is enough there.
            return PartitionScope(self.columns, tuple(sorted(set(cells), key=repr)))
        t = time_idx[0]

        def others(cell: tuple[TimeRange | str, ...]) -> tuple[str, ...]:
            return tuple(str(v) for i, v in enumerate(cell) if i != t)

        out: list[tuple[TimeRange | str, ...]] = []
        for _, group in groupby(sorted(set(cells), key=lambda c: (others(c), c[t])), key=others):
            current: list[tuple[TimeRange | str, ...]] = []
            for cell in group:
                rng = cell[t]
                assert isinstance(rng, TimeRange)
                last = current[-1][t] if current else None
                if isinstance(last, TimeRange) and rng.start <= last.end:
                    merged = TimeRange(last.start, max(last.end, rng.end))
                    current[-1] = (*cell[:t], merged, *cell[t + 1 :])
                else:
                    current.append(cell)
            out.extend(current)
        return PartitionScope(self.columns, tuple(out))

    def __str__(self) -> str:
        if not self.cells:
            return f"{', '.join(self.columns)} in (no partitions)"
        shown = [self._cell_str(cell) for cell in self.cells[:_SHOWN_CELLS]]
        more = f" and {len(self.cells) - _SHOWN_CELLS} more" if len(self.cells) > _SHOWN_CELLS else ""
        return " OR ".join(shown) + more

    def _cell_str(self, cell: tuple[TimeRange | str, ...]) -> str:
        parts = [
            f"{col} in {v}" if isinstance(v, TimeRange) else f"{col} = {v!r}"
            for col, v in zip(self.columns, cell, strict=True)
        ]
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    # -- backend helpers ----------------------------------------------------------------------------
    def cells_frame(self) -> pl.DataFrame:
        """One row per cell: ``<col>_start``/``<col>_end`` for time columns, ``<col>`` (text) otherwise.

        Backends join this frame (as a temporary table or view) to delete or select the scope's rows
        in one statement however many combinations a run covers.
        """
        cells = _normalise_time_kinds(self.columns, self.cells)
        data: dict[str, pl.Series] = {}
        for i, column in enumerate(self.columns):
            if self._is_time(i):
                ranges = [c[i] for c in cells]
                dtype: pl.DataType = pl.Date() if ranges[0].is_dates else pl.Datetime("us")  # type: ignore[union-attr]
                data[column + START_SUFFIX] = pl.Series([r.start for r in ranges], dtype=dtype)  # type: ignore[union-attr]
                data[column + END_SUFFIX] = pl.Series([r.end for r in ranges], dtype=dtype)  # type: ignore[union-attr]
            else:
                data[column] = pl.Series([c[i] for c in cells], dtype=pl.String)
        if not cells:
            # No cells: an empty frame whose value columns are text; time columns do not matter then.
            return pl.DataFrame({c: pl.Series([], dtype=pl.String) for c in self.columns})
        return pl.DataFrame(data)

    def rows_outside(self, df: pl.DataFrame) -> pl.DataFrame:
        """The partition-column values of the rows of ``df`` that this scope does not cover."""
        inside = self.merged().cell_index(df).is_not_null()
        return df.select(self.columns).filter(~inside)

    def cell_index(self, df: pl.DataFrame) -> pl.Series:
        """For each row of ``df``, in order, the index in ``cells`` of the cell holding it; null when
        none does. Cells must not overlap: partitions never do, nor do the cells of a merged scope."""
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise KeyError(f"frame has no partition column(s) {missing}; its columns are {df.columns}")
        keyed = df.select(self.columns).with_row_index(_ROW_INDEX)
        if not self.cells or keyed.height == 0 or any(df.schema[c] == pl.Null() for c in self.columns):
            # No partitions, or an all-null partition column: no row can be inside.
            return pl.Series(_CELL_INDEX, [None] * df.height, dtype=pl.UInt32)
        cells = self.cells_frame().with_row_index(_CELL_INDEX)
        probe = keyed.with_columns(
            pl.col(c).cast(pl.String).alias(f"__wh_key_{c}") for c in self.value_columns
        )
        cells = cells.rename({c: f"__wh_key_{c}" for c in self.value_columns})
        keys = [f"__wh_key_{c}" for c in self.value_columns]
        time_columns = self.time_columns
        if len(time_columns) == 1:
            matched = _asof_match(probe, cells, time_columns[0], keys)
        else:
            # Zero time columns: a plain key join. Two or more (no asset has that): join, then filter.
            joined = probe.join(cells, on=keys, how="inner") if keys else probe.join(cells, how="cross")
            ranges = [_in_range(joined, c, cells.schema[c + START_SUFFIX]) for c in time_columns]
            matched = joined.filter(*ranges) if ranges else joined
        found = matched.select(_ROW_INDEX, _CELL_INDEX).unique(_ROW_INDEX)
        rows = keyed.select(_ROW_INDEX).join(found, on=_ROW_INDEX, how="left", maintain_order="left")
        return rows.get_column(_CELL_INDEX)


def _asof_match(probe: pl.DataFrame, cells: pl.DataFrame, column: str, keys: list[str]) -> pl.DataFrame:
    """Rows of ``probe`` inside some cell, in O(n log n).

    Merged cells never overlap within one key combination, so the only candidate for a row is the
    cell with the latest start at or before its value; the row is inside if it is also before that
    cell's end. (A cross join of a year of daily cells with a million rows would not fit in memory.)
    """
    start, end = column + START_SUFFIX, column + END_SUFFIX
    bound_dtype = cells.schema[start]
    common = (
        pl.Date() if probe.schema[column] == pl.Date() and bound_dtype == pl.Date() else pl.Datetime("us")
    )
    left = (
        probe.with_columns(_comparable(pl.col(column), probe.schema[column], bound_dtype).alias("__wh_t"))
        .drop_nulls("__wh_t")
        .sort("__wh_t")
    )
    right = cells.with_columns(pl.col(start).cast(common), pl.col(end).cast(common)).sort(start)
    # Both sides are sorted just above; polars cannot verify that per `by` group, so it would warn.
    joined = left.join_asof(
        right, left_on="__wh_t", right_on=start, by=keys or None, strategy="backward", check_sortedness=False
    )
    return joined.filter(pl.col("__wh_t") < pl.col(end))


def _in_range(frame: pl.DataFrame, column: str, bound_dtype: pl.DataType) -> pl.Expr:
    value = _comparable(pl.col(column), frame.schema[column], bound_dtype)
    start, end = pl.col(column + START_SUFFIX), pl.col(column + END_SUFFIX)
    if frame.schema[column] != pl.Date() or bound_dtype != pl.Date():
        start, end = start.cast(pl.Datetime("us")), end.cast(pl.Datetime("us"))
    return (value >= start) & (value < end)


def _comparable(expr: pl.Expr, dtype: pl.DataType, bound_dtype: pl.DataType) -> pl.Expr:
    """Bring a date/datetime column to the bounds' type; naive UTC is the common ground."""
    if dtype == pl.Null():
        return expr  # all-null: compares as null, so every row is reported outside
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            expr = expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return expr.cast(pl.Datetime("us"))
    if dtype == pl.Date():
        return expr if bound_dtype == pl.Date() else expr.cast(pl.Datetime("us"))
    raise TypeError(
        f"time-window partition column must be a Date or Datetime column, got {dtype}; "
        "parse it in the asset (e.g. pl.col(...).str.to_date()) before returning the frame"
    )


def _normalise_time_kinds(
    columns: Sequence[str], cells: Sequence[tuple[TimeRange | str, ...]]
) -> tuple[tuple[TimeRange | str, ...], ...]:
    """If one column mixes date and datetime ranges, make them all datetimes so they compare."""
    out = [list(c) for c in cells]
    for i in range(len(columns)):
        ranges = [c[i] for c in out if isinstance(c[i], TimeRange)]
        if ranges and len({r.is_dates for r in ranges}) > 1:  # type: ignore[union-attr]
            for c in out:
                c[i] = c[i].as_datetimes()  # type: ignore[union-attr]
    return tuple(tuple(c) for c in out)


def _is_datetime(value: TimeBound) -> bool:
    return isinstance(value, dt.datetime)


def _to_datetime(value: TimeBound) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime(value.year, value.month, value.day)
