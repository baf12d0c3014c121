"""Configuration: the MARKETPLACE_* environment variables (or a `.env` file), read in one place.

Definitions read these once at load time to decide the mode (live or sandbox), the warehouse location and
the first partition. Secrets (the API token, a warehouse URL with a password) are then bound to resources
through `dg.EnvVar`, so the Dagster UI and run config show the variable's name, never its value.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, TypeAdapter, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from marketplace_assets.constants import DEFAULT_BASE_URL, DEFAULT_EXPORT_POLL_INTERVAL
from marketplace_assets.dagster_conventions import is_valid_cron

try:
    import pwd  # names the user in permission errors; POSIX only
except ImportError:  # pragma: no cover - Windows
    pwd = None

SANDBOX_DEVELOPER_ID = "sandbox-developer"
SANDBOX_WAREHOUSE = "data/sandbox.duckdb"
LIVE_WAREHOUSE = "data/marketplace.duckdb"
LIVE_REQUIRED = ("MARKETPLACE_DEVELOPER_ID", "MARKETPLACE_EMAIL", "MARKETPLACE_API_TOKEN")
DEFAULT_EXPORT_DEADLINE = timedelta(hours=3)
# The sandbox prepares its exports in a few polls, so its poll interval is a second (live:
# DEFAULT_EXPORT_POLL_INTERVAL, 30 s).
SANDBOX_EXPORT_POLL_INTERVAL = 1.0
# Warehouse URLs the PostgreSQL backend will take (the same prefixes `open_warehouse` recognises).
POSTGRES_PREFIXES = ("postgresql://", "postgres://", "postgresql+")

# `3h`, `90m`, `45s`, `1h30m`, `1d12h`, `2.5m`: units in descending order, each at most once.
_SHORT_DURATION = re.compile(
    "".join(rf"(?:(?P<{unit}>\d+(?:\.\d+)?){unit})?" for unit in "dhms"), re.IGNORECASE
)
_DURATION_HINT = "use e.g. 3h, 90m, 45s, 1h30m, plain seconds (7200) or ISO 8601 (PT3H)"


class ConfigurationError(ValueError):
    """A MARKETPLACE_* variable is missing or malformed."""


def _timedelta(seconds: float) -> timedelta:
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration too long; {_DURATION_HINT}") from None


class MarketplaceSettings(BaseSettings):
    """Every MARKETPLACE_* variable with its default. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="MARKETPLACE_", env_file=".env", extra="ignore")

    developer_id: str | None = None
    email: str | None = None
    api_token: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    start_date: date = date(2024, 1, 1)
    warehouse: str | None = None
    sandbox: bool | None = None
    # What happens to customer contact fields (names, emails, phones, addresses): see pii.py.
    pii: Literal["keep", "hash", "drop"] = "keep"
    pii_salt: SecretStr | None = None
    # Schedules re-materialize this many partitions before the newest complete one (late corrections).
    lookback_days: int = Field(default=3, ge=0, le=60)
    lookback_weeks: int = Field(default=1, ge=0, le=26)
    lookback_months: int = Field(default=1, ge=0, le=12)
    # The status schedules and export sensors ship with; either way they can be switched in the UI.
    automation: Literal["stopped", "running"] = "stopped"
    # When the schedules of each cadence tick (UTC), replacing the defaults in schedules.py. The tick time
    # only says when to look: the availability rule (a period's end + 24 h) still decides the range.
    cron_daily: str | None = None
    cron_weekly: str | None = None
    cron_monthly: str | None = None
    # How long one async export may take, restarts included, before it is failed (see _parse_duration).
    export_deadline: timedelta = DEFAULT_EXPORT_DEADLINE
    # HTTP timeouts of every API call, in seconds.
    read_timeout: float = Field(default=120.0, gt=0, allow_inf_nan=False)
    connect_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # Seconds: the longest wait between an export's status polls; None: the mode's default (see
    # export_poll_interval_seconds).
    export_poll_interval: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # A YAML file of partner-metric queries (reports/partner_metrics.py); unset: the default queries.
    partner_metrics: Path | None = None
    # Seconds: the minimum interval of every sensor of the project, replacing each one's own (30 s, 60 s,
    # an hour), so that tests and demos see ticks in seconds; None: each sensor's own interval.
    sensor_interval: int | None = Field(default=None, ge=1, le=86_400)

    @field_validator("developer_id", "email", "warehouse", "partner_metrics", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_token", "pii_salt", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cron_daily", "cron_weekly", "cron_monthly", mode="before")
    @classmethod
    def _cron_or_unset(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        # Dagster's own check: five fields, no seconds, no impossible dates (what a schedule accepts).
        if not is_valid_cron(value.strip()):
            raise ValueError("not a 5-field cron expression such as '0 3 * * *'")
        return value.strip()

    @field_validator(
        "read_timeout", "connect_timeout", "export_poll_interval", "sensor_interval", mode="before"
    )
    @classmethod
    def _blank_timeout_is_default(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[info.field_name].default
        return value

    @field_validator("base_url", mode="before")
    @classmethod
    def _blank_base_url_is_default(cls, value: object) -> object:
        return DEFAULT_BASE_URL if isinstance(value, str) and not value.strip() else value

    @field_validator("export_deadline", mode="before")
    @classmethod
    def _parse_duration(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return DEFAULT_EXPORT_DEADLINE
        try:
            seconds = float(text)  # plain seconds: 7200, 2.5
        except ValueError:
            pass
        else:
            if not math.isfinite(seconds):
                raise ValueError(f"not a duration: {_DURATION_HINT}")
            return _timedelta(seconds)
        match = _SHORT_DURATION.fullmatch(text)
        if match and any(match.groupdict().values()):
            factors = {"d": 86400, "h": 3600, "m": 60, "s": 1}
            return _timedelta(sum(float(v) * factors[k] for k, v in match.groupdict().items() if v))
        try:
            # ISO 8601 (PT3H, P1DT2H) and [-][DD]HH:MM:SS, as pydantic parses them.
            return TypeAdapter(timedelta).validate_python(text)
        except ValidationError:
            raise ValueError(f"not a duration: {_DURATION_HINT}") from None

    @field_validator("export_deadline")
    @classmethod
    def _positive_duration(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"must be longer than zero; {_DURATION_HINT}")
        return value

    @property
    def export_deadline_seconds(self) -> float:
        return self.export_deadline.total_seconds()

    @property
    def export_poll_interval_seconds(self) -> float:
        """MARKETPLACE_EXPORT_POLL_INTERVAL, or the mode's default when it is unset."""
        if self.export_poll_interval is not None:
            return self.export_poll_interval
        return SANDBOX_EXPORT_POLL_INTERVAL if self.is_sandbox else DEFAULT_EXPORT_POLL_INTERVAL

    @property
    def is_sandbox(self) -> bool:
        """Sandbox when asked for, or when no API token is set and sandbox was not switched off."""
        if self.sandbox is not None:
            return self.sandbox
        return self.api_token is None

    @property
    def warehouse_location(self) -> str:
        if self.warehouse:
            return self.warehouse
        return SANDBOX_WAREHOUSE if self.is_sandbox else LIVE_WAREHOUSE

    @property
    def source(self) -> str:
        return "sandbox" if self.is_sandbox else "live"

    @staticmethod
    def variable_is_set(name: str) -> bool:
        """Whether the process environment sets `name` (not blank). The definitions bind such a variable
        with `dg.EnvVar`, so the UI shows its name, never its value."""
        return bool(os.environ.get(name, "").strip())

    def missing_live_variables(self) -> list[str]:
        values = {
            "MARKETPLACE_DEVELOPER_ID": self.developer_id,
            "MARKETPLACE_EMAIL": self.email,
            "MARKETPLACE_API_TOKEN": self.api_token,
        }
        return [name for name in LIVE_REQUIRED if values[name] is None]


def sensor_interval_seconds(default: int) -> int:
    """A sensor's minimum interval: MARKETPLACE_SENSOR_INTERVAL when it is set, else `default` (the
    sensor's own).

    Sensors are defined when their module is imported, before definitions.py calls load_settings, so they
    ask here. A malformed variable (this one or another) is left to load_settings, which refuses it naming
    the variable before any sensor is used.
    """
    try:
        configured = MarketplaceSettings().sensor_interval
    except ValidationError:
        return default
    return default if configured is None else configured


def load_settings() -> MarketplaceSettings:
    """Read the settings, turning pydantic's report into one message per bad variable."""
    try:
        settings = MarketplaceSettings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "MARKETPLACE_" + "_".join(str(p) for p in error["loc"]).upper()
            shown = (
                "" if "TOKEN" in name or "SALT" in name else f"={os.environ.get(name, error.get('input'))!r}"
            )
            problems.append(f"{name}{shown}: {error['msg']}")
        raise ConfigurationError(
            "Invalid configuration: " + "; ".join(problems) + ". Fix the environment variable or .env entry "
            "(dates are YYYY-MM-DD, MARKETPLACE_SANDBOX is 1/0/true/false, timeouts and the export poll "
            "interval are seconds above 0)."
        ) from None
    if settings.pii == "hash" and settings.pii_salt is None:
        raise ConfigurationError(
            "MARKETPLACE_PII=hash needs MARKETPLACE_PII_SALT: a secret string that keeps the hashes stable "
            "across runs and unguessable. Set it (and keep it: a new salt changes every hash), or choose "
            "MARKETPLACE_PII=keep or drop."
        )
    if not settings.is_sandbox and (missing := settings.missing_live_variables()):
        raise ConfigurationError(
            f"Live mode (MARKETPLACE_SANDBOX=0 or an API token set) needs {', '.join(missing)}. Set them, or "
            "unset MARKETPLACE_API_TOKEN and MARKETPLACE_SANDBOX to use the built-in sandbox."
        )
    check_base_url(settings.base_url)
    check_warehouse(settings)
    return settings


def _without_userinfo(url: str) -> str:
    """The URL with any `user:password@` replaced by `***@`, even when the URL is malformed."""
    start = url.find("://") + 3 if "://" in url else 0
    end = len(url)
    for sep in "/?#":
        found = url.find(sep, start)
        if found != -1:
            end = min(end, found)
    at = url.rfind("@", start, end)
    return url if at == -1 else url[:start] + "***" + url[at:]


def check_base_url(url: str) -> None:
    """Refuse a MARKETPLACE_BASE_URL that is not an absolute http(s) URL with a host."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if url != url.strip():
        problem = "has spaces around it; it must be an absolute http:// or https:// URL"
    elif parts.scheme.lower() in ("http", "https") and parts.hostname and port_ok:
        return
    else:
        problem = "is not an absolute http:// or https:// URL with a host"
    raise ConfigurationError(
        f"MARKETPLACE_BASE_URL={_without_userinfo(url)!r} {problem}. Set it to the API root including "
        f"the scheme, e.g. {DEFAULT_BASE_URL} (or http://localhost:8000/marketplace for a local "
        "stand-in), or unset it to use that default."
    )


def check_warehouse(settings: MarketplaceSettings) -> None:
    """Refuse a DuckDB warehouse path this process could not create or write, before any run tries.

    PostgreSQL URLs are left to their backend. Permission bits are checked with `os.access` and then by
    really opening the file (or a nameless temporary file in the directory), because root bypasses the
    bits while a read-only or root-squashed mount does not.
    """
    location = settings.warehouse_location.strip()
    if location.startswith(POSTGRES_PREFIXES):
        return
    if settings.warehouse:
        subject = f"MARKETPLACE_WAREHOUSE={settings.warehouse!r}"
    else:
        subject = (
            f"The warehouse path {location!r} (the default of MARKETPLACE_WAREHOUSE in {settings.source} "
            "mode)"
        )
    if "://" in location:
        # Only the scheme: the rest of a URL may hold a password.
        scheme = location.split("://", 1)[0]
        raise ConfigurationError(
            f"MARKETPLACE_WAREHOUSE has the unsupported URL scheme {scheme!r}. Set it to a DuckDB file path "
            "such as data/marketplace.duckdb (or a postgresql://user@host:port/database URL)."
        )
    path = Path(location).expanduser().absolute()
    fix = "set MARKETPLACE_WAREHOUSE to a DuckDB file path in a directory this process can write"
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        info = None
    except OSError as exc:
        raise ConfigurationError(f"{subject}: cannot reach {path} ({exc.strerror}); {fix}.") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(
            f"{subject} is a directory ({path}), but it must name the DuckDB file itself, e.g. "
            f"{path / 'marketplace.duckdb'}; {fix}."
        )
    if info is not None and not _can_open(path):
        raise ConfigurationError(
            f"{subject}: the file {path} exists but {_this_user()} cannot write it. Give that user write "
            f"access (e.g. chmod u+w, or chown it), run as its owner, or {fix}."
        )
    directory = _nearest_existing_ancestor(path, subject, fix)
    if not _can_create_in(directory):
        what = "the DuckDB write-ahead log next to it" if info is not None else "the warehouse file"
        raise ConfigurationError(
            f"{subject}: {_this_user()} cannot create files in the directory {directory}, so DuckDB cannot "
            f"create {what}. Give that user write access to the directory, or {fix}."
        )


def _nearest_existing_ancestor(path: Path, subject: str, fix: str) -> Path:
    """The closest existing directory above `path` (where the file, or its missing parents, go)."""
    for ancestor in path.parents:
        try:
            info = ancestor.stat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise ConfigurationError(f"{subject}: cannot reach {ancestor} ({exc.strerror}); {fix}.") from None
        if not stat.S_ISDIR(info.st_mode):
            raise ConfigurationError(
                f"{subject}: {ancestor} is a file, not a directory, so the warehouse file {path} cannot be "
                f"created under it. Move or rename that file, or {fix}."
            )
        return ancestor
    return Path(path.anchor)


def _can_open(path: Path) -> bool:
    """Whether this process can read and append to the existing file (opened without writing)."""
    if not os.access(path, os.R_OK | os.W_OK):
        return False
    try:
        # No O_CREAT: if the file vanished meanwhile, do not leave an empty non-database behind.
        os.close(os.open(path, os.O_RDWR | os.O_APPEND))
    except OSError:
        return False
    return True


def _can_create_in(directory: Path) -> bool:
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        # Nameless on Linux (O_TMPFILE); elsewhere created and removed at once.
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError:
        return False
    return True


def _this_user() -> str:
    if pwd is None:
        return "this process"
    try:
        return f"this process (user {pwd.getpwuid(os.geteuid()).pw_name})"
    except KeyError:
        return f"this process (uid {os.geteuid()})"
