"""Rows too many to hold in memory at once: parquet files on disk, read back one batch at a time.

An asset whose output can be large (an export of a million line items) stages it batch by batch into a
directory of parquet files and returns `Batches`; a warehouse write then takes the batches one at a time
inside its one transaction, so memory stays bounded by the batch size whatever the row count. Batches
may differ in columns (a field first seen in a late batch) and in types (a column all null in one batch):
the write evolves the table batch by batch, as it does across runs.

Small outputs stay `pl.DataFrame`s; `Rows` is either, and `iter_batches` reads both the same way.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

# Rows per batch: small enough that a batch, its parsed copy and the driver's buffers stay well under
# a hundred megabytes for the widest report (transactions, ~60 columns).
BATCH_ROWS = 25_000


class Batches:
    """Parquet files in a directory this object owns; `cleanup()` removes it (the IO manager does, once
    the write is done). Iterating reads one file at a time."""

    def __init__(self, directory: Path, files: Sequence[Path], rows: int) -> None:
        self.directory = directory
        self.files = tuple(files)
        self.height = rows

    def __iter__(self) -> Iterator[pl.DataFrame]:
        for file in self.files:
            yield pl.read_parquet(file)

    def __repr__(self) -> str:
        return f"Batches({len(self.files)} file(s), {self.height} row(s) in {self.directory})"

    @property
    def columns(self) -> list[str]:
        """Every column of any batch, in order of first appearance."""
        seen: dict[str, None] = {}
        for file in self.files:
            seen.update(dict.fromkeys(pl.read_parquet_schema(file)))
        return list(seen)

    def lazy(self) -> pl.LazyFrame:
        """All batches as one lazy frame (missing columns as null), for streaming aggregates."""
        if not self.files:
            return pl.LazyFrame()
        frames = [pl.scan_parquet(file) for file in self.files]
        return pl.concat(frames, how="diagonal_relaxed")

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class BatchWriter:
    """Collects batches into a new `Batches`: `add(frame)` per batch, then `finish()`."""

    def __init__(self, prefix: str = "marketplace-batches-") -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        self._files: list[Path] = []
        self._rows = 0

    def add(self, frame: pl.DataFrame) -> None:
        if frame.height == 0 and self._files:
            return
        path = self.directory / f"{len(self._files):06d}.parquet"
        frame.write_parquet(path, compression="lz4", statistics=False)
        self._files.append(path)
        self._rows += frame.height

    def finish(self) -> Batches:
        return Batches(self.directory, self._files, self._rows)

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def keep_latest(batches: Batches, key: str, order_by: str) -> tuple[Batches, int]:
    """The batches with one row per `key`: the row with the greatest `order_by` (on a tie, the later
    row), and how many rows were dropped. Only the key, the order and the row's position are held for
    all rows at once (tens of bytes a row); the rows themselves are read and restaged batch by batch."""
    positions = [
        pl.scan_parquet(file).select(key, order_by).with_row_index("__row").with_columns(__batch=pl.lit(n))
        for n, file in enumerate(batches.files)
    ]
    if not positions:
        return batches, 0
    winners = (
        pl.concat(positions, how="vertical_relaxed")
        .sort([order_by, "__batch", "__row"], nulls_last=False)
        .unique(key, keep="last")
        .select("__batch", "__row")
        .collect()
    )
    if winners.height == batches.height:
        return batches, 0
    writer = BatchWriter()
    try:
        for n, batch in enumerate(batches):
            rows = winners.filter(pl.col("__batch") == n)["__row"]
            writer.add(
                batch.with_row_index("__row").filter(pl.col("__row").is_in(rows.implode())).drop("__row")
            )
    except BaseException:
        writer.discard()
        raise
    batches.cleanup()
    kept = writer.finish()
    return kept, batches.height - kept.height


Rows = pl.DataFrame | Batches


def iter_batches(rows: Rows, size: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """The rows in batches of at most `size` (a frame is sliced, staged batches are read one by one)."""
    if isinstance(rows, Batches):
        yield from rows
        return
    if rows.height <= size:
        yield rows
        return
    for offset in range(0, rows.height, size):
        yield rows.slice(offset, size)


def row_count(rows: Rows) -> int:
    return rows.height
