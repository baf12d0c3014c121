"""Is the load whole? An export's records against the list's count, and repeated records.

Pure functions over frames and staged batches, used by the export assets (docs/api-notes.md,
"Completeness").
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from marketplace_assets.api.errors import ConflictingRecordsError, IncompleteDataError
from marketplace_assets.checks import repeated_keys
from marketplace_assets.warehouse.batches import Batches, BatchWriter


def reconcile(
    label: str,
    export_id: str,
    received: int,
    expected: int | None,
    recount: Callable[[], int | None],
    warn: Callable[[str], None],
) -> str:
    """Compare an export file's records with the list's count taken before the export started.

    Fewer records is loss, unless records legitimately left the filter in between: then the list's
    count, asked again now, has fallen to what the file holds (docs/api-notes.md, "Completeness").
    Returns what was verified, for the materialization's metadata."""
    if expected is None:
        return "not verifiable: the API gives no count for this export (file syntax checked)"
    if received >= expected:
        return f"{received} records, the list counted {expected} before the export"
    now = recount()
    if now is not None and received >= now:
        warn(
            f"{label}: export {export_id} holds {received} records where the list counted {expected} before "
            f"it started; the list now counts {now}, so {expected - now} record(s) left the filter in "
            "between (revised or removed by the service). Accepted: the file matches the current count."
        )
        return f"{received} records; the list's count fell from {expected} to {now} during the export"
    raise IncompleteDataError(
        f"{label}: export {export_id}",
        "the file holds fewer records than the list endpoint counts for the same filters"
        + (f" (before the export: {expected}; now: {now})" if now is not None else ""),
        expected=expected,
        received=received,
    )


def collapse_duplicates(
    frame: pl.DataFrame, label: str, keys: tuple[str, ...], warn: Callable[[str], None]
) -> pl.DataFrame:
    """Identical repeated rows are one record sent twice: keep one, with a warning. Rows that share a
    key but differ elsewhere are two versions of one record, and which is right cannot be told: fail."""
    unique = frame.unique(maintain_order=True)
    if unique.height < frame.height:
        warn(f"{label}: dropped {frame.height - unique.height} row(s) identical to another row of the export")
    repeated = unique.filter(pl.struct(list(keys)).is_duplicated())
    if repeated.height:
        example = repeated.sort(list(keys)).head(2)
        differing = [c for c in example.columns if example[c].n_unique() > 1]
        raise ConflictingRecordsError(
            label,
            f"{repeated.height} row(s) share a {'/'.join(keys)} with another row but differ in "
            f"{', '.join(differing[:5]) or 'some field'} (e.g. {'/'.join(keys)} = "
            f"{', '.join(str(example[k][0]) for k in keys)}); which version is right cannot be told",
        )
    return unique


def collapse_staged_duplicates(
    batches: Batches, label: str, keys: tuple[str, ...], warn: Callable[[str], None]
) -> Batches:
    """`collapse_duplicates` across staged batches: keys are compared by hash over all batches (8 bytes
    a row), and only when some key repeats are the batches staged again without the repeated copies."""
    repeated = repeated_keys(batches.lazy(), list(keys))
    if not repeated.height:
        return batches
    key = pl.struct(list(keys))
    wanted = repeated.unique().select(key.hash().alias("__h"))["__h"].implode()
    rows = batches.lazy().filter(key.hash().is_in(wanted)).collect()
    collapse_duplicates(rows, label, keys, lambda message: None)  # raises on conflicting versions
    repeats = set(rows.select(key.hash())[:, 0].to_list())
    writer, seen, dropped = BatchWriter(), set(), 0
    try:
        for batch in batches:
            hashes = batch.select(key.hash())[:, 0]
            keep = [True] * batch.height
            for index in hashes.is_in(list(repeats)).arg_true().to_list():
                if hashes[index] in seen:  # a later copy of a row already kept
                    keep[index] = False
                    dropped += 1
                seen.add(hashes[index])
            writer.add(batch if all(keep) else batch.filter(pl.Series(keep, dtype=pl.Boolean)))
    except BaseException:
        writer.discard()
        raise
    batches.cleanup()
    warn(f"{label}: dropped {dropped} row(s) identical to another row of the export")
    return writer.finish()
