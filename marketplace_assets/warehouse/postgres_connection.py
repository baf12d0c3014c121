"""Connecting to the PostgreSQL warehouse without ever showing its password.

The URL is ``postgresql://user@host:port/db`` (libpq's URI syntax; ``postgres://`` and SQLAlchemy's
``postgresql+psycopg://`` are accepted too, and query parameters such as ``?sslmode=require`` are
passed on). The password comes from ``MARKETPLACE_WAREHOUSE_PASSWORD`` when it is set; else from a
password the URL itself holds (discouraged); else libpq finds it as usual (``PGPASSWORD``,
``~/.pgpass`` or ``PGPASSFILE``). Whatever the source, the URL shown in a ``repr``, a log line or an
error never holds it, and driver messages are redacted before they are shown.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from marketplace_assets.warehouse.base import WarehouseConnectionError

PASSWORD_ENV = "MARKETPLACE_WAREHOUSE_PASSWORD"
REDACTED = "***"
CONNECT_TIMEOUT_SECONDS = 10
# Shown in pg_stat_activity, and by a writer that waits, to tell whose lock it waits for.
APPLICATION_NAME = "marketplace_assets"
# userinfo passwords and password=... settings in anything that looks like a URL or a conninfo.
_URL_PASSWORD = re.compile(r"(://[^:/?#@\s]*):[^@/\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


@dataclass(frozen=True)
class PostgresTarget:
    """Where to connect: the libpq parameters, without the password, and the password on its own."""

    display_url: str
    params: dict[str, str]
    password: str | None = field(default=None, repr=False)
    # Whatever the URL held as a password, as typed: redacted from messages too.
    url_secrets: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_url(cls, url: str, password: str | None = None) -> PostgresTarget:
        """Parse ``url``; a password in it is taken out before libpq sees the URL, so that no libpq
        message can quote it (libpq quotes what it cannot parse)."""
        url = url.strip()
        scheme, rest = url.split("://", 1) if "://" in url else ("postgresql", url)
        if scheme.startswith("postgresql+"):
            scheme = "postgresql"  # SQLAlchemy's driver suffix means nothing to libpq
        userinfo, host_part = _split_userinfo(rest)
        user, colon, typed_secret = userinfo.partition(":")
        libpq_url = f"{scheme}://{user + '@' if userinfo else ''}{host_part}"
        secrets = [typed_secret or None, _query_password(host_part)]
        display = display_url(libpq_url)
        try:
            params = conninfo_to_dict(libpq_url)
        except psycopg.Error as exc:
            raise ValueError(
                f"invalid PostgreSQL warehouse URL {display}: {_redact_all(str(exc).strip(), secrets)}. Use "
                "postgresql://user@host:port/database (the password in MARKETPLACE_WAREHOUSE_PASSWORD)."
            ) from None
        in_url = params.pop("password", None) or (unquote(typed_secret) if colon and typed_secret else None)
        # Given (the resource binds MARKETPLACE_WAREHOUSE_PASSWORD through dg.EnvVar), else the variable.
        password = password or os.environ.get(PASSWORD_ENV) or (str(in_url) if in_url else None)
        return cls(
            display_url=display,
            params={k: str(v) for k, v in params.items()},
            password=password,
            url_secrets=tuple(x for x in secrets if x),
        )

    def connect(self) -> psycopg.Connection[Any]:
        """An autocommit connection (transactions are explicit); errors never show the password."""
        options: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": f"{APPLICATION_NAME} (pid {os.getpid()})",
        }
        options |= self.params  # what the URL sets wins
        if self.password is not None:
            options["password"] = self.password
        try:
            return psycopg.connect(autocommit=True, **options)
        except psycopg.Error as exc:
            raise WarehouseConnectionError(
                f"Could not connect to the PostgreSQL warehouse {self.display_url}: "
                f"{self.redact(str(exc).strip())}. Check the URL (MARKETPLACE_WAREHOUSE), that the "
                f"server is up, and the password ({PASSWORD_ENV}, else PGPASSWORD or ~/.pgpass)."
            ) from None

    def redact(self, message: str) -> str:
        return _redact_all(message, [self.password, *self.url_secrets])


def _split_userinfo(rest: str) -> tuple[str, str]:
    """``user:password`` and ``host:port/db?query`` of what follows ``scheme://``. The password may
    hold unescaped ``@``, ``/`` or ``?``, so the host starts after the last ``@`` before the query,
    or else after the last ``@`` at all."""
    before_query = rest.split("?", 1)[0]
    at = before_query.rfind("@")
    if at < 0:
        at = rest.rfind("@")
    return (rest[:at], rest[at + 1 :]) if at >= 0 else ("", rest)


def _query_password(host_part: str) -> str | None:
    query = host_part.split("?", 1)[1] if "?" in host_part else ""
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() == "password" and value:
            return value
    return None


def _redact_all(message: str, secrets: list[str | None]) -> str:
    for secret in secrets:
        message = redact(message, secret)
    return redact(message, None)


def display_url(url: str) -> str:
    """The URL without any password: neither ``user:password@`` nor ``?password=...``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, hosts = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}@{hosts}" if user else hosts
        query = urlencode(
            [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "password"],
            quote_via=quote,
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        # Not even splittable: show the scheme only, the rest might be a password.
        return url.split("://", 1)[0] + "://" + REDACTED


def redact(message: str, password: str | None) -> str:
    """``message`` with the password (raw or URL-encoded) and any password setting replaced."""
    if password:
        forms = {password, quote(password, safe=""), quote(password), unquote(password)}
        for form in sorted(forms, key=len, reverse=True):  # longest first: no half-replaced secret
            message = message.replace(form, REDACTED)
    message = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", message)
    return _KEYWORD_PASSWORD.sub(rf"\1{REDACTED}", message)
