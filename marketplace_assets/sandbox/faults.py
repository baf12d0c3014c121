"""Injectable faults for the simulated Marketplace.

A `FaultRule` says "the next N requests whose path matches answer badly in this way". Rules are
checked in insertion order and the first matching rule with uses left applies, so a test can stack
"one 429, then one 503" on the same path. Everything here is thread-safe because the HTTP server
answers each request on its own thread.

Besides broken transport (status, drop, slow, malformed), the kinds in `body_faults` answer a complete,
well-formed HTTP response with bad content: a gateway's header echo or HTML page, a short page or
file, a file cut inside a record, a field of the wrong type.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FAULT_KINDS = (
    "status", "drop", "slow", "malformed",
    "short_page", "short_file", "cut_record", "echo_headers", "html", "type_drift",
)  # fmt: skip
# The status a rule answers when it sets none (the body rewrites keep the API's own status).
DEFAULT_STATUS = {"echo_headers": 400, "html": 200}


@dataclass(frozen=True)
class FaultRule:
    """One injectable fault.

    path: substring of the request path, or a regular expression searched in it
        (e.g. "/evaluations/" or r"feedback/details$").
    kind: "status" (answer `status` with a JSON message), "drop" (close the connection mid-body),
        "slow" (sleep `delay` seconds on the server before answering normally), "malformed"
        (answer 200 with a truncated JSON body), or one of the well-formed bad answers of
        `body_faults`: "echo_headers" (a JSON error echoing the request headers, Authorization
        included), "html" (a 200 HTML sign-in page), "short_page" (a JSON page keeps the first
        `fraction` of its records), "short_file" (a CSV / JSON-array file keeps the first `fraction`
        of its records), "cut_record" (a file ends inside the record at `fraction` of its bytes),
        "type_drift" (`field` of record `record` holds the text `value`).
    method: only requests with this HTTP method match (None: any method).
    status: the status code for kind="status" (429, 500, 502, 503, 504, 400, ...), "echo_headers" or
        "html". None (the default): 400 for echo_headers, 200 for html, 503 otherwise.
    retry_after: sent as the `Retry-After` header when set: seconds ("1") or an HTTP date.
    delay: seconds to sleep for kind="slow".
    times: how many matching requests the rule applies to before it is used up (None: forever). A
        body rewrite is used up by any matching request, even one whose answer it cannot rewrite.
    body: the error message for kind="status" (the message's lead for "echo_headers"), or the
        literal body for kind="malformed" and "html".
    fraction: 0..1, the share of records kept ("short_page", "short_file", rounded down) or of bytes
        before the cut ("cut_record").
    field: for "type_drift", the field to change: the dotted camelCase JSON path
        (`purchaseDetails.vendorAmount`), which is also the CSV header name.
    value: for "type_drift", the text put in the field.
    record: for "type_drift", the index of the record to change (negative: from the end, -1 = last).
    """

    path: str
    kind: str = "status"
    method: str | None = None
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    times: int | None = None
    body: str | None = None
    fraction: float = 0.5
    field: str | None = None
    value: str = "n/a"
    record: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"FaultRule.kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if self.status is None:  # frozen: resolve the kind's default status once, here
            object.__setattr__(self, "status", DEFAULT_STATUS.get(self.kind, 503))
        if not 100 <= int(self.http_status) <= 599:
            raise ValueError(f"FaultRule.status must be an HTTP status code, got {self.status!r}")
        if self.times is not None and self.times < 0:
            raise ValueError("FaultRule.times must be >= 0 or None (forever)")
        if self.delay < 0:
            raise ValueError("FaultRule.delay must be >= 0 seconds")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"FaultRule.fraction must be between 0 and 1, got {self.fraction!r}")
        if self.kind == "type_drift" and not self.field:
            raise ValueError("FaultRule.field must name the field to change for kind='type_drift'")
        if not isinstance(self.record, int) or isinstance(self.record, bool):
            raise ValueError(f"FaultRule.record must be an integer, got {self.record!r}")
        if not isinstance(self.value, str):
            raise ValueError(f"FaultRule.value must be a string, got {self.value!r}")

    @property
    def http_status(self) -> int:
        """The status this rule answers with (its own, or the kind's default)."""
        return int(self.status) if self.status is not None else DEFAULT_STATUS.get(self.kind, 503)

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
        for name, convert in (("status", int), ("delay", float), ("fraction", float), ("value", str)):
            if values.get(name) is not None:
                values[name] = convert(values[name])
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
