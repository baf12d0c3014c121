"""One async export's lifecycle as a pure state machine: given what was just seen, what to do next.

Start the export, poll its status, download it once COMPLETED; start a FAILED one again after a backoff,
at most `max_attempts` times; give up once the deadline, counted from the first start, has passed
(restarts included); count an unknown status as running, and say so (docs/api-notes.md, "Async
exports"). A status that answers 404 means the service forgot the export: as good as FAILED.

`advance` makes no request and reads no clock: the driver passes the time and what the service answered,
and performs the actions it gets back. Two drivers do, and they differ in how they wait:
- a run that starts and polls its own export sleeps between steps (`api/exports.py`, `run_export`);
- a sensor takes one step per tick and keeps the job in its cursor (`export_sensors.py`); the run it
  requests only downloads the file (`await_download`).

The data it works on (the job, the observations, the actions, the policy) is in `export_job_model.py`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from enum import StrEnum

from marketplace_assets.api.export_job_model import (
    Action,
    Download,
    Driver,
    ExportHandle,
    ExportJob,
    ExportPolicy,
    ExportStatus,
    GiveUp,
    Log,
    NotReady,
    Observation,
    Phase,
    PollStatus,
    Started,
    StartExport,
    StatusGone,
    StatusRead,
    Tick,
    Wait,
)

# -- the transitions -----------------------------------------------------------------------------------


def advance(
    job: ExportJob, observation: Observation, now: float, policy: ExportPolicy
) -> tuple[ExportJob, list[Action]]:
    """The job's next state and what to do, given what was observed at `now`. No request, no clock."""
    match job.phase, observation:
        case Phase.GAVE_UP, _:
            return job, []
        case Phase.STARTING, Tick():
            if job.not_before is not None and now < job.not_before:
                return job, [Wait(job.not_before - now)]
            return job, [StartExport()]
        case Phase.STARTING, Started(handle=handle, expected=expected):
            first = now if job.first_started is None else job.first_started
            running = replace(
                job, phase=Phase.RUNNING, handle=handle, expected=expected, first_started=first,
                started=now, not_before=None, last_status="",
            )  # fmt: skip
            # A run waits the first delay before its first read: no export is ready the moment it is
            # started, so reading at once would only cost a request. A sensor reads at its next tick.
            first_wait = [_poll_wait(running, now, policy)] if policy.driver is Driver.RUN else []
            return running, [*_say(_Event.STARTED, running, now, policy), *first_wait]
        case Phase.RUNNING, Tick():
            if policy.driver is Driver.RUN and _overdue(job, now, policy):
                return _give_up(_Event.OVERDUE, job, now, policy)
            return job, [PollStatus(_handle(job))]
        case Phase.RUNNING, StatusRead(status=status, raw=raw):
            return _status_read(replace(job, last_status=raw), status, now, policy)
        case Phase.RUNNING, StatusGone():
            return _failed(replace(job, last_status="gone (404)"), now, policy)
        case Phase.READY, Tick():
            return job, [Download(_handle(job))]
        case Phase.READY, NotReady():
            return _not_ready(job, now, policy)
    raise ValueError(f"{type(observation).__name__} does not apply to an export job that is {job.phase}")


def _status_read(
    job: ExportJob, status: ExportStatus, now: float, policy: ExportPolicy
) -> tuple[ExportJob, list[Action]]:
    if status is ExportStatus.COMPLETED:
        # Even past the deadline: the file is there, and loading it beats failing.
        ready = replace(job, phase=Phase.READY)
        return ready, [*_say(_Event.READY, ready, now, policy), Download(_handle(ready))]
    if status is ExportStatus.FAILED:
        return _failed(job, now, policy)
    # QUEUED, IN_PROGRESS, or a value the reference does not list: running until the deadline.
    said = _say(_Event.UNKNOWN, job, now, policy) if status is ExportStatus.UNKNOWN else []
    if policy.driver is Driver.SENSOR and _overdue(job, now, policy):  # (a run judges before it reads)
        gave_up, actions = _give_up(_Event.OVERDUE, job, now, policy)
        return gave_up, [*said, *actions]
    return job, [*said, _poll_wait(job, now, policy)]


def _failed(job: ExportJob, now: float, policy: ExportPolicy) -> tuple[ExportJob, list[Action]]:
    said = _say(_Event.FAILED, job, now, policy)
    failed = replace(job, failed=(*job.failed, _handle(job).export_id))
    if job.attempt >= policy.max_attempts or _overdue(job, now, policy):
        gave_up, actions = _give_up(_Event.FAILED_FOR_GOOD, failed, now, policy)
        return gave_up, [*said, *actions]
    # The backoff grows with each attempt: a service that fails exports is often busy.
    backoff = _wait(policy.restart_backoff_seconds * job.attempt, job, now, policy)
    again = replace(
        failed, phase=Phase.STARTING, attempt=job.attempt + 1, handle=None, expected=None, last_status="",
        not_before=now + backoff.seconds,
    )  # fmt: skip
    return again, [*said, *_say(_Event.RESTARTING, job, now, policy), backoff]


def _not_ready(job: ExportJob, now: float, policy: ExportPolicy) -> tuple[ExportJob, list[Action]]:
    if policy.driver is Driver.RUN:
        # A run that polls goes back to the status: it decides, and the deadline is judged there.
        polling = replace(job, phase=Phase.RUNNING)
        return polling, [*_say(_Event.NOT_READY, job, now, policy), _poll_wait(polling, now, policy)]
    # The run a sensor requested has no status loop: it asks for the file again until the deadline.
    if _overdue(job, now, policy):
        return _give_up(_Event.STILL_PROCESSING, job, now, policy)
    return job, [_poll_wait(job, now, policy)]


def _give_up(
    event: _Event, job: ExportJob, now: float, policy: ExportPolicy
) -> tuple[ExportJob, list[Action]]:
    return replace(job, phase=Phase.GAVE_UP), [GiveUp(_words(event, job, now, policy), _handle(job))]


def _overdue(job: ExportJob, now: float, policy: ExportPolicy) -> bool:
    # A run stops once no time is left: its last wait, cut to the time left, ends right at the deadline.
    # A sensor, and the run it requests, give up once the deadline is exceeded.
    if policy.driver is Driver.RUN:
        return job.waited(now) >= policy.deadline_seconds
    return job.waited(now) > policy.deadline_seconds


def _poll_wait(job: ExportJob, now: float, policy: ExportPolicy) -> Wait:
    since_start = 0.0 if job.started is None else now - job.started
    # A sensor's job that is RUNNING waits for the sensor's next status read; a READY one under the
    # sensor driver is the run the sensor requested, waiting for the file (see `poll_delay`).
    sensor_tick = policy.driver is Driver.SENSOR and job.phase is Phase.RUNNING
    return _wait(policy.poll_delay(since_start, sensor_tick=sensor_tick), job, now, policy)


def _wait(seconds: float, job: ExportJob, now: float, policy: ExportPolicy) -> Wait:
    if policy.driver is Driver.RUN:
        seconds = max(0.0, min(seconds, policy.deadline_seconds - job.waited(now)))
    return Wait(seconds)


def _handle(job: ExportJob) -> ExportHandle:
    if job.handle is None:
        raise ValueError(f"an export job that is {job.phase} has no export")
    return job.handle


# -- what the messages say -----------------------------------------------------------------------------


class _Event(StrEnum):
    STARTED = "started"
    READY = "ready"
    UNKNOWN = "unknown"
    FAILED = "failed"
    RESTARTING = "restarting"
    NOT_READY = "not_ready"
    # Why it gave up (the message of GiveUp):
    OVERDUE = "overdue"
    FAILED_FOR_GOOD = "failed_for_good"
    STILL_PROCESSING = "still_processing"


_WARNINGS = frozenset({_Event.UNKNOWN, _Event.FAILED, _Event.RESTARTING})  # the others are INFO

# Each driver's own words, as its users have read them so far; an event a driver has no words for is not
# logged. A sensor logs on behalf of a report and names it first; the message of a sensor's GiveUp becomes
# the failure of the run it requests.
_WORDS: dict[Driver, dict[_Event, str]] = {
    Driver.RUN: {
        _Event.STARTED: "{label} export {export_id} started (attempt {attempt} of {attempts})",
        _Event.UNKNOWN: "export {export_id}: unknown status {status!r}, treated as still running",
        _Event.FAILED: "export {export_id} FAILED",
        _Event.NOT_READY: "export {export_id} is COMPLETED but still being processed; polling on",
        _Event.OVERDUE: (
            "{label} export {export_id} did not complete within the deadline: waited {waited:.0f}s "
            "(MARKETPLACE_EXPORT_DEADLINE: {deadline:.0f}s), last status {status!r}{earlier}. The "
            "Marketplace may be slow to prepare exports; raise MARKETPLACE_EXPORT_DEADLINE or narrow the "
            "date range."
        ),
        _Event.FAILED_FOR_GOOD: (
            "{label} export did not complete after {failures} attempt(s) in {waited:.0f}s ({failed}). The "
            "Marketplace may be having trouble preparing exports; re-run later or narrow the date range."
        ),
    },
    Driver.SENSOR: {
        _Event.STARTED: "{label}: started export {export_id} for {window}",
        _Event.READY: "{label}: export {export_id} for {window} is ready; requesting its run",
        _Event.UNKNOWN: "{label}: export {export_id} has unknown status {status!r}; treated as running",
        _Event.RESTARTING: (
            "{label}: export {export_id} for {window} FAILED; starting it again "
            "(attempt {next_attempt} of {attempts})"
        ),
        _Event.OVERDUE: (
            "the export for {window} was not finished after waiting {waited:.0f}s "
            "(MARKETPLACE_EXPORT_DEADLINE: {deadline:.0f}s) (last export {export_id}); the sensor gave up. "
            "Backfill these partitions to try again."
        ),
        _Event.FAILED_FOR_GOOD: (
            "the export for {window} FAILED {attempt} times (last export {export_id}); the sensor gave up. "
            "Backfill these partitions to try again."
        ),
        _Event.STILL_PROCESSING: (
            "export {export_id} was still being processed after waiting {waited:.0f}s "
            "(MARKETPLACE_EXPORT_DEADLINE: {deadline:.0f}s)"
        ),
    },
}


def _say(event: _Event, job: ExportJob, now: float, policy: ExportPolicy) -> list[Action]:
    if event not in _WORDS[policy.driver]:
        return []
    level = logging.WARNING if event in _WARNINGS else logging.INFO
    return [Log(level, _words(event, job, now, policy))]


def _words(event: _Event, job: ExportJob, now: float, policy: ExportPolicy) -> str:
    failed = ", ".join(f"{export_id} FAILED" for export_id in job.failed)
    return _WORDS[policy.driver][event].format(
        label=policy.label,
        export_id="" if job.handle is None else job.handle.export_id,
        window=job.window,
        attempt=job.attempt,
        next_attempt=job.attempt + 1,
        attempts=policy.max_attempts,
        status=job.last_status,
        waited=job.waited(now),
        deadline=policy.deadline_seconds,
        failed=failed,
        failures=len(job.failed),
        earlier=f"; earlier attempts: {failed}" if failed else "",
    )
