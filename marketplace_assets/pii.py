"""The PII policy: what is stored of customers' contact details (MARKETPLACE_PII=keep|hash|drop).

Licenses, transactions and license events carry the technical and billing contacts of each customer
(and the partner's billing contact): names, emails, phones and postal addresses. The policy applies to
every asset's output before anything is written, logged or shown as metadata:

- ``keep`` (the default) stores them as the API sends them;
- ``hash`` stores HMAC-SHA256(salt, value) as hex: stable across runs and assets, so a contact can
  still be joined and counted, but not read. The salt comes from MARKETPLACE_PII_SALT;
- ``drop`` leaves the columns out of the warehouse.

Company, country and region describe the customer's organisation, not a person, and are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from enum import StrEnum

import dagster as dg
import polars as pl
from pydantic import Field


class PiiMode(StrEnum):
    KEEP = "keep"
    HASH = "hash"
    DROP = "drop"


# Flattened contact fields end in `contact_<part>` (contact_details_technical_contact_email,
# customer_details_billing_contact_name, partner_details_billing_contact_email,
# license_details_contact_details_technical_contact_phone, ...); a bare email or phone column counts too.
_CONTACT_FIELD = re.compile(
    r"(^|_)contact_(email|name|full_name|phone|address\d*|city|state|postcode|zip|zip_code)$"
    r"|(^|_)(email|email_address|phone|phone_number)$"
)


def contact_columns(columns: Iterable[str]) -> list[str]:
    """The columns the policy governs, in the order given."""
    return [c for c in columns if _CONTACT_FIELD.search(c)]


def hash_value(value: str, salt: str) -> str:
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


def _hashed(column: pl.Series, salt: str) -> pl.Series:
    # Hash each distinct value once: contacts repeat across a customer's many licenses and sales.
    text = column.cast(pl.String)
    distinct = text.drop_nulls().unique()
    mapping = {v: hash_value(v, salt) for v in distinct.to_list()}
    return text.replace_strict(mapping, default=None, return_dtype=pl.String)


class PiiPolicy(dg.ConfigurableResource):
    """Applies MARKETPLACE_PII to each asset's frame before it is stored or shown."""

    mode: str = Field(default=PiiMode.KEEP.value, description="keep, hash or drop (MARKETPLACE_PII)")
    salt: str | None = Field(
        default=None, description="HMAC key for hash mode, bound to MARKETPLACE_PII_SALT; never shown"
    )

    def apply(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
        """The frame as the policy allows it to be stored, and the contact columns it changed."""
        mode = self._mode()
        columns = contact_columns(frame.columns)
        if mode is PiiMode.KEEP or not columns:
            return frame, []
        if mode is PiiMode.DROP:
            return frame.drop(columns), columns
        salt = self.salt or ""
        if not salt.strip():
            raise dg.Failure(
                "MARKETPLACE_PII=hash needs MARKETPLACE_PII_SALT, a secret that keeps the hashes stable. "
                "Set it (and keep it: a new salt changes every hash), or choose MARKETPLACE_PII=keep or "
                "drop. Nothing was written."
            )
        return frame.with_columns(_hashed(frame.get_column(c), salt).alias(c) for c in columns), columns

    def describe(self, changed: list[str]) -> str:
        """For the materialization's metadata: the mode and what it changed (never a value)."""
        mode = self._mode()
        if mode is PiiMode.KEEP or not changed:
            return mode.value
        verb = "hashed" if mode is PiiMode.HASH else "dropped"
        return f"{mode.value}: {verb} {', '.join(changed)}"

    def _mode(self) -> PiiMode:
        try:
            return PiiMode(self.mode.strip().lower())
        except ValueError:
            raise dg.Failure(
                f"MARKETPLACE_PII is {self.mode!r}; use keep (store contacts as sent), hash (salted "
                "HMAC-SHA256, needs MARKETPLACE_PII_SALT) or drop (leave contact columns out)."
            ) from None
