"""Export files (CSV / JSON, streamed) and the async export lifecycle of the simulated Marketplace.

Lifecycle. A start call records a job in `world.state["exports"]` with the filters, the format and
the clock at that moment (the file is what the data was then). Each status poll advances the job:
QUEUED, IN_PROGRESS..., then COMPLETED on poll `polls_to_complete` (default 3). Downloading before
COMPLETED answers 404 "Export is being processed". Per sandbox, `configure_exports` (or
`POST /_sandbox/exports`) sets the number of polls, fails the next N exports (FAILED where they would
complete), makes new exports answer an unknown status (e.g. "PAUSED") for their first M polls, or
makes new exports never complete, or picks the record shape of new marketing-attribution exports
(`attribution_shape`: "daily", the default, or "evaluation"; see `export_reports`). Marketing-attribution
starts with identical parameters (and shape) return the same export (id and progress).

Files. CSV headers are the dotted camelCase paths of the JSON fields (`purchaseDetails.saleDate`,
`contactDetails.technicalContact.email`); lists are written as JSON text, nulls as empty cells. Rows
are encoded lazily into ~64 KiB chunks so a million-row file is never held in memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from marketplace_assets.sandbox.data import World, stable_uuid
from marketplace_assets.sandbox.spool import Spool

CHUNK = 64 * 1024
_SETTINGS = (
    "polls_to_complete", "unknown_status", "unknown_polls", "never_complete", "fail_next",
    "attribution_shape", "keep_files",
)  # fmt: skip
ATTRIBUTION_SHAPES = ("daily", "evaluation")


# --- encoders ------------------------------------------------------------------------------------


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted keys; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def cell(value: Any) -> str:
    """How a CSV cell writes a JSON value: "" for null, JSON text for lists, str() otherwise."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def row_getter(columns: Sequence[str]) -> Callable[[dict[str, Any]], list[Any]]:
    """A function giving a nested row's values for dotted `columns` (missing: None), equivalent to
    `[flatten(row).get(c) for c in columns]` but compiled once into one expression: exports of a
    million rows spend most of their time here otherwise."""
    exprs = []
    for column in columns:
        expr = "r"
        for depth, key in enumerate(column.split(".")):
            expr = f"{expr}.get({key!r})" if depth == 0 else f"({expr} or _EMPTY).get({key!r})"
        exprs.append(expr)
    return eval(f"lambda r: [{', '.join(exprs)}]", {"_EMPTY": {}})  # built from our own constants


_LIST_CELLS: dict[tuple[Any, ...], str] = {}


def _list_cell(value: list[Any]) -> str:
    """`cell` of a list, remembered for the few lists of plain strings that recur on every row."""
    key = tuple(value)
    try:
        text = _LIST_CELLS.get(key)
    except TypeError:  # not hashable: a list of objects (discounts)
        return cell(value)
    if text is None:
        text = cell(value)
        if len(_LIST_CELLS) < 1024:
            _LIST_CELLS[key] = text
    return text


def csv_chunks(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> Iterator[bytes]:
    """A CSV file (header, then one line per row) in chunks of about CHUNK bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    values_of = row_getter(columns)
    for row in rows:
        # csv writes None as "" and numbers with repr(), as `cell` does; only lists need JSON text.
        writer.writerow([v if v.__class__ is not list else _list_cell(v) for v in values_of(row)])
        if buffer.tell() >= CHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def json_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """A JSON array of the rows in chunks of about CHUNK bytes."""
    parts, size, first = ["["], 1, True
    for row in rows:
        text = ("" if first else ",") + json.dumps(row, separators=(",", ":"))
        first = False
        parts.append(text)
        size += len(text)
        if size >= CHUNK:
            yield "".join(parts).encode("utf-8")
            parts, size = [], 0
    parts.append("]")
    yield "".join(parts).encode("utf-8")


def columns_of(template: dict[str, Any]) -> tuple[str, ...]:
    """The CSV header of rows shaped like `template` (values: None, or a dict for a nested object)."""
    return tuple(flatten(template))


# --- lifecycle -----------------------------------------------------------------------------------


@dataclass
class ExportConfig:
    polls_to_complete: int = 3
    unknown_status: str = "PAUSED"
    unknown_polls: int = 0
    never_complete: bool = False
    fail_next: int = 0
    attribution_shape: str = "daily"
    keep_files: bool = False


@dataclass
class ExportJob:
    id: str
    kind: str  # licenses | transactions | attribution
    query: tuple[tuple[str, str], ...]  # the start call's filters (accept excluded)
    accept: str  # csv | json
    as_of: date
    polls_to_complete: int
    unknown_status: str
    unknown_polls: int
    never_complete: bool
    fails: bool
    polls: int = 0
    attribution_shape: str = "daily"  # the record shape of a marketing-attribution file

    @property
    def status(self) -> str:
        """The status after `polls` status calls (see the module docstring)."""
        if self.polls and self.polls <= self.unknown_polls:
            return self.unknown_status
        n = max(0, self.polls - self.unknown_polls)
        if not self.never_complete and n >= self.polls_to_complete:
            return "FAILED" if self.fails else "COMPLETED"
        return "QUEUED" if n <= 1 else "IN_PROGRESS"

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        return {**data, "as_of": self.as_of.isoformat(), "query": list(self.query), "status": self.status}


@dataclass
class _ExportState:
    config: ExportConfig = field(default_factory=ExportConfig)
    jobs: dict[str, ExportJob] = field(default_factory=dict)
    started: int = 0
    # keep_files: each file generated once per (kind, filters, format, day, shape), on disk.
    kept: dict[tuple[Any, ...], Spool] = field(default_factory=dict)


def _state(world: World) -> _ExportState:
    with world.lock:
        return world.state.setdefault("exports", _ExportState())


def _world(target: Any) -> World:
    return target if isinstance(target, World) else target.world


def configure_exports(
    target: Any,
    *,
    polls_to_complete: int | None = None,
    fail_next: int | None = None,
    unknown_status: str | None = None,
    unknown_polls: int | None = None,
    never_complete: bool | None = None,
    attribution_shape: str | None = None,
    keep_files: bool | None = None,
) -> dict[str, Any]:
    """Change how the async exports of a Sandbox (or World) behave; unnamed settings stay as they are.

    polls_to_complete: the status call that first answers COMPLETED (0: complete at once).
    fail_next: the next N started exports answer FAILED where they would complete.
    unknown_status / unknown_polls: exports started from now answer this status for their first M polls.
    never_complete: exports started from now stay IN_PROGRESS forever.
    attribution_shape: the record shape of marketing-attribution exports started from now: "daily"
        (one flat row per day, app and channel) or "evaluation" (nested, per evaluation start day).
    keep_files: generate each export file once and serve every later export with the same filters,
        format and clock day from disk (a benchmark then measures its client, not the generator).
    Returns the settings now in force.
    """
    values = {
        "polls_to_complete": polls_to_complete,
        "fail_next": fail_next,
        "unknown_status": unknown_status,
        "unknown_polls": unknown_polls,
        "never_complete": never_complete,
        "attribution_shape": attribution_shape,
        "keep_files": keep_files,
    }
    for name in ("polls_to_complete", "fail_next", "unknown_polls"):
        value = values[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if unknown_status is not None and not (isinstance(unknown_status, str) and unknown_status):
        raise ValueError(f"unknown_status must be a non-empty string, got {unknown_status!r}")
    for name in ("never_complete", "keep_files"):
        if values[name] is not None and not isinstance(values[name], bool):
            raise ValueError(f"{name} must be true or false, got {values[name]!r}")
    if attribution_shape is not None and attribution_shape not in ATTRIBUTION_SHAPES:
        raise ValueError(f"attribution_shape must be one of {ATTRIBUTION_SHAPES}, got {attribution_shape!r}")
    world = _world(target)
    state = _state(world)
    with world.lock:
        for name, value in values.items():
            if value is not None:
                setattr(state.config, name, value)
        return asdict(state.config)


def configure_exports_from_json(target: Any, data: Any) -> dict[str, Any]:
    """`configure_exports` with the fields of a JSON object (unknown keys are a ValueError)."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of export settings")
    unknown = set(data) - set(_SETTINGS) - {"reset"}
    if unknown:
        raise ValueError(f"unknown export settings: {sorted(unknown)}; known: {sorted(_SETTINGS)}")
    if data.get("reset"):
        reset_exports(target)
    return configure_exports(target, **{k: v for k, v in data.items() if k != "reset"})


def reset_exports(target: Any) -> None:
    """Forget every export job and go back to the default settings."""
    world = _world(target)
    with world.lock:
        previous = world.state.get("exports")
        world.state["exports"] = _ExportState()
    for spool in previous.kept.values() if previous is not None else ():
        spool.close()


def export_body(world: World, job: ExportJob, generate: Callable[[], Iterable[bytes]]) -> Iterable[bytes]:
    """The bytes of `job`'s file: `generate()`d as it is sent, or with `keep_files` generated once to
    disk (`Spool`) and sent from there to this and every later export of the same file."""
    state = _state(world)
    if not state.config.keep_files:
        return generate()
    key = (job.kind, tuple(sorted(job.query)), job.accept, job.as_of, job.attribution_shape)
    with world.lock:
        spool = state.kept.get(key)
    if spool is not None:
        return spool.pieces([(0, spool.size)])

    def keep(spooled: Spool) -> None:
        with world.lock:
            if state.kept.setdefault(key, spooled) is not spooled:
                spooled.close()  # another download of the same file finished first

    # Sent as it is generated (a large file would otherwise keep the client waiting for its first
    # byte), kept once it has all been sent.
    return Spool.tee(generate(), keep)


def export_jobs(target: Any) -> list[dict[str, Any]]:
    world = _world(target)
    with world.lock:
        return [job.summary() for job in _state(world).jobs.values()]


def start_export(
    world: World, kind: str, query: Sequence[tuple[str, str]], accept: str, as_of: date, dedupe: bool
) -> ExportJob:
    """Record a new export job (or, with dedupe, return the job started with identical parameters)."""
    state = _state(world)
    canonical = tuple(sorted(query))
    with world.lock:
        shape = state.config.attribution_shape if kind == "attribution" else "daily"
        if dedupe:
            # The daily shape keeps the ids it always had; another shape is another export.
            key = canonical if shape == "daily" else (*canonical, ("shape", shape))
            export_id = stable_uuid(world.seed, "export", kind, accept, key)
            if export_id in state.jobs:
                return state.jobs[export_id]
        else:
            state.started += 1
            export_id = stable_uuid(world.seed, "export", kind, state.started)
        config = state.config
        fails = config.fail_next > 0
        config.fail_next = max(0, config.fail_next - 1)
        job = ExportJob(
            export_id, kind, tuple(query), accept, as_of, config.polls_to_complete,
            config.unknown_status, config.unknown_polls, config.never_complete, fails,
            attribution_shape=shape,
        )  # fmt: skip
        state.jobs[export_id] = job
        return job


def find_job(world: World, export_id: str, kind: str | None) -> ExportJob | None:
    """The job with this id (of this kind, when given)."""
    with world.lock:
        job = _state(world).jobs.get(export_id)
    return job if job is not None and (kind is None or job.kind == kind) else None


def poll(world: World, job: ExportJob) -> str:
    """One status call: advance the job and answer its status."""
    with world.lock:
        job.polls += 1
        return job.status
