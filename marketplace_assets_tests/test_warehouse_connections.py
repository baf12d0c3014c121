"""Opening a warehouse: the backend a location picks, and where the PostgreSQL password comes from
(the resource, MARKETPLACE_WAREHOUSE_PASSWORD, libpq's PGPASSWORD and password file, the URL) without its
ever being shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace_assets.warehouse import DuckDBWarehouse, PostgresWarehouse, WarehouseError, open_warehouse
from marketplace_assets.warehouse.postgres_connection import PASSWORD_ENV, display_url, redact
from marketplace_assets_tests.postgres_server import PostgresServer
from marketplace_assets_tests.warehouse_backends import T


@pytest.mark.postgres
def test_password_sources_and_redaction(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = postgres_server
    url = server.url
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    # No password anywhere: a clear error that names where to put one.
    with pytest.raises(WarehouseError, match=PASSWORD_ENV) as missing:
        open_warehouse(url).table_columns(T)
    assert url in str(missing.value)
    # The password the resource passes (bound to MARKETPLACE_WAREHOUSE_PASSWORD through dg.EnvVar) ...
    assert open_warehouse(url, password=server.password).table_columns(T) == {}
    assert server.password not in repr(open_warehouse(url, password=server.password))
    # ... else MARKETPLACE_WAREHOUSE_PASSWORD, then libpq's PGPASSWORD and password file.
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    assert open_warehouse(url).table_columns(T) == {}
    monkeypatch.delenv(PASSWORD_ENV)
    monkeypatch.setenv("PGPASSWORD", server.password)
    assert open_warehouse(url).table_columns(T) == {}
    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    escaped = server.password.replace("\\", "\\\\").replace(":", "\\:")
    pgpass.write_text(f"{server.host}:{server.port}:{server.database}:{server.role}:{escaped}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    assert open_warehouse(url).table_columns(T) == {}
    # A password in the URL works, and is shown nowhere.
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    secret = "hunter2-not-shown"
    with_password = f"postgresql://{server.role}:{secret}@{server.host}:{server.port}/{server.database}"
    wh = open_warehouse(with_password)
    assert isinstance(wh, PostgresWarehouse)
    assert secret not in repr(wh) and repr(wh) == f"PostgresWarehouse({url!r})"
    with pytest.raises(WarehouseError) as wrong:
        wh.table_columns(T)
    assert secret not in str(wrong.value) and url in str(wrong.value)
    assert "password authentication failed" in str(wrong.value)
    assert display_url(f"{with_password}?sslmode=disable&password={secret}") == f"{url}?sslmode=disable"
    assert secret not in redact(f"failed: {with_password} password={secret}", None)
    # libpq quotes what it cannot parse: a malformed password never reaches it.
    for malformed in (f"postgresql://me:{secret} x@h/db?bogus=1", f"postgresql://me:{secret}%zz@h:port/db"):
        with pytest.raises((ValueError, WarehouseError)) as bad:
            open_warehouse(malformed).table_columns(T)
        assert secret not in str(bad.value) and "me@h" in str(bad.value)
    unescaped = f"postgresql://{server.role}:{server.password}@{server.host}:{server.port}/{server.database}"
    assert open_warehouse(unescaped).table_columns(T) == {}  # "@", "/", "%" and " " in it, unescaped


def test_open_warehouse_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_warehouse(str(tmp_path / "w.duckdb")), DuckDBWarehouse)
    for url in ("postgresql://u@h/db", "postgres://u@h:5433/db", "postgresql+psycopg://u@h/db"):
        assert isinstance(open_warehouse(url), PostgresWarehouse)
