"""`python -m marketplace_assets.warehouse copy`: a DuckDB warehouse copied into PostgreSQL, streamed.

Two tables in two schemas (a list column, dates, float amounts, nulls) are copied once in-process
(`copy_warehouse`, in small batches so the streaming path runs) and once through the command in a
subprocess; the target then holds exactly the source's rows, a second run adds no duplicates, and the
password never shows in the output. Bad arguments exit non-zero naming the argument.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import polars as pl
import pytest
from psycopg import sql

from marketplace_assets.warehouse import TableRef, open_warehouse
from marketplace_assets.warehouse.copy import copy_warehouse
from marketplace_assets.warehouse.postgres_connection import PASSWORD_ENV
from marketplace_assets_tests.postgres_server import PostgresServer

REPO = Path(__file__).resolve().parent.parent
SALES = TableRef("sales", "transactions")
LICENSES = TableRef("licensing", "licenses")
SOURCE = {
    SALES: pl.DataFrame(
        {
            "transaction_id": [f"T{i}" for i in range(7)],
            "sale_date": [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(7)],
            "amount": [10.1, 0.07, 1234.56, None, 99.99, 0.0, 5.5],
            "discounts": [["a", "b"], [], None, ["c"], ["d", "e", "f"], None, ["g"]],
        }
    ),
    LICENSES: pl.DataFrame(
        {
            "license_id": ["L1", "L2", "L3"],
            "tier": [10, None, 250],
            "contact": [None, "x@example.com", None],
            "last_updated": [dt.date(2024, 2, 1), None, dt.date(2024, 2, 3)],
        }
    ),
}


def fresh_database(server: PostgresServer) -> str:
    database = f"copy_{uuid.uuid4().hex[:12]}"
    with server.admin_connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        admin.execute(
            sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(server.role)
            )
        )
    return f"postgresql://{server.role}@{server.host}:{server.port}/{database}"


def normalized(table: TableRef, df: pl.DataFrame) -> pl.DataFrame:
    """Sorted, amounts to the cent, so DuckDB's and PostgreSQL's reads compare equal."""
    df = df.select(SOURCE[table].columns)
    if "amount" in df.columns:
        df = df.with_columns(pl.col("amount").cast(pl.Float64).round(2))
    if "tier" in df.columns:
        df = df.with_columns(pl.col("tier").cast(pl.Int64))
    return df.sort(df.columns[0])


@pytest.fixture
def source(tmp_path: Path) -> str:
    path = str(tmp_path / "marketplace.duckdb")
    warehouse = open_warehouse(path)
    for table, frame in SOURCE.items():
        warehouse.write(table, frame, None)
    return path


def assert_same_rows(source: str, target: str) -> None:
    src, dst = open_warehouse(source), open_warehouse(target)
    for table in SOURCE:
        expected = normalized(table, src.read(table))
        got = normalized(table, dst.read(table))
        assert got.to_dicts() == expected.to_dicts(), table


def test_copy_in_process_then_command(
    source: str, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = fresh_database(postgres_server)
    monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
    lines: list[str] = []
    counts = copy_warehouse(source, target, log=lines.append, batch_rows=2)
    assert counts == {LICENSES: 3, SALES: 7}
    assert any("sales.transactions: 7 row(s)" in line for line in lines)
    assert_same_rows(source, target)

    env = {**os.environ, PASSWORD_ENV: postgres_server.password}
    done = subprocess.run(
        [sys.executable, "-m", "marketplace_assets.warehouse", "copy", "--from", source, "--to", target],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "licensing.licenses: 3 row(s) copied" in done.stdout
    assert "Copied 10 row(s) in 2 table(s)" in done.stdout
    assert postgres_server.password not in done.stdout + done.stderr
    # The second run replaced each table whole: same rows, no duplicates.
    assert_same_rows(source, target)

    only = copy_warehouse(source, target, tables="sales.transactions", log=lines.append)
    assert only == {SALES: 7}
    assert open_warehouse(target).read(SALES).height == 7


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from", "/nonexistent/wh.duckdb", "--to", "postgresql://u@localhost:1/db"], "--from"),
        (["--from", "{source}", "--to", "other.duckdb"], "--to"),
        (["--from", "{source}", "--to", "postgresql://u@localhost:1/db", "--tables", "nodot"], "--tables"),
    ],
)
def test_bad_arguments_exit_non_zero(source: str, args: list[str], needle: str) -> None:
    argv = [a.format(source=source) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "marketplace_assets.warehouse", "copy", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert needle in done.stderr
