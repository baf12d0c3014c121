"""Faults that answer a well-formed HTTP response with bad content (see `faults.FaultRule`).

Gateway answers, made without asking the API:

- `echo_headers`: a JSON error (status 400 unless the rule sets one) whose message and nested
  `request.headers` echo every request header verbatim, Authorization included, as a misconfigured
  gateway does. The headers are echoed as the sandbox received them (names lower-cased).
- `html`: 200 `text/html; charset=utf-8` with a small sign-in page (a login wall or proxy page).

Body rewrites, applied to the API's own 200 answer (any other answer passes unchanged):

- `short_page`: a JSON object body keeps the first `fraction` (rounded down) of the records of its
  first top-level list of objects; totalCount, _links and every other field stay as they were.
- `short_file`: a file (CSV, or a JSON array of objects) keeps its first `fraction` of records (rounded
  down), cut between records: the CSV header and whole lines; a closed JSON array.
- `cut_record`: a file ends in the middle of the record holding about `fraction` of its bytes: a CSV
  line without its newline and with fewer fields than the header (cut outside quotes, before the last
  field); a JSON array inside an object, without the closing brackets.
- `type_drift`: the record at index `record` (negative: from the end) gets the text `value` in the
  field `field` (JSON: a dotted camelCase path, added if missing; CSV: a header name, re-quoted as
  needed; a CSV without that column is unchanged). JSON object bodies use their first list of objects.

Files keep every response header (ETag, Content-Disposition, ...) but Content-Length, which is set
to the new length; a streamed body is spooled to a temporary file first (`spool.Spool`), so memory
stays bounded and the answer is complete at the HTTP level. A JSON object body is not a file and a
file is not a page: a rule whose kind does not fit the body leaves it unchanged (its use is spent).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from marketplace_assets.sandbox.outcome import Outcome
from marketplace_assets.sandbox.spool import (
    Scanner,
    Segment,
    Spool,
    count,
    csv_lines,
    json_objects,
    length,
    nth,
)

if TYPE_CHECKING:
    from marketplace_assets.sandbox.faults import FaultRule

GATEWAY_FAULTS = ("echo_headers", "html")
BODY_FAULTS = ("short_page", "short_file", "cut_record", "type_drift")

SIGN_IN_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<form method="post" action="/login"><h1>Sign in to continue</h1>
<label>Username <input name="username"></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button></form>
</body>
</html>
"""
_COMMA, _QUOTE = ord(","), ord('"')


# --- gateway answers --------------------------------------------------------------------------------


def gateway_answer(
    rule: FaultRule, method: str, path: str, headers: Mapping[str, str], extra: list[tuple[str, str]]
) -> Outcome:
    """The answer of an `echo_headers` or `html` rule (the API is not asked)."""
    if rule.kind == "html":
        page = SIGN_IN_PAGE if rule.body is None else rule.body
        return Outcome(
            rule.http_status, [("Content-Type", "text/html; charset=utf-8"), *extra], page.encode()
        )
    echoed = dict(headers)
    listed = ", ".join(f"{name}: {value}" for name, value in echoed.items())
    body = {
        "message": f"{rule.body or 'Bad request (gateway echo).'} Request headers: {listed}",
        "request": {"method": method, "path": path, "headers": echoed},
    }
    return Outcome(
        rule.http_status, [("Content-Type", "application/json"), *extra], json.dumps(body).encode()
    )


# --- body rewrites ----------------------------------------------------------------------------------


def rewrite_body(rule: FaultRule, outcome: Outcome) -> None:
    """Apply a body-rewriting rule to `outcome` in place (a 200 answer only)."""
    if outcome.status != 200 or rule.kind not in BODY_FAULTS:
        return
    streamed = outcome.stream is not None
    spool = Spool.of(outcome.body, outcome.stream)
    try:
        segments = _plan(rule, spool, (outcome.header("Content-Type") or "").lower())
    except BaseException:
        spool.close()
        raise
    if segments is None:
        segments = [(0, spool.size)]
    if streamed:
        outcome.stream = spool.stream(segments)
        outcome.set_header("Content-Length", str(length(segments)))
    else:
        outcome.body = b"".join(spool.pieces(segments))
        spool.close()


def _plan(rule: FaultRule, spool: Spool, content_type: str) -> list[Segment] | None:
    """The segments of the rewritten body, or None to leave it as it is."""
    head = spool.head()
    if head == b"{":
        if rule.kind in ("short_page", "type_drift"):
            return _rewrite_page(rule, spool)
        return None
    if rule.kind == "short_page" or not head:
        return None
    if head == b"[":
        spans, closing = json_objects, b"]"
    elif any(kind in content_type for kind in ("json", "html", "xml")):
        return None  # not a CSV file
    else:
        spans, closing = csv_lines, b""
    if rule.kind == "short_file":
        return _short_file(spool, spans, closing, rule.fraction)
    if rule.kind == "cut_record":
        return _cut_record(spool, head == b"[", int(spool.size * rule.fraction))
    if head == b"[":
        return _drift_json(spool, rule)
    return _drift_csv(spool, rule)


def _index(record: int, total: int) -> int | None:
    index = record if record >= 0 else total + record
    return index if 0 <= index < total else None


def _set_path(record: dict[str, Any], dotted: str, value: str) -> None:
    *parents, name = dotted.split(".")
    for part in parents:
        child = record.get(part)
        if not isinstance(child, dict):
            child = record[part] = {}
        record = child
    record[name] = value


def _rewrite_page(rule: FaultRule, spool: Spool) -> list[Segment] | None:
    """short_page / type_drift on a JSON object: its first top-level list of objects."""
    document = json.loads(spool.data[:])
    records = next(
        (
            value
            for value in document.values()
            if isinstance(value, list) and value and all(isinstance(item, dict) for item in value)
        ),
        None,
    )
    if records is None:
        return None
    if rule.kind == "short_page":
        del records[int(len(records) * rule.fraction) :]
    else:
        index = _index(rule.record, len(records))
        if index is None or rule.field is None:
            return None
        _set_path(records[index], rule.field, rule.value)
    return [json.dumps(document, separators=(",", ":")).encode("utf-8")]


def _short_file(spool: Spool, spans: Scanner, closing: bytes, fraction: float) -> list[Segment]:
    """Keep the first `fraction` of the records: CSV lines after the header, or array objects."""
    data = spool.data
    skip = 1 if not closing else 0  # the CSV header is not a record
    total = count(spans(data)) - skip
    keep = int(total * fraction)
    if keep >= total:
        return [(0, spool.size)]
    if keep == 0 and closing:
        return [(0, data.find(b"[") + 1), closing]
    last = nth(spans(data), keep + skip - 1)
    return [(0, last[1] if last else 0), closing]


def _cut_record(spool: Spool, is_json: bool, target: int) -> list[Segment]:
    """End the file inside the record that holds byte `target` (or the nearest data record)."""
    data = spool.data
    spans = json_objects(data) if is_json else csv_lines(data)
    chosen = None if is_json else next(spans, None)  # the CSV header, cut only when it is all there is
    for span in spans:
        chosen = span
        if span[1] > target:
            break
    if chosen is None:  # an empty array (cut after its opening bracket) or an empty file
        return [(0, data.find(b"[") + 1)] if is_json else [(0, spool.size)]
    start, end = chosen
    record = data[start:end]
    cut = _json_cut(record, target - start) if is_json else _csv_cut(record, target - start)
    return [(0, start + cut)]


def _json_cut(record: bytes, target: int) -> int:
    """A position strictly inside the object (its closing brace dropped), not inside a UTF-8 character."""
    cut = min(max(target, 1), len(record) - 1)
    while cut > 1 and record[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut


def _csv_cut(line: bytes, target: int) -> int:
    """The cut nearest `target` that keeps at least one byte, is outside quotes and before the line's
    last comma (fewer fields than the header) and does not split a UTF-8 character."""
    text = line[:-1] if line.endswith(b"\n") else line
    in_quotes, last_comma, candidates = False, None, []
    for position, byte in enumerate(text):
        if position and not in_quotes and byte & 0xC0 != 0x80:
            candidates.append(position)
        if byte == _QUOTE:
            in_quotes = not in_quotes
        elif byte == _COMMA and not in_quotes:
            last_comma = position
    limit = last_comma if last_comma is not None else len(text) - 1
    allowed = [position for position in candidates if position <= limit]
    if not allowed:  # a one-field line: drop at least its newline
        return max(1, len(text))
    return min(allowed, key=lambda position: abs(position - target))


def _drift_json(spool: Spool, rule: FaultRule) -> list[Segment] | None:
    data = spool.data
    total = count(json_objects(data)) if rule.record < 0 else rule.record + 1
    index = _index(rule.record, total)
    span = None if index is None or rule.field is None else nth(json_objects(data), index)
    if span is None:
        return None
    record = json.loads(data[span[0] : span[1]])
    _set_path(record, rule.field or "", rule.value)
    return [(0, span[0]), json.dumps(record, separators=(",", ":")).encode("utf-8"), (span[1], spool.size)]


def _csv_row(line: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(line.decode("utf-8"), newline="")), [])


def _drift_csv(spool: Spool, rule: FaultRule) -> list[Segment] | None:
    data = spool.data
    header = nth(csv_lines(data), 0)
    columns = _csv_row(data[header[0] : header[1]]) if header else []
    if rule.field not in columns:
        return None
    total = count(csv_lines(data)) - 1 if rule.record < 0 else rule.record + 1
    index = _index(rule.record, total)
    span = None if index is None else nth(csv_lines(data), index + 1)
    if span is None:
        return None
    line = data[span[0] : span[1]]
    row = _csv_row(line)
    column = columns.index(rule.field)
    if column >= len(row):
        return None
    row[column] = rule.value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    text = buffer.getvalue() if line.endswith(b"\n") else buffer.getvalue()[:-1]
    return [(0, span[0]), text.encode("utf-8"), (span[1], spool.size)]
