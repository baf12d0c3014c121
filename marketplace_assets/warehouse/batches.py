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
