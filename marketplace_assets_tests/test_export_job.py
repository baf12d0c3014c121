"""The export lifecycle's state machine (`api/export_job.py`) as a table of transitions: a starting job,
what was observed and when → the whole next job and every action. Plus its JSON, old cursors included,
and the run's driver performing the actions against a scripted client."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from marketplace_assets.api.export_job import advance
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
from marketplace_assets.api.exports import ExportFailedError, Lifecycle, run_export
from marketplace_assets.reports.catalog import TRANSACTIONS_EXPORT

INFO, WARNING = logging.INFO, logging.WARNING
E0, E1, E2 = (ExportHandle(f"e{i}", f"/x/e{i}/status", f"/x/e{i}") for i in range(3))

# A sensor: the deadline an hour, backoff 300 s times the attempt.
SENSOR = ExportPolicy(3, 3600, 300, 30, Driver.SENSOR, "sales/transactions")
NEW = ExportJob(start=date(2025, 3, 1), end=date(2025, 3, 3))
RUNNING = replace(NEW, phase=Phase.RUNNING, handle=E1, first_started=1000, started=1000, expected=7)
READY = ExportJob(phase=Phase.READY, handle=E1, first_started=0, started=0)  # as `await_download` builds it
WINDOW = "2025-03-01..2025-03-03"
GAVE_UP = "the sensor gave up. Backfill these partitions to try again."

# A run: the deadline 100 s from the call, backoff 30 s times the attempt, polls 1, 2, 4 s apart and
# then every 5 s.
RUN = ExportPolicy(3, 100, 30, 5, Driver.RUN, "transactions")
RUN_NEW = ExportJob(first_started=0)
RUN_RUNNING = replace(RUN_NEW, phase=Phase.RUNNING, handle=E1, started=0.5)
# A run with the live default interval (30 s) and a 3 h deadline: the doubling has room to show.
LIVE_RUN = ExportPolicy(3, 3 * 3600, 30, 30, Driver.RUN, "transactions")
LIVE_RUNNING = replace(RUN_NEW, phase=Phase.RUNNING, handle=E1, started=0)
SLOW = (
    "The Marketplace may be slow to prepare exports; raise MARKETPLACE_EXPORT_DEADLINE or narrow the date "
    "range."
)
TROUBLE = "The Marketplace may be having trouble preparing exports; re-run later or narrow the date range."


@dataclass(frozen=True)
class Row:
    policy: ExportPolicy
    job: ExportJob
    observation: Observation
    now: float
    changes: dict[str, Any]  # the next job is `job` with exactly these fields changed
    actions: list[Action] = field(default_factory=list)


def status(value: str) -> StatusRead:
    try:
        return StatusRead(ExportStatus(value), value)
    except ValueError:
        return StatusRead(ExportStatus.UNKNOWN, value)


def live_read(at: float, wait: float) -> Row:
    """A run with the live interval reads IN_PROGRESS `at` seconds after the start, and waits `wait`."""
    read = status("IN_PROGRESS")
    return Row(LIVE_RUN, LIVE_RUNNING, read, at, {"last_status": "IN_PROGRESS"}, [Wait(wait)])


def restarting(attempt: int) -> Log:
    return Log(
        WARNING,
        f"sales/transactions: export e1 for {WINDOW} FAILED; starting it again (attempt {attempt} of 3)",
    )


def restarted(attempt: int, not_before: float, failed: tuple[str, ...]) -> dict[str, Any]:
    return {
        "phase": Phase.STARTING, "attempt": attempt, "handle": None, "expected": None, "last_status": "",
        "not_before": not_before, "failed": failed,
    }  # fmt: skip


TRANSITIONS = {
    # -- start
    "a new job starts its export": Row(SENSOR, NEW, Tick(), 1000, {}, [StartExport()]),
    "started: the export, its count, and the start the deadline counts from": Row(
        SENSOR, NEW, Started(E1, 7), 1000,
        {"phase": Phase.RUNNING, "handle": E1, "expected": 7, "first_started": 1000, "started": 1000},
        [Log(INFO, f"sales/transactions: started export e1 for {WINDOW}")],
    ),
    "a restart keeps the first start and drops its backoff": Row(
        SENSOR, replace(NEW, attempt=2, first_started=500, started=500, not_before=990, failed=("e0",)),
        Started(E2, 8), 1000,
        {"phase": Phase.RUNNING, "handle": E2, "expected": 8, "started": 1000, "not_before": None},
        [Log(INFO, f"sales/transactions: started export e2 for {WINDOW}")],
    ),
    "run: started, attempt 1 of 3; the first read a second later": Row(
        RUN, RUN_NEW, Started(E1), 0.5, {"phase": Phase.RUNNING, "handle": E1, "started": 0.5},
        [Log(INFO, "transactions export e1 started (attempt 1 of 3)"), Wait(1)],
    ),
    "run, an interval under a second: even the first read waits no longer": Row(
        replace(RUN, poll_interval_seconds=0.25), RUN_NEW, Started(E1), 0.5,
        {"phase": Phase.RUNNING, "handle": E1, "started": 0.5},
        [Log(INFO, "transactions export e1 started (attempt 1 of 3)"), Wait(0.25)],
    ),
    # -- not_before: the restart backoff
    "not_before in the future: wait for it": Row(
        SENSOR, replace(NEW, attempt=2, not_before=1300), Tick(), 1000, {}, [Wait(300)]
    ),
    "not_before passed: start again": Row(
        SENSOR, replace(NEW, attempt=2, not_before=1300), Tick(), 1300, {}, [StartExport()]
    ),
    # -- queued, in progress
    "running: a tick reads the status": Row(SENSOR, RUNNING, Tick(), 1030, {}, [PollStatus(E1)]),
    "queued: poll again": Row(SENSOR, RUNNING, status("QUEUED"), 1030, {"last_status": "QUEUED"}, [Wait(30)]),
    "run, in progress: wait the interval": Row(
        RUN, RUN_RUNNING, status("IN_PROGRESS"), 10, {"last_status": "IN_PROGRESS"}, [Wait(5)]
    ),
    "run, in progress: the last wait ends at the deadline": Row(
        RUN, RUN_RUNNING, status("IN_PROGRESS"), 98, {"last_status": "IN_PROGRESS"}, [Wait(2)]
    ),
    # -- a run's waits double from a second up to the interval: reads at 1, 3, 7, 15, 31, 61, ... s
    "run, 1 s in: wait 2": live_read(1, 2),
    "run, 3 s in: wait 4": live_read(3, 4),
    "run, 5 s in (a slow read): still 4, the doubling follows the time since the start": live_read(5, 4),
    "run, 7 s in: wait 8": live_read(7, 8),
    "run, 15 s in: wait 16": live_read(15, 16),
    "run, 31 s in: the interval caps the doubling": live_read(31, 30),
    "run, an hour in: still the interval": live_read(3600, 30),
    "run, a restarted export doubles again from its own start": Row(
        LIVE_RUN, replace(LIVE_RUNNING, attempt=2, started=40, failed=("e0",)), status("QUEUED"), 41,
        {"last_status": "QUEUED"}, [Wait(2)],
    ),
    "a sensor does not adapt: it reads once a tick, however soon after the start": Row(
        SENSOR, RUNNING, status("QUEUED"), 1001, {"last_status": "QUEUED"}, [Wait(30)]
    ),
    # -- completed
    "completed: request the run": Row(
        SENSOR, RUNNING, status("COMPLETED"), 1030, {"phase": Phase.READY, "last_status": "COMPLETED"},
        [Log(INFO, f"sales/transactions: export e1 for {WINDOW} is ready; requesting its run"), Download(E1)],
    ),
    "completed past the deadline: loaded all the same": Row(
        SENSOR, RUNNING, status("COMPLETED"), 9000, {"phase": Phase.READY, "last_status": "COMPLETED"},
        [Log(INFO, f"sales/transactions: export e1 for {WINDOW} is ready; requesting its run"), Download(E1)],
    ),
    "run, completed: download": Row(
        RUN, RUN_RUNNING, status("COMPLETED"), 10, {"phase": Phase.READY, "last_status": "COMPLETED"},
        [Download(E1)],
    ),
    "run, still being processed: back to the status": Row(
        RUN, replace(RUN_RUNNING, phase=Phase.READY, last_status="COMPLETED"), NotReady(), 10,
        {"phase": Phase.RUNNING},
        [Log(INFO, "export e1 is COMPLETED but still being processed; polling on"), Wait(5)],
    ),
    "the sensor's run: a ready export is downloaded": Row(SENSOR, READY, Tick(), 0, {}, [Download(E1)]),
    "the sensor's run, still being processed: download again": Row(
        SENSOR, READY, NotReady(), 10, {}, [Wait(8)]
    ),
    "the sensor's run sleeps like a run: its waits double too": Row(
        SENSOR, READY, NotReady(), 1, {}, [Wait(2)]
    ),
    "the sensor's run, still being processed long after: the interval": Row(
        SENSOR, READY, NotReady(), 100, {}, [Wait(30)]
    ),
    "the sensor's run, still being processed past the deadline: give up": Row(
        SENSOR, READY, NotReady(), 3601, {"phase": Phase.GAVE_UP},
        [GiveUp("export e1 was still being processed after waiting 3601s "
                "(MARKETPLACE_EXPORT_DEADLINE: 3600s)", E1)],
    ),
    # -- FAILED, 404
    "FAILED with attempts left: start again after the backoff": Row(
        SENSOR, RUNNING, status("FAILED"), 1030, restarted(2, 1330, ("e1",)),
        [restarting(2), Wait(300)],
    ),
    "FAILED again: the backoff grows with the attempt": Row(
        SENSOR, replace(RUNNING, attempt=2, failed=("e0",)), status("FAILED"), 1030,
        restarted(3, 1630, ("e0", "e1")),
        [restarting(3), Wait(600)],
    ),
    "404: the service forgot the export, start again": Row(
        SENSOR, RUNNING, StatusGone(), 1030, restarted(2, 1330, ("e1",)),
        [restarting(2), Wait(300)],
    ),
    "run, FAILED: the backoff is cut to the time left": Row(
        RUN, RUN_RUNNING, status("FAILED"), 90, restarted(2, 100, ("e1",)),
        [Log(WARNING, "export e1 FAILED"), Wait(10)],
    ),
    "FAILED with no attempts left: give up": Row(
        SENSOR, replace(RUNNING, attempt=3, failed=("e8", "e9")), status("FAILED"), 1030,
        {"phase": Phase.GAVE_UP, "last_status": "FAILED", "failed": ("e8", "e9", "e1")},
        [GiveUp(f"the export for {WINDOW} FAILED 3 times (last export e1); {GAVE_UP}", E1)],
    ),
    "run, FAILED with no attempts left: give up naming every attempt": Row(
        RUN, replace(RUN_RUNNING, attempt=3, failed=("e8", "e9")), status("FAILED"), 50,
        {"phase": Phase.GAVE_UP, "last_status": "FAILED", "failed": ("e8", "e9", "e1")},
        [Log(WARNING, "export e1 FAILED"),
         GiveUp(f"transactions export did not complete after 3 attempt(s) in 50s "
                f"(e8 FAILED, e9 FAILED, e1 FAILED). {TROUBLE}", E1)],
    ),
    # -- unknown status
    "unknown status: logged, treated as running": Row(
        SENSOR, RUNNING, status("PAUSED"), 1030, {"last_status": "PAUSED"},
        [Log(WARNING, "sales/transactions: export e1 has unknown status 'PAUSED'; treated as running"),
         Wait(30)],
    ),
    "run, unknown status: logged, treated as running": Row(
        RUN, RUN_RUNNING, status("PAUSED"), 10, {"last_status": "PAUSED"},
        [Log(WARNING, "export e1: unknown status 'PAUSED', treated as still running"), Wait(5)],
    ),
    # -- the deadline, restarts included
    "running past the deadline: give up": Row(
        SENSOR, RUNNING, status("QUEUED"), 4601, {"phase": Phase.GAVE_UP, "last_status": "QUEUED"},
        [GiveUp(f"the export for {WINDOW} was not finished after waiting 3601s (MARKETPLACE_EXPORT_DEADLINE: "
                f"3600s) (last export e1); {GAVE_UP}", E1)],
    ),
    "the deadline counts from the first start, not the restart": Row(
        SENSOR, replace(RUNNING, attempt=2, started=4000, failed=("e0",)), status("IN_PROGRESS"), 4700,
        {"phase": Phase.GAVE_UP, "last_status": "IN_PROGRESS"},
        [GiveUp(f"the export for {WINDOW} was not finished after waiting 3700s (MARKETPLACE_EXPORT_DEADLINE: "
                f"3600s) (last export e1); {GAVE_UP}", E1)],
    ),
    "FAILED past the deadline: no restart though attempts are left": Row(
        SENSOR, replace(RUNNING, attempt=2, started=4000, failed=("e0",)), status("FAILED"), 4700,
        {"phase": Phase.GAVE_UP, "last_status": "FAILED", "failed": ("e0", "e1")},
        [GiveUp(f"the export for {WINDOW} FAILED 2 times (last export e1); {GAVE_UP}", E1)],
    ),
    "running right at the deadline: not past it yet": Row(
        SENSOR, RUNNING, status("QUEUED"), 4600, {"last_status": "QUEUED"}, [Wait(30)]
    ),
    "a sensor reads the status once more past the deadline": Row(
        SENSOR, RUNNING, Tick(), 9000, {}, [PollStatus(E1)]
    ),
    "run, no time left: stop without another request": Row(
        RUN, replace(RUN_RUNNING, attempt=2, last_status="QUEUED", failed=("e0",)), Tick(), 100,
        {"phase": Phase.GAVE_UP},
        [GiveUp("transactions export e1 did not complete within the deadline: waited 100s "
                "(MARKETPLACE_EXPORT_DEADLINE: 100s), last status 'QUEUED'; earlier attempts: e0 FAILED. "
                f"{SLOW}", E1)],
    ),
    "run, FAILED with no time left: give up though attempts are left": Row(
        RUN, RUN_RUNNING, status("FAILED"), 100,
        {"phase": Phase.GAVE_UP, "last_status": "FAILED", "failed": ("e1",)},
        [Log(WARNING, "export e1 FAILED"),
         GiveUp("transactions export did not complete after 1 attempt(s) in 100s (e1 FAILED). "
                f"{TROUBLE}", E1)],
    ),
    "an old cursor's job without a first start counts from its start": Row(
        SENSOR, replace(RUNNING, first_started=None, started=2000), status("QUEUED"), 5601,
        {"phase": Phase.GAVE_UP, "last_status": "QUEUED"},
        [GiveUp(f"the export for {WINDOW} was not finished after waiting 3601s (MARKETPLACE_EXPORT_DEADLINE: "
                f"3600s) (last export e1); {GAVE_UP}", E1)],
    ),
    "gave up: nothing more to do": Row(SENSOR, replace(RUNNING, phase=Phase.GAVE_UP), Tick(), 9000, {}, []),
}  # fmt: skip


@pytest.mark.parametrize("row", TRANSITIONS.values(), ids=TRANSITIONS.keys())
def test_transition(row: Row) -> None:
    job, actions = advance(row.job, row.observation, row.now, row.policy)
    assert actions == row.actions
    assert job == replace(row.job, **row.changes)


@pytest.mark.parametrize(
    ("job", "observation"),
    [(NEW, status("QUEUED")), (NEW, NotReady()), (RUNNING, Started(E2)), (RUNNING, NotReady()),
     (READY, StatusGone())],
)  # fmt: skip
def test_an_observation_that_does_not_fit_the_phase_is_refused(
    job: ExportJob, observation: Observation
) -> None:
    with pytest.raises(ValueError, match="does not apply"):
        advance(job, observation, 0, SENSOR)


JOBS = {
    "new": NEW,
    "running": RUNNING,
    "waiting to restart": replace(NEW, attempt=2, first_started=1000.5, started=1000.5, not_before=1300.25,
                                  failed=("e1",)),
    "ready": replace(RUNNING, phase=Phase.READY, last_status="COMPLETED"),
    "gave up": replace(RUNNING, phase=Phase.GAVE_UP, attempt=3, failed=("e8", "e9", "e1"),
                       last_status="FAILED"),
    "a run's, without a range": RUN_RUNNING,
}  # fmt: skip


@pytest.mark.parametrize("job", JOBS.values(), ids=JOBS.keys())
def test_a_job_round_trips_through_json(job: ExportJob) -> None:
    assert ExportJob.from_dict(json.loads(json.dumps(job.to_dict()))) == job


def test_unset_values_are_left_out_for_the_previous_release() -> None:
    # The previous release reads `not_before` and `first_started` as numbers when present, and
    # `handle` always: a cursor written now must survive a rollback.
    assert NEW.to_dict() == {
        "start": "2025-03-01", "end": "2025-03-03", "phase": "starting", "attempt": 1, "handle": None,
        "last_status": "", "failed": [],
    }  # fmt: skip


HANDLE = {"export_id": "e1", "status_href": "/x/e1/status", "download_href": "/x/e1", "accept": "csv"}
LEGACY = {
    "a new day's job": (
        {"start": "2025-03-01", "end": "2025-03-03", "attempt": 1, "started": 900.0, "handle": None},
        replace(NEW, started=900),
    ),
    "a running export": (
        {"start": "2025-03-01", "end": "2025-03-03", "attempt": 1, "started": 1000.0, "handle": HANDLE,
         "expected": 7, "first_started": 1000.0},
        RUNNING,
    ),
    "a running export from before first_started": (
        {"start": "2025-03-01", "end": "2025-03-03", "attempt": 1, "started": 1000.0, "handle": HANDLE},
        replace(RUNNING, expected=None, first_started=None),
    ),
    "a FAILED export waiting to restart (its handle cleared, its other keys kept)": (
        {"start": "2025-03-01", "end": "2025-03-03", "attempt": 2, "started": 1000.0, "handle": None,
         "expected": 7, "first_started": 1000.0, "not_before": 1330},
        replace(NEW, attempt=2, started=1000, first_started=1000, expected=7, not_before=1330),
    ),
}  # fmt: skip


@pytest.mark.parametrize(("entry", "job"), LEGACY.values(), ids=LEGACY.keys())
def test_a_cursor_entry_of_the_previous_release_loads(entry: dict[str, Any], job: ExportJob) -> None:
    assert ExportJob.from_dict(json.loads(json.dumps(entry))) == job


# -- the run's driver ----------------------------------------------------------------------------------


class ScriptedClient:
    """Answers each export's status polls from a script, and records every request."""

    def __init__(self, statuses: list[list[str]]) -> None:
        self.statuses, self.calls, self.started = statuses, [], 0

    def request_json(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        self.started += 1
        self.calls.append(f"start e{self.started}")
        return {"export": {"id": f"e{self.started}"}}

    def get_json(self, href: str) -> dict[str, Any]:
        export_id = href.split("/")[-2]
        self.calls.append(f"status {export_id}")
        script = self.statuses[int(export_id[1:]) - 1]
        return {"export": {"status": script.pop(0) if len(script) > 1 else script[0]}}

    def download(self, href: str, params: dict[str, Any], suffix: str) -> Path:
        self.calls.append(f"download {href.rsplit('/', 1)[-1]}")
        return Path("file.csv")


@pytest.mark.timeout(30)  # a driver that loops on its waits fails here, not after ten minutes
def test_a_run_performs_the_actions_restarts_and_waits() -> None:
    client, clock, slept = ScriptedClient([["FAILED"], ["QUEUED", "COMPLETED"]]), [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    handle, path = run_export(
        client, "dev", TRANSACTIONS_EXPORT, {}, lifecycle=Lifecycle(poll_interval=5, restart_backoff=30),
        log=lambda message: None, sleep=sleep, clock=lambda: clock[0],
    )  # fmt: skip
    assert (handle.export_id, path) == ("e2", Path("file.csv"))
    assert client.calls == ["start e1", "status e1", "start e2", "status e2", "status e2", "download e2"]
    # A second before each start's first read, the backoff of attempt 1 between them, then a wait that
    # doubled (the read a second after the start answered QUEUED).
    assert slept == [1, 30, 1, 2]


@pytest.mark.timeout(30)  # a driver that loops on its waits fails here, not after ten minutes
def test_a_run_gives_up_at_the_deadline_without_another_request() -> None:
    client, clock, slept = ScriptedClient([["IN_PROGRESS"]]), [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    with pytest.raises(ExportFailedError, match=r"e1 did not complete within the deadline: waited 12s"):
        run_export(
            client, "dev", TRANSACTIONS_EXPORT, {}, lifecycle=Lifecycle(poll_interval=5, deadline=12),
            log=lambda message: None, sleep=sleep, clock=lambda: clock[0],
        )  # fmt: skip
    # Polls at 1, 3 and 7 s; the last wait (the 5 s interval, not the 8 s the doubling would reach) ends
    # at the deadline, and then nothing more is asked.
    assert client.calls == ["start e1", "status e1", "status e1", "status e1"]
    assert slept == [1, 2, 4, 5]


@pytest.mark.timeout(30)  # a driver that loops on its waits fails here, not after ten minutes
def test_a_run_reads_a_second_after_the_start_then_doubles_up_to_the_interval() -> None:
    client, clock, slept = ScriptedClient([[*["QUEUED"] * 2, *["IN_PROGRESS"] * 3, "COMPLETED"]]), [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    handle, _ = run_export(
        client, "dev", TRANSACTIONS_EXPORT, {}, lifecycle=Lifecycle(poll_interval=30),
        log=lambda message: None, sleep=sleep, clock=lambda: clock[0],
    )  # fmt: skip
    assert handle.export_id == "e1"
    assert client.calls == ["start e1", *["status e1"] * 6, "download e1"]
    assert slept == [1, 2, 4, 8, 16, 30]  # reads at 1, 3, 7, 15, 31 and 61 s


def test_the_default_interval_is_the_live_default() -> None:
    # A run not given an interval (a bench, a script) waits at most as long as live mode does.
    assert Lifecycle().poll_interval == 30
