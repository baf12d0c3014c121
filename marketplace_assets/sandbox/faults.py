"""Injectable faults for the simulated Marketplace.

A `FaultRule` says "the next N requests whose path matches answer badly in this way". Rules are
checked in insertion order and the first matching rule with uses left applies, so a test can stack
"one 429, then one 503" on the same path. Everything here is thread-safe because the HTTP server
answers each request on its own thread.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FAULT_KINDS = ("status", "drop", "slow", "malformed")


@dataclass(frozen=True)
class FaultRule:
    """One injectable fault.

    path: substring of the request path, or a regular expression searched in it
        (e.g. "/evaluations/" or r"feedback/details$").
    kind: "status" (answer `status` with a JSON message), "drop" (close the connection mid-body),
        "slow" (sleep `delay` seconds on the server before answering normally) or "malformed"
        (answer 200 with a truncated JSON body).
    method: only requests with this HTTP method match (None: any method).
    status: the status code for kind="status" (429, 500, 502, 503, 504, 400, ...).
    retry_after: sent as the `Retry-After` header when set: seconds ("1") or an HTTP date.
    delay: seconds to sleep for kind="slow".
    times: how many matching requests the rule applies to before it is used up (None: forever).
    body: the error message for kind="status", or the literal body for kind="malformed".
    """

    path: str
    kind: str = "status"
    method: str | None = None
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    times: int | None = None
    body: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"FaultRule.kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if not 100 <= int(self.status) <= 599:
            raise ValueError(f"FaultRule.status must be an HTTP status code, got {self.status!r}")
        if self.times is not None and self.times < 0:
            raise ValueError("FaultRule.times must be >= 0 or None (forever)")
        if self.delay < 0:
            raise ValueError("FaultRule.delay must be >= 0 seconds")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from JSON fields (as posted to `/_sandbox/faults`); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown FaultRule fields: {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if values.get("retry_after") is not None:
            values["retry_after"] = str(values["retry_after"])
        if "delay" in values:
            values["delay"] = float(values["delay"])
        if "status" in values:
            values["status"] = int(values["status"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path in path:
            return True
        try:
            return re.search(self.path, path) is not None
        except re.error:
            return False


class FaultSet:
    """The ordered, thread-safe list of active rules, each with its remaining uses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[list[Any]] = []  # [rule, remaining uses or None]

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._entries.append([rule, rule.times])

    def extend(self, rules: Iterable[FaultRule]) -> None:
        for rule in rules:
            self.add(rule)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    @property
    def rules(self) -> list[FaultRule]:
        """The rules that still have uses left, in checking order."""
        with self._lock:
            return [rule for rule, left in self._entries if left is None or left > 0]

    def __len__(self) -> int:
        return len(self.rules)

    def take(self, method: str, path: str) -> FaultRule | None:
        """Return the first matching rule with uses left and consume one use of it."""
        with self._lock:
            for entry in self._entries:
                rule, left = entry
                if (left is None or left > 0) and rule.matches(method, path):
                    if left is not None:
                        entry[1] = left - 1
                    return rule
            return None
