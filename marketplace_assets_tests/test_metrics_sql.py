"""Metric SQL is bound for each driver: `:name` parameters, casts and literal percent signs."""

from __future__ import annotations

import datetime as dt

import duckdb

from marketplace_assets.metrics.sql import bind, parameters

SQL = "SELECT :start::date AS first_day, CAST(:end AS date) AS after, 'a%' AS pattern, '10:30' AS at"


def test_parameters_are_named_and_casts_are_not() -> None:
    assert parameters(SQL) == {"start", "end"}
    assert bind(SQL, "duckdb").startswith("SELECT $start::date AS first_day, CAST($end AS date)")
    assert bind(SQL, "postgres") == (
        "SELECT %(start)s::date AS first_day, CAST(%(end)s AS date) AS after, 'a%%' AS pattern, '10:30' AS at"
    )


def test_duckdb_runs_the_bound_text() -> None:
    row = (
        duckdb.connect()
        .execute(bind(SQL, "duckdb"), {"start": dt.date(2025, 1, 1), "end": dt.date(2025, 2, 1)})
        .fetchone()
    )
    assert row == (dt.date(2025, 1, 1), dt.date(2025, 2, 1), "a%", "10:30")
