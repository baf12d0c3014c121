"""Configuration: the MARKETPLACE_* environment variables (or a `.env` file), read in one place.

Definitions read these once at load time to decide the mode (live or sandbox), the warehouse location and
the first partition. Secrets (the API token, a warehouse URL with a password) are then bound to resources
through `dg.EnvVar`, so the Dagster UI and run config show the variable's name, never its value.
"""

from __future__ import annotations

import os
from datetime import date
from typing import Literal

from dagster._utils.schedules import is_valid_cron_string
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from marketplace_assets.api.client import DEFAULT_BASE_URL

SANDBOX_DEVELOPER_ID = "sandbox-developer"
SANDBOX_EMAIL = "sandbox@example.com"
SANDBOX_TOKEN = "sandbox-token"  # not a secret: the in-process sandbox checks it like the real API would
SANDBOX_WAREHOUSE = "data/sandbox.duckdb"
LIVE_WAREHOUSE = "data/marketplace.duckdb"
LIVE_REQUIRED = ("MARKETPLACE_DEVELOPER_ID", "MARKETPLACE_EMAIL", "MARKETPLACE_API_TOKEN")


class ConfigurationError(ValueError):
    """A MARKETPLACE_* variable is missing or malformed."""


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

    @field_validator("developer_id", "email", "warehouse", mode="before")
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
        if not is_valid_cron_string(value.strip()):
            raise ValueError("not a 5-field cron expression such as '0 3 * * *'")
        return value.strip()

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

    def missing_live_variables(self) -> list[str]:
        values = {
            "MARKETPLACE_DEVELOPER_ID": self.developer_id,
            "MARKETPLACE_EMAIL": self.email,
            "MARKETPLACE_API_TOKEN": self.api_token,
        }
        return [name for name in LIVE_REQUIRED if values[name] is None]


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
            "(dates are YYYY-MM-DD, MARKETPLACE_SANDBOX is 1/0/true/false)."
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
    return settings
