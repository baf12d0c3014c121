"""Which writes of the PostgreSQL warehouse exclude each other: transaction-scoped advisory locks.

MVCC alone would let two runs that replace the same partition both delete the old rows (each seeing
only committed rows) and both insert: duplicates. So before touching a table, a write takes advisory
locks (``pg_try_advisory_xact_lock``, released by its commit or rollback, or when its connection
dies) on what it replaces, keyed on (table, partition unit):

- a write of partitions takes the table's lock *shared* and each unit it covers *exclusive*; a write
  of the whole table (no scope) takes the table's lock exclusive, so it waits for every partition
  write and they for it;
- time ranges are cut into calendar units, two levels deep so that overlapping ranges always share a
  unit: a month the range covers entirely is locked exclusive; a month it covers in part is locked
  shared, plus each day it covers exclusive. So a backfill of March and a run of 2024-03-05 exclude
  each other (exclusive vs shared month), while runs of 2024-03-05 and 2024-03-06 do not. Sub-day
  windows lock their whole day. Key cells (static, dynamic, the app of month x app) are part of
  the unit, so different apps never wait for each other;
- a scope needing more than `MAX_UNIT_LOCKS` units (a two-year backfill of hundreds of apps), or
  with more than one time column, locks the whole table instead: PostgreSQL's lock table is finite;
- schema changes (create the table, add or widen columns, create the merge index) take the table's
  schema lock, and creating a schema takes that schema's lock, only when there is something to
  change, so two first writes do not race and later writes never wait for it.

Locks are taken in one sorted order, and the schema locks after the partition locks, so writers
cannot deadlock on them. A lock that is taken is polled for: the wait is reported to ``on_wait`` about
every `LOCK_WAIT_REPORT_SECONDS`, and after ``lock_timeout`` the write gives up with
`WarehouseBusyError`, naming the process that holds the lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from marketplace_assets.warehouse.base import TableRef, WarehouseBusyError, logger
from marketplace_assets.warehouse.scope import PartitionScope, TimeRange

LOCK_WAIT_REPORT_SECONDS = 10.0
MAX_UNIT_LOCKS = 256
_MAX_PAUSE_SECONDS = 0.5
_TABLE_UNIT = "\x00table"
_SCHEMA_CHANGE_UNIT = "\x00schema change"
_CREATE_SCHEMA_UNIT = "\x00create schema"


def _int32(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big", signed=True)


@dataclass(frozen=True, order=True)
class AdvisoryLock:
    """``pg_advisory_xact_lock(space, unit)``: ``space`` from the table, ``unit`` from what is locked."""

    space: int
    unit: int
    exclusive: bool = field(compare=False)
    what: str = field(compare=False)


def _lock(table: TableRef, unit: str, exclusive: bool, what: str) -> AdvisoryLock:
    return AdvisoryLock(_int32(f"{table.schema}\x1f{table.name}"), _int32(unit), exclusive, what)


def schema_change_lock(table: TableRef) -> AdvisoryLock:
    return _lock(table, _SCHEMA_CHANGE_UNIT, True, f"the schema of {table}")


def create_schema_lock(schema: str) -> AdvisoryLock:
    return AdvisoryLock(_int32(f"{schema}\x1f"), _int32(_CREATE_SCHEMA_UNIT), True, f"schema {schema}")


def partition_locks(table: TableRef, scope: PartitionScope | None) -> list[AdvisoryLock]:
    """The locks a write of ``scope`` (None: the whole table) takes, in the order to take them."""
    whole = [_lock(table, _TABLE_UNIT, True, f"the whole of {table}")]
    if scope is None or len(scope.time_columns) > 1:
        return whole
    units: dict[str, tuple[bool, str]] = {}
    for cell in scope.merged().cells:
        keys = [(c, v) for c, v in zip(scope.columns, cell, strict=True) if isinstance(v, str)]
        key_text = "".join(f"\x1f{c}={v}" for c, v in keys)
        key_what = "".join(f", {c} = {v}" for c, v in keys)
        ranges = [v for v in cell if isinstance(v, TimeRange)]
        pieces = list(_time_units(ranges[0])) if ranges else [("", True, "")]
        for unit, exclusive, what in pieces:
            text = unit + key_text
            if exclusive or text not in units:
                units[text] = (exclusive, (what + key_what).lstrip(", "))
        if len(units) > MAX_UNIT_LOCKS:
            return whole
    locks = [_lock(table, _TABLE_UNIT, False, f"{table} (shared by its partition writes)")]
    locks += [
        _lock(table, text, exclusive, f"{what} of {table}") for text, (exclusive, what) in units.items()
    ]
    return sorted(locks)


def _time_units(window: TimeRange) -> Iterator[tuple[str, bool, str]]:
    """(unit, exclusive, description): whole months exclusive; partial months shared plus their days."""
    day = _floor_day(window.start)
    end = _ceil_day(window.end)
    while day < end:
        month = day.replace(day=1)
        next_month = (month + dt.timedelta(days=32)).replace(day=1)
        if day == month and next_month <= end:
            yield f"month {month:%Y-%m}", True, f"month {month:%Y-%m}"
            day = next_month
            continue
        yield f"month {month:%Y-%m}", False, f"month {month:%Y-%m}"
        while day < min(next_month, end):
            yield f"day {day.isoformat()}", True, f"day {day.isoformat()}"
            day += dt.timedelta(days=1)


def _floor_day(value: dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def _ceil_day(value: dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date() + dt.timedelta(days=1) if value.time() != dt.time(0) else value.date()
    return value


def acquire(
    con: psycopg.Connection[Any],
    locks: list[AdvisoryLock],
    *,
    timeout: float,
    on_wait: Callable[[float], None] | None,
    purpose: str,
) -> None:
    """Take ``locks`` in order, polling; `WarehouseBusyError` once ``timeout`` seconds have passed."""
    started = time.monotonic()
    reported = 0.0
    pause = 0.02
    for lock in locks:
        function = "pg_try_advisory_xact_lock" if lock.exclusive else "pg_try_advisory_xact_lock_shared"
        query = f"SELECT {function}(%s, %s)"
        while not _fetch_bool(con, query, (lock.space, lock.unit)):
            waited = time.monotonic() - started
            if waited >= timeout:
                raise WarehouseBusyError(
                    f"Gave up on {purpose} after {waited:.0f}s: another process holds the lock on "
                    f"{lock.what}{_holders(con, lock)}. A write waits while another one replaces the "
                    "same partitions (or the whole table) or changes the table's columns; retry when it "
                    "has finished, or give this write a longer lock timeout."
                )
            if waited - reported >= LOCK_WAIT_REPORT_SECONDS:
                reported = waited
                logger.info("Waiting for the lock on %s for %s (%.0fs so far)", lock.what, purpose, waited)
                if on_wait is not None:
                    on_wait(waited)
            time.sleep(min(pause, max(timeout - waited, 0.0)))
            pause = min(pause * 2, _MAX_PAUSE_SECONDS)


def _fetch_bool(con: psycopg.Connection[Any], query: str, params: tuple[int, int]) -> bool:
    row = con.execute(query, params).fetchone()
    return bool(row and row[0])


def _holders(con: psycopg.Connection[Any], lock: AdvisoryLock) -> str:
    """`` (held by pid N, <application>)`` for the message, or nothing when it cannot be told."""
    try:
        rows = con.execute(
            """
            SELECT l.pid, coalesce(a.application_name, '')
            FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid = (%s::bigint & 4294967295)::oid AND l.objid = (%s::bigint & 4294967295)::oid
            """,
            (lock.space, lock.unit),
        ).fetchall()
    except psycopg.Error:
        return ""
    if not rows:
        return ""
    shown = ", ".join(f"pid {pid}" + (f" ({app})" if app else "") for pid, app in rows[:3])
    return f" (held by {shown})"
