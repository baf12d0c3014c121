"""A throwaway PostgreSQL server for the tests: `initdb` + `pg_ctl start` in a directory under /tmp.

The session fixture `postgres_server` starts one server for the whole test session, listening on
127.0.0.1 on a free port, with a database the tests' role may create schemas in and a password for
that role (so the warehouse's password handling runs for real). It stops the server (`pg_ctl stop -m
fast`) and removes the directory at the end of the session.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system user (the
Debian package creates it), in a directory that user owns: pytest's own tmp directories are root's,
mode 0700, and not traversable by it.

Without the server binaries the PostgreSQL tests are skipped with the install hint, unless
``MARKETPLACE_REQUIRE_POSTGRES=1`` (CI sets it): then they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

REQUIRE_ENV = "MARKETPLACE_REQUIRE_POSTGRES"
MISSING_HINT = "PostgreSQL server binaries not found: apt-get install postgresql (Debian) to run these tests"
SERVER_USER = "postgres"  # the unprivileged system user the server runs as when we are root
DATABASE = "marketplace_test"
ROLE = "marketplace_writer"
# Characters that a URL would need escaped: the password is never put into a URL.
ROLE_PASSWORD = "s3cr:t@/p%ss w0rd"
ADMIN_PASSWORD = "admin-only-for-tests"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    database: str
    role: str
    password: str
    admin_password: str
    data_dir: Path

    @property
    def url(self) -> str:
        """The warehouse URL, without a password (give it with MARKETPLACE_WAREHOUSE_PASSWORD)."""
        return f"postgresql://{self.role}@{self.host}:{self.port}/{self.database}"

    def admin_connect(self, **kwargs: Any) -> psycopg.Connection:
        """A superuser connection to the test database (for checks the role may not do)."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=SERVER_USER,
            password=self.admin_password,
            autocommit=True,
            **kwargs,
        )


def find_bindir() -> Path | None:
    """The directory of initdb/pg_ctl: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            candidates.append(Path(done.stdout.strip()))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0), reverse=True
    )
    candidates += [Path(p) for p in versions]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Runner:
    """Runs the server binaries as an unprivileged user when this process is root."""

    def __init__(self) -> None:
        self.as_user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError as exc:
                raise RuntimeError(
                    f"Running as root, and PostgreSQL refuses to run as root, but there is no "
                    f"{SERVER_USER!r} system user to run it as. Install Debian's postgresql package "
                    "(it creates the user) or run the tests as an unprivileged user."
                ) from exc
            self.as_user = SERVER_USER

    def chown(self, path: Path) -> None:
        if self.as_user is not None:
            entry = pwd.getpwnam(self.as_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def run(self, args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            args,
            cwd=cwd,
            user=self.as_user,
            group=pwd.getpwnam(self.as_user).pw_gid if self.as_user else None,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(cwd)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed with exit code {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done


@dataclass
class _Started:
    server: PostgresServer
    runner: _Runner
    bindir: Path
    base: Path


def start_server(bindir: Path) -> _Started:
    runner = _Runner()
    # A directory of our own under /tmp (mode 0700, owned by the server's user): /tmp is traversable.
    base = Path(tempfile.mkdtemp(prefix="marketplace-pg-", dir="/tmp"))
    runner.chown(base)
    data = base / "data"
    pwfile = base / "pwfile"
    pwfile.write_text(ADMIN_PASSWORD + "\n")
    runner.chown(pwfile)
    try:
        runner.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SERVER_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ],
            cwd=base,
        )
        pwfile.unlink()
        port = _start_on_a_free_port(runner, bindir, base)
        server = PostgresServer("127.0.0.1", port, DATABASE, ROLE, ROLE_PASSWORD, ADMIN_PASSWORD, data)
        _create_database_and_role(server)
    except BaseException:
        _stop(runner, bindir, base)
        raise
    return _Started(server, runner, bindir, base)


def _start_on_a_free_port(runner: _Runner, bindir: Path, base: Path, attempts: int = 3) -> int:
    """Start the server on a port that was free a moment ago; another one if it was taken meanwhile."""
    log = base / "server.log"
    for attempt in range(attempts):
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(base / "data"), "-l", str(log), "-o", options]
        try:
            runner.run([*pg_ctl, "-w", "start"], cwd=base)
            return port
        except RuntimeError as exc:
            taken = log.exists() and "could not bind" in log.read_text(errors="replace")
            if not taken or attempt == attempts - 1:
                details = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{exc}\nserver log:\n{details}") from exc
            log.unlink()
    raise AssertionError("unreachable")


def _create_database_and_role(server: PostgresServer) -> None:
    with psycopg.connect(
        host=server.host,
        port=server.port,
        dbname="postgres",
        user=SERVER_USER,
        password=server.admin_password,
        autocommit=True,
    ) as con:
        # The role the warehouse uses: no superuser, only CREATE on its database (to create schemas).
        con.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(server.role), sql.Literal(server.password)
            )
        )
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(server.database)))
        con.execute(
            sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(server.database), sql.Identifier(server.role)
            )
        )


def _stop(runner: _Runner, bindir: Path, base: Path) -> None:
    data = base / "data"
    try:
        if (data / "postmaster.pid").exists():
            runner.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], cwd=base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; skipped (or, with MARKETPLACE_REQUIRE_POSTGRES=1,
    failed) when the server binaries are not installed."""
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {MISSING_HINT}", pytrace=False)
        pytest.skip(MISSING_HINT)
    started = start_server(bindir)
    try:
        yield started.server
    finally:
        _stop(started.runner, started.bindir, started.base)
