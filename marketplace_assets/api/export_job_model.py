"""The vocabulary of the export state machine (`export_job.py`): the job and what identifies its export,
what a driver can observe and what it is told to do, and the policy that times it.

Plain frozen data, apart from `ExportPolicy.poll_delay`; `advance` in `export_job.py` decides how a job
moves. Kept apart so that the transitions read on their own; every name here is also importable from
`export_job.py`, where its users import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from enum import StrEnum
from typing import Any


class ExportStatus(StrEnum):
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"  # any other value: treated as still running until a deadline


@dataclass(frozen=True)
class ExportHandle:
    """What identifies a started export; small enough to live in a sensor cursor and in run config."""

    export_id: str
    status_href: str
    download_href: str
    accept: str = "csv"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportHandle:
        return cls(
            str(data["export_id"]),
            str(data["status_href"]),
            str(data["download_href"]),
            str(data.get("accept", "csv")),
        )


class Phase(StrEnum):
    STARTING = "starting"  # no export running: start one once `not_before` has passed
    RUNNING = "running"  # started: read its status
    READY = "ready"  # the status said COMPLETED: download the file
    GAVE_UP = "gave_up"  # failed for good; nothing more to do


class Driver(StrEnum):
    """Who performs the actions. They differ in what waiting costs, so in what they do at the deadline."""

    # A run that starts and polls its own export holds a worker while it sleeps: no wait outlasts the
    # deadline, and once it has passed the run stops without another request.
    RUN = "run"
    # A sensor waits for free between ticks: it reads the status once more before judging the deadline,
    # so an export that completed meanwhile is still loaded. The run it requests only downloads.
    SENSOR = "sensor"


@dataclass(frozen=True)
class ExportJob:
    """One export being seen through, across its restarts. A sensor keeps it in its cursor (`to_dict`).

    Times are seconds on the driver's clock (a sensor's wall clock, a run's monotonic clock)."""

    start: date | None = None  # the exported range; None for an export without one (licenses/current)
    end: date | None = None
    phase: Phase = Phase.STARTING
    attempt: int = 1  # 1 for the first start, one more per restart
    first_started: float | None = None  # the deadline counts from here, restarts included
    started: float | None = None  # when the current attempt was started
    not_before: float | None = None  # a restart waits out its backoff until then
    handle: ExportHandle | None = None
    # The list's count for the export's filters, taken before it started (docs/api-notes.md,
    # "Completeness"); None where the report has no list or a run counts for itself.
    expected: int | None = None
    last_status: str = ""  # the raw status last read in this attempt (a run's deadline message names it)
    failed: tuple[str, ...] = ()  # the ids of the attempts that FAILED (a run's messages list them)

    @property
    def window(self) -> str:
        return f"{self.start}..{self.end}"

    def waited(self, now: float) -> float:
        # Without `first_started` (a cursor entry from before it was recorded), from the current start.
        since = self.started if self.first_started is None else self.first_started
        return 0.0 if since is None else now - since

    def to_dict(self) -> dict[str, Any]:
        data = {
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "phase": self.phase.value,
            "attempt": self.attempt,
            "first_started": self.first_started,
            "started": self.started,
            "not_before": self.not_before,
            "handle": None if self.handle is None else self.handle.to_dict(),
            "expected": self.expected,
            "last_status": self.last_status,
            "failed": list(self.failed),
        }
        # Unset values are left out rather than written as null: the previous release compares
        # `not_before` and `first_started` with numbers when present, and a cursor must survive a
        # rollback. `handle` it always reads, so it stays.
        return {key: value for key, value in data.items() if value is not None or key == "handle"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportJob:
        """Reads `to_dict`, and the cursor entries of the previous release: no `phase` (it follows from
        `handle`), maybe no `first_started`."""
        handle = None if data.get("handle") is None else ExportHandle.from_dict(data["handle"])
        return cls(
            start=None if data.get("start") is None else date.fromisoformat(data["start"]),
            end=None if data.get("end") is None else date.fromisoformat(data["end"]),
            # A job without an export is starting whatever it says: the previous release restarts a
            # job by clearing its handle and keeps every other key.
            phase=Phase.STARTING if handle is None else Phase(data.get("phase", Phase.RUNNING)),
            attempt=int(data.get("attempt", 1)),
            first_started=_seconds(data.get("first_started")),
            started=_seconds(data.get("started")),
            not_before=_seconds(data.get("not_before")),
            handle=handle,
            expected=None if data.get("expected") is None else int(data["expected"]),
            last_status=str(data.get("last_status", "")),
            failed=tuple(str(export_id) for export_id in data.get("failed", ())),
        )


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


# -- what the driver saw --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """Nothing new: time has passed (a sensor's tick, or the end of a run's wait)."""


@dataclass(frozen=True)
class Started:
    """The export was started; `expected` is the list's count for its filters, when one was taken."""

    handle: ExportHandle
    expected: int | None = None


@dataclass(frozen=True)
class StatusRead:
    status: ExportStatus
    raw: str  # the value the service sent (what UNKNOWN stood for)


@dataclass(frozen=True)
class StatusGone:
    """The status answered 404: the service no longer knows the export."""


@dataclass(frozen=True)
class NotReady:
    """The download answered 404 "Export is being processed": the file is not there yet."""


Observation = Tick | Started | StatusRead | StatusGone | NotReady


# -- what the driver is to do ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StartExport:
    """Start the export (a sensor counts the list's records for the same filters first)."""


@dataclass(frozen=True)
class PollStatus:
    handle: ExportHandle


@dataclass(frozen=True)
class Download:
    """Download the file: a run does it, a sensor requests the run that does."""

    handle: ExportHandle


@dataclass(frozen=True)
class Wait:
    """Nothing to do for this long. A sensor moves on: a later tick advances the job again."""

    seconds: float


@dataclass(frozen=True)
class Log:
    level: int  # logging.INFO, logging.WARNING
    message: str


@dataclass(frozen=True)
class GiveUp:
    """The export failed for good: a run raises the message, a sensor requests a run that fails with it."""

    message: str
    handle: ExportHandle  # the last export started


Action = StartExport | PollStatus | Download | Wait | Log | GiveUp


@dataclass(frozen=True)
class ExportPolicy:
    max_attempts: int  # starts of one export, the first included
    deadline_seconds: float  # MARKETPLACE_EXPORT_DEADLINE: from the first start, restarts included
    restart_backoff_seconds: float  # times the attempt that FAILED: the wait before the next start
    # The longest wait between reads of a run (MARKETPLACE_EXPORT_POLL_INTERVAL); a sensor's tick.
    poll_interval_seconds: float
    driver: Driver = Driver.SENSOR
    label: str = ""  # what the messages call the export: a report's label, or a run's export kind

    def poll_delay(self, since_start: float, *, sensor_tick: bool = False) -> float:
        """The wait before the status is read again (or, for a run that only downloads, the file),
        `since_start` seconds into the current attempt: a second at first, then doubling (1, 2, 4, 8, ...)
        up to `poll_interval_seconds`.

        Each wait is the largest power of two not above `since_start + 1`, so a run reads at about 1, 3,
        7, 15, ... s after the start: an export the service prepares in seconds is loaded seconds later,
        and one that takes an hour is still read only once an interval. Computed from the time since the
        start rather than from a count of reads, so the job needs no counter and its cursor form stays.

        `sensor_tick`: the status read of a sensor. It waits the interval, which is its tick: a sensor
        reads each status once a tick whatever the wait says, so a shorter wait would describe reads it
        never makes, and adapting must not make it read more often than it ticks. The run a sensor
        requests (waiting for the file) sleeps like any run, so it adapts."""
        if sensor_tick:
            return self.poll_interval_seconds
        delay = 1.0
        while delay < self.poll_interval_seconds and delay * 2 <= since_start + 1:
            delay *= 2
        return min(delay, self.poll_interval_seconds)
