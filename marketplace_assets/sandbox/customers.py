"""Hashing shortcuts, identifiers and the customer pool of the simulated licensing data.

`fast_digest` and `fast_units` give byte-for-byte the numbers of `data.digest` / `data.units` with less
call overhead (the sales generator hashes a few times per row, a million rows at a time).
Customers are a pool shared by every license: a customer holds licenses of several apps over the
years, always with the same company, site and contacts.
"""

from __future__ import annotations

import hashlib
import struct
from bisect import bisect_right
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate
from typing import Any

from marketplace_assets.sandbox.data import World, pick

_INV32 = 1 / 2**32
_INV16 = 1 / 2**16
_WORDS16 = struct.Struct(">32H")
_WORDS32 = struct.Struct(">16I")


def fast_digest(seed: int, *parts: object, size: int = 64) -> bytes:
    """Byte for byte `data.digest` (keyed blake2b of the seed and parts), with less call overhead."""
    text = "\x1f".join(map(str, (seed, *parts)))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).digest()


def fast_units(seed: int, *parts: object, n: int = 16) -> list[float]:
    """The same numbers as `data.units` (blake2b, big-endian 32-bit words / 2**32), unpacked faster."""
    out: list[float] = []
    block = 0
    while len(out) < n:
        out.extend([x * _INV32 for x in _WORDS32.unpack(fast_digest(seed, *parts, block))])
        block += 1
    return out[:n]


def uniforms16(raw: bytes) -> list[float]:
    """Uniforms in [0, 1) from the 16-bit words of a 64-byte digest (coarser than `units`, 32 of them)."""
    return [x * _INV16 for x in _WORDS16.unpack(raw)]


class Choice:
    """A fixed weighted choice: `choice(u)` is the option whose cumulative weight bracket holds u."""

    def __init__(self, options: Sequence[tuple[str, float]]) -> None:
        self.values = [value for value, _ in options]
        total = sum(weight for _, weight in options)
        self.bounds = list(accumulate(weight / total for _, weight in options))

    def __call__(self, u: float) -> str:
        return self.values[min(bisect_right(self.bounds, u), len(self.values) - 1)]


# --- identifiers and customers ---------------------------------------------------------------------

_COUNTRIES = (
    ("United States", "Americas", "Austin", 25.0), ("Germany", "EMEA", "Berlin", 12.0),
    ("United Kingdom", "EMEA", "London", 9.0), ("India", "APAC", "Bengaluru", 8.0),
    ("France", "EMEA", "Lyon", 6.0), ("Japan", "APAC", "Osaka", 5.0), ("Australia", "APAC", "Sydney", 5.0),
    ("Canada", "Americas", "Toronto", 5.0), ("Brazil", "Americas", "Curitiba", 4.0),
    ("Netherlands", "EMEA", "Utrecht", 4.0), ("Poland", "EMEA", "Krakow", 3.0),
    ("Spain", "EMEA", "Valencia", 3.0),
)  # fmt: skip
_NAMES = ("Ada", "Ben", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena")
_SURNAMES = ("Novak", "Okafor", "Patel", "Quinn", "Rossi", "Sato", "Tanaka", "Ueda", "Vogel", "Weber")
_FIRMS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
)
_FIRM_KINDS = ("Labs", "Systems", "GmbH", "Ltd", "Inc", "Group", "Software", "Consulting")

_COUNTRY_WEIGHTS = [(i, c[3]) for i, c in enumerate(_COUNTRIES)]


_DIGIT_BYTES = bytes(48 + b % 10 for b in range(256))
_LETTER_BYTES = bytes(ord("ABCDEFGHJKLMNPQRSTUVWXYZ"[b % 24]) for b in range(256))


def entitlement_number(raw: bytes) -> str:
    """An entitlement number (E-123-ABC-DEF-45G) from 13 bytes."""
    d = raw[:6].translate(_DIGIT_BYTES).decode()
    a = raw[6:13].translate(_LETTER_BYTES).decode()
    return f"E-{d[:3]}-{a[:3]}-{a[3:6]}-{d[3:5]}{a[6]}"


def uuid_text(raw: bytes) -> str:
    h = bytearray(raw[:16])
    h[6], h[8] = (h[6] & 0x0F) | 0x40, (h[8] & 0x3F) | 0x80
    s = h.hex()
    return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"


def _contact(name: str, domain: str, city: str, u: float) -> dict[str, str]:
    first, last = name.split(" ", 1)
    return {
        "email": f"{first.lower()}.{last.lower()}@{domain}",
        "name": name,
        "address1": f"{1 + int(u * 250)} Harbour Street",
        "city": city,
        "postcode": f"{10000 + int(u * 89999)}",
        "phone": f"+1-555-{int(u * 10000):04d}",
    }


def customer_count(world: World) -> int:
    """The size of the customer pool: customers hold several licenses (of several apps) over time."""
    return max(300, round(600 * world.volume))


@lru_cache(maxsize=16384)
def customer(world: World, index: int) -> dict[str, Any]:
    """Customer `index`: company, site, country and contacts (shared by all of its licenses)."""
    raw = fast_digest(world.seed, "customer", index)
    u = uniforms16(raw)
    country, region, city, _ = _COUNTRIES[pick(_COUNTRY_WEIGHTS, u[0])]
    firm = f"{_FIRMS[int(u[1] * len(_FIRMS))]} {_FIRM_KINDS[int(u[2] * len(_FIRM_KINDS))]}"
    slug = f"{firm.split()[0].lower()}-{index:x}"
    person = f"{_NAMES[int(u[3] * len(_NAMES))]} {_SURNAMES[int(u[4] * len(_SURNAMES))]}"
    payer = f"{_NAMES[int(u[5] * len(_NAMES))]} {_SURNAMES[int(u[6] * len(_SURNAMES))]}"
    technical = _contact(person, f"{slug}.example.com", city, u[7])
    billing = _contact(payer, f"{slug}.example.com", city, u[8])
    return {
        "cloudId": uuid_text(raw[32:48]),
        "cloudSiteHostname": f"{slug}.atlassian.net",
        "contactDetails": {
            "technicalContact": technical,
            "billingContact": billing,
            "company": firm,
            "country": country,
            "region": region,
        },
        # As transactions show it (shared by the rows of all its sales; rows are read-only).
        "customerDetails": {
            "company": firm,
            "country": country,
            "region": region,
            "technicalContact": {"email": technical["email"], "name": technical["name"]},
            "billingContact": {"email": billing["email"], "name": billing["name"]},
        },
    }
