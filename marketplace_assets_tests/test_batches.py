"""Staged batches: one row per key across batches (licenses/current), in bounded memory."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from marketplace_assets.warehouse.batches import BatchWriter, keep_latest


def staged(*frames: pl.DataFrame):
    writer = BatchWriter()
    for frame in frames:
        writer.add(frame)
    return writer.finish()


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2025, 6, day, hour)


def test_keep_latest_keeps_the_newest_row_of_each_key_across_batches() -> None:
    batches = staged(
        pl.DataFrame({"key": ["a", "b", "c"], "updated": [at(3), at(1), None], "v": [1, 2, 3]}),
        pl.DataFrame({"key": ["a", "b", "c"], "updated": [at(2), at(5), at(1)], "v": [4, 5, 6]}),
        pl.DataFrame({"key": ["b", "d"], "updated": [at(5), at(1)], "v": [7, 8]}),
    )
    directory = batches.directory
    latest, dropped = keep_latest(batches, "key", "updated")
    try:
        rows = pl.concat(list(latest)).sort("key")
        # a: the older version came later in the file; b: a tie on the time goes to the later row;
        # c: a version without a time loses to one with a time.
        assert rows.to_dicts() == [
            {"key": "a", "updated": at(3), "v": 1},
            {"key": "b", "updated": at(5), "v": 7},
            {"key": "c", "updated": at(1), "v": 6},
            {"key": "d", "updated": at(1), "v": 8},
        ]
        assert dropped == 4 and latest.height == 4
        assert not directory.exists(), "the input batches are removed once restaged"
    finally:
        latest.cleanup()


def test_keep_latest_without_repeats_returns_the_batches_untouched() -> None:
    batches = staged(
        pl.DataFrame({"key": ["a"], "updated": [at(1)]}), pl.DataFrame({"key": ["b"], "updated": [at(2)]})
    )
    try:
        latest, dropped = keep_latest(batches, "key", "updated")
        assert latest is batches and dropped == 0
    finally:
        batches.cleanup()
