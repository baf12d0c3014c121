"""The warehouse backends as the contract tests (`test_warehouse_contract.py`,
`test_warehouse_concurrency.py`, `test_warehouse_connections.py`) see them, and the rows they write.

`backend` runs a test on DuckDB (a file under tmp_path) and on PostgreSQL (a fresh database on the test
server of `postgres_server.py`); `shape` and `make_rows` give the same rows as one frame or as staged
`Batches`. The fixtures are declared with `name=`: a test module imports the function (`backend_fixture`)
and its tests ask for `backend`, so no test's argument shadows an import.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import psycopg
import pytest
from psycopg import sql

from marketplace_assets.warehouse import (
    Batches,
    BatchWriter,
    PartitionScope,
    Rows,
    TableRef,
    Warehouse,
    open_warehouse,
)
from marketplace_assets.warehouse.postgres_connection import PASSWORD_ENV
from marketplace_assets_tests.postgres_server import PostgresServer

T = TableRef("evaluations", "by_hosting")
LICENSES = TableRef("licensing", "licenses")
KEYS = ["license_id", "last_updated"]
D = dt.date
D1, D2, D3 = D(2024, 1, 1), D(2024, 1, 2), D(2024, 1, 3)
# The SQL type names each backend reports for the same polars columns.
TYPES = {
    "duckdb": {"int": "BIGINT", "fraction": "DOUBLE", "text": "VARCHAR", "date": "DATE"},
    "postgres": {"int": "bigint", "fraction": "numeric", "text": "text", "date": "date"},
}


@dataclass
class Backend:
    """One backend under test: where it stores (`location`), what a writer process needs in its
    environment (`env`), and for PostgreSQL the server and database `query` reads directly."""

    name: str
    location: str
    env: dict[str, str] = field(default_factory=dict)
    server: PostgresServer | None = None
    database: str | None = None

    def open(self, **kwargs: Any) -> Warehouse:
        return open_warehouse(self.location, **kwargs)

    @property
    def types(self) -> dict[str, str]:
        return TYPES[self.name]

    def query(self, statement: str) -> list[tuple]:
        """A query run directly against the store, outside the warehouse code."""
        if self.name == "duckdb":
            with duckdb.connect(self.location, read_only=True) as con:
                return con.sql(statement).fetchall()
        assert self.server is not None
        with psycopg.connect(
            host=self.server.host,
            port=self.server.port,
            dbname=self.database,
            user=self.server.role,
            password=self.server.password,
        ) as con:
            return con.execute(statement).fetchall()  # type: ignore[arg-type]


@pytest.fixture(name="backend", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    if request.param == "duckdb":
        return Backend("duckdb", str(tmp_path / "wh.duckdb"))
    return postgres_backend(request.getfixturevalue("postgres_server"), monkeypatch)


def postgres_backend(server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """A fresh database on the test server, for the tests' role (not a superuser)."""
    database = f"contract_{uuid.uuid4().hex[:12]}"
    with server.admin_connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        admin.execute(
            sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(server.role)
            )
        )
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    url = f"postgresql://{server.role}@{server.host}:{server.port}/{database}"
    return Backend("postgres", url, {PASSWORD_ENV: server.password}, server, database)


@pytest.fixture(name="shape", params=["frame", "batches"])
def shape_fixture(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(name="make_rows")
def make_rows_fixture() -> Iterator[Callable[..., Rows]]:
    """``make_rows(shape, *frames)``: the frames concatenated, or staged as one batch each."""
    staged: list[Batches] = []

    def make(kind: str, *frames: pl.DataFrame) -> Rows:
        if kind == "frame":
            return pl.concat(frames, how="diagonal_relaxed")
        writer = BatchWriter()
        for frame in frames:
            writer.add(frame)
        staged.append(writer.finish())
        return staged[-1]

    yield make
    for batches in staged:
        batches.cleanup()


def day_scope(first: dt.date, days: int = 1) -> PartitionScope:
    return PartitionScope.time_window("date", first, first + dt.timedelta(days=days))


def days(first: dt.date, n: int, value: int = 1, hosting: str = "cloud") -> pl.DataFrame:
    dates = [first + dt.timedelta(days=i) for i in range(n)]
    return pl.DataFrame({"date": dates, "count": [value] * n, "hosting": [hosting] * n})


def rows_of(wh: Warehouse, table: TableRef, *columns: str, scope: PartitionScope | None = None) -> list:
    frame = wh.read(table, scope)
    return sorted(
        frame.select(columns or frame.columns).rows(), key=lambda row: [(v is None, v) for v in row]
    )


def versions(*rows: tuple[str, dt.date, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "license_id": [r[0] for r in rows],
            "last_updated": [r[1] for r in rows],
            "edition": [r[2] for r in rows],
        },
        schema={"license_id": pl.String, "last_updated": pl.Date, "edition": pl.String},
    )
