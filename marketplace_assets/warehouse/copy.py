"""Copy a DuckDB warehouse into PostgreSQL, table by table, streamed.

Each table of the DuckDB file (opened read-only) is read in batches of `BATCH_ROWS` rows
(``fetch_record_batch``), staged on disk as `Batches`, and written with the target's
``write(table, batches, None)``: a whole-table replace in one transaction, with the same type mapping
as a normal load. Memory stays bounded by one batch; re-running gives the same rows (no duplicates).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import duckdb
import polars as pl

from marketplace_assets.warehouse._duckdb_core import qt
from marketplace_assets.warehouse.base import POSTGRES_URL_PREFIXES, TableRef, open_warehouse
from marketplace_assets.warehouse.batches import BATCH_ROWS, Batches, BatchWriter
from marketplace_assets.warehouse.postgres_connection import display_url

# DuckDB's own schemas, never copied.
_SYSTEM_SCHEMAS = ("information_schema", "pg_catalog")


class CopyArgumentError(ValueError):
    """A bad ``--from``/``--to``/``--tables``; the message names the argument."""


def parse_tables(spec: str | Iterable[str] | None) -> list[TableRef] | None:
    """``"area.report,area2.report2"`` (or a list of such names) as table refs; None means all."""
    if spec is None:
        return None
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    refs: list[TableRef] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        schema, dot, table = name.partition(".")
        if not dot or not schema or not table:
            raise CopyArgumentError(f"--tables: {name!r} is not 'area.report'")
        refs.append(TableRef(schema, table))
    return refs


def source_tables(con: duckdb.DuckDBPyConnection) -> list[TableRef]:
    """Every base table of the DuckDB file, in schema/name order."""
    rows = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_catalog = current_database() "
        f"AND table_schema NOT IN ({', '.join('?' for _ in _SYSTEM_SCHEMAS)}) "
        "ORDER BY table_schema, table_name",
        list(_SYSTEM_SCHEMAS),
    ).fetchall()
    return [TableRef(schema, name) for schema, name in rows]


def stage_table(con: duckdb.DuckDBPyConnection, table: TableRef, batch_rows: int = BATCH_ROWS) -> Batches:
    """The table's rows staged on disk, read ``batch_rows`` at a time (never the whole table)."""
    relation = con.sql(f"SELECT * FROM {qt(table)}")
    # DuckDB 2 names it `to_arrow_reader`, 1.x `fetch_arrow_reader`: a reader streaming the result.
    open_reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
    reader = open_reader(batch_rows)
    writer = BatchWriter(prefix="marketplace-copy-")
    try:
        added = False
        for batch in reader:
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            writer.add(frame)
            added = True
        if not added:
            # An empty table still carries its columns, so the target gets the table.
            empty = pl.from_arrow(reader.schema.empty_table())
            assert isinstance(empty, pl.DataFrame)
            writer.add(empty)
    except BaseException:
        writer.discard()
        raise
    return writer.finish()


def check_target(target: str) -> None:
    if not target.strip().startswith(POSTGRES_URL_PREFIXES):
        scheme = target.split("://", 1)[0] if "://" in target else "a path"
        raise CopyArgumentError(
            f"--to must be a postgresql://user@host:port/db URL, got {scheme!r} "
            "(the password goes in MARKETPLACE_WAREHOUSE_PASSWORD, never in the URL)"
        )


def check_source(source: str) -> Path:
    path = Path(source)
    if not path.is_file():
        raise CopyArgumentError(f"--from: no DuckDB file at {source!r}")
    return path


def _wanted(tables: str | Iterable[str] | Iterable[TableRef] | None) -> list[TableRef] | None:
    if tables is None or isinstance(tables, str):
        return parse_tables(tables)
    refs: list[TableRef] = []
    for item in tables:
        refs.extend([item] if isinstance(item, TableRef) else parse_tables(item) or [])
    return refs


def copy_warehouse(
    source: str,
    target: str,
    *,
    tables: str | Iterable[str] | Iterable[TableRef] | None = None,
    log: Callable[[str], None] = print,
    batch_rows: int = BATCH_ROWS,
) -> dict[TableRef, int]:
    """Copy every table (or ``tables``) of the DuckDB file ``source`` into the PostgreSQL warehouse
    ``target``, replacing each target table whole; returns rows copied per table."""
    path = check_source(source)
    check_target(target)
    wanted = _wanted(tables)
    warehouse = open_warehouse(target)
    shown = display_url(target)
    copied: dict[TableRef, int] = {}
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise CopyArgumentError(f"--from: cannot open {source!r} as a DuckDB file: {exc}") from exc
    try:
        available = source_tables(con)
        if wanted is None:
            selected = available
        else:
            missing = [str(t) for t in wanted if t not in available]
            if missing:
                raise CopyArgumentError(f"--tables: not in {source}: {', '.join(missing)}")
            selected = wanted
        log(f"Copying {len(selected)} table(s) from {source} to {shown}")
        for table in selected:
            batches = stage_table(con, table, batch_rows)
            try:
                warehouse.write(table, batches, None)
            finally:
                batches.cleanup()
            copied[table] = batches.height
            log(f"  {table}: {batches.height} row(s) copied")
    finally:
        con.close()
    log(f"Copied {sum(copied.values())} row(s) in {len(copied)} table(s)")
    return copied
