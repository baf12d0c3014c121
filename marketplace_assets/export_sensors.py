"""One sensor per async export: it starts the due exports and polls them, so no run waits on the
Marketplace while it prepares a file.

Each tick (bounded work, well inside Dagster's 60 s tick limit):
1. If a new day is complete, start one export for the latest day plus a lookback window (late
   corrections: `lastUpdated` is day-granular and revisions arrive late).
2. Poll at most `max_polls` exports in flight. COMPLETED → exactly one run for that range (run_key =
   the export id, range tags, the export and the record count it must hold in run config). FAILED →
   started again after a backoff, at most `max_attempts` times; past the deadline (restarts included,
   MARKETPLACE_EXPORT_DEADLINE) or out of attempts, a run is requested that fails with the reason, so
   the failure is visible on the asset in the UI. Unknown statuses count as running, and are logged.
The state lives in the sensor cursor as small JSON: the last day started and the exports in flight
(`ExportJob.to_dict()`). What each step does is decided by `api/export_job.py`; this module performs it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import dagster as dg

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.errors import MarketplaceApiError
from marketplace_assets.api.export_job import advance
from marketplace_assets.api.export_job_model import (
    Action,
    Download,
    Driver,
    ExportHandle,
    ExportJob,
    ExportPolicy,
    GiveUp,
    Log,
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
from marketplace_assets.api.exports import count_export_records, export_status, start_export
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.dagster_conventions import range_tags
from marketplace_assets.reports.fetch import Window
from marketplace_assets.reports.report import Report
from marketplace_assets.settings import sensor_interval_seconds


@dataclass(frozen=True)
class ExportSensorSettings:
    # Seconds between ticks, so also between two status reads of an export: 30, or
    # MARKETPLACE_SENSOR_INTERVAL when set (read when the settings are made, as the sensor is defined).
    minimum_interval_seconds: int = field(default_factory=lambda: sensor_interval_seconds(30))
    # How long one export may take, restarts included; None: the resource's export_deadline
    # (MARKETPLACE_EXPORT_DEADLINE).
    deadline_seconds: float | None = None
    max_attempts: int = 3
    restart_backoff_seconds: float = 300
    max_polls: int = 25  # per tick: each poll is one HTTP request
    max_in_flight: int = 50
    time_budget_seconds: float = 40  # stop polling for this tick after this long (ticks time out at 60 s)


def evaluate_export_sensor(
    context: dg.SensorEvaluationContext,
    marketplace: MarketplaceResource,
    report: Report,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settings: ExportSensorSettings,
    now: Callable[[], float] = time.time,
) -> dg.SensorResult:
    tick_started = time.monotonic()
    last_started, jobs = _load(context.cursor)
    last_key = partitions_def.get_last_partition_key()
    with marketplace.make_client(logger=context.log) as client:
        # 1. A newly complete day: one export for it and its lookback window.
        if last_key and last_key != last_started and len(jobs) < settings.max_in_flight:
            latest = date.fromisoformat(last_key)
            first = max(
                latest - timedelta(days=report.export_spec.lookback_days - 1),
                date.fromisoformat(partitions_def.get_first_partition_key() or last_key),
            )
            jobs.append(ExportJob(start=first, end=latest))
            last_started = last_key
        # 2. One step for each job while the tick's budget lasts; the others wait for the next tick.
        tick = _Tick(
            context, client, marketplace.developer_id, report, _policy(report, settings, marketplace), now
        )
        still: list[ExportJob] = []
        for job in jobs:
            out_of_time = time.monotonic() - tick_started > settings.time_budget_seconds
            stepped = job if tick.requests >= settings.max_polls or out_of_time else tick.step(job)
            # A READY job has its run requested, one that GAVE_UP its failing run: neither stays.
            if stepped.phase in (Phase.STARTING, Phase.RUNNING):
                still.append(stepped)
    cursor = {"last_started": last_started, "in_flight": [job.to_dict() for job in still]}
    return dg.SensorResult(run_requests=tick.runs, cursor=json.dumps(cursor, separators=(",", ":")))


def _load(cursor: str | None) -> tuple[str | None, list[ExportJob]]:
    """The last day started and the jobs in flight; the cursors of the previous release load too."""
    state = json.loads(cursor) if cursor else {}
    return state.get("last_started"), [ExportJob.from_dict(job) for job in state.get("in_flight", [])]


def _policy(report: Report, settings: ExportSensorSettings, marketplace: MarketplaceResource) -> ExportPolicy:
    deadline = marketplace.export_deadline if settings.deadline_seconds is None else settings.deadline_seconds
    return ExportPolicy(
        max_attempts=settings.max_attempts,
        deadline_seconds=deadline,
        restart_backoff_seconds=settings.restart_backoff_seconds,
        poll_interval_seconds=settings.minimum_interval_seconds,  # a status is read once a tick
        driver=Driver.SENSOR,
        label=report.label,
    )


@dataclass
class _Tick:
    """One tick's work: it performs what `advance` decides, counting its requests, and collects runs."""

    context: dg.SensorEvaluationContext
    client: MarketplaceClient
    developer_id: str
    report: Report
    policy: ExportPolicy
    now: Callable[[], float]
    requests: int = 0  # starts and status polls, at most `max_polls` a tick
    runs: list[dg.RunRequest] = field(default_factory=list)

    def step(self, job: ExportJob) -> ExportJob:
        """Advance the job until it waits for a later tick: one start or one poll, and what follows."""
        observation: Observation | None = Tick()
        while observation is not None:
            job, actions = advance(job, observation, self.now(), self.policy)
            observation = None
            for action in actions:
                answer = self._perform(job, action)
                observation = answer if answer is not None else observation
        return job

    def _perform(self, job: ExportJob, action: Action) -> Observation | None:
        match action:
            case Log(level=level, message=message):
                self.context.log.log(level, message)
            case StartExport():
                self.requests += 1
                export = self.report.export_spec
                params = export.params(_window(job))
                # The list's count for the same filters, taken before the export starts: the run that
                # downloads the file fails if it holds fewer records.
                expected = count_export_records(self.client, self.developer_id, export.kind, params)
                return Started(start_export(self.client, self.developer_id, export.kind, params), expected)
            case PollStatus(handle=handle):
                self.requests += 1
                try:
                    return StatusRead(*export_status(self.client, handle))
                except MarketplaceApiError as exc:
                    if exc.status != 404:
                        raise
                    return StatusGone()
            case Download(handle=handle):
                config: dict[str, Any] = {
                    "export_id": handle.export_id,
                    "status_href": handle.status_href,
                    "download_href": handle.download_href,
                }
                if job.expected is not None:
                    config["expected_records"] = job.expected
                self.runs.append(_run_request(self.report, job, handle, config, ""))
            case GiveUp(message=message, handle=handle):
                self.context.log.error(f"{self.report.label}: {message}")
                self.runs.append(_run_request(self.report, job, handle, {"failure": message}, ":failed"))
            case Wait():
                pass  # a later tick advances the job again
        return None


def _run_request(
    report: Report, job: ExportJob, handle: ExportHandle, config: dict[str, Any], key_suffix: str
) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"{report.label}:{handle.export_id}{key_suffix}",
        asset_selection=[report.key],
        tags=range_tags(str(job.start), str(job.end)),
        run_config={"ops": {"__".join(report.key.path): {"config": config}}},
    )


def _window(job: ExportJob) -> Window:
    if job.start is None or job.end is None:
        raise ValueError("an export sensor's job always has a range")
    return Window(job.start, job.end)


def build_export_sensor(
    report: Report,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settings: ExportSensorSettings | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """`default_status` is the status the sensor ships with (MARKETPLACE_AUTOMATION); the UI can switch it.
    `settings` None: the defaults, made now (not at import) so that MARKETPLACE_SENSOR_INTERVAL applies."""
    settings = settings or ExportSensorSettings()

    @dg.sensor(
        name=f"{report.area}_{report.name}_export_sensor",
        description=(
            f"Starts and polls the async exports of {report.label}: the latest complete day plus "
            f"{report.export_spec.lookback_days - 1} day(s) of lookback, one export per new day; launches "
            "one run per finished export. Backfills from the UI do not need it: their runs start their own "
            "export."
        ),
        minimum_interval_seconds=settings.minimum_interval_seconds,
        target=dg.AssetSelection.assets(report.key),
        default_status=default_status,
    )
    def _export_sensor(
        context: dg.SensorEvaluationContext, marketplace: MarketplaceResource
    ) -> dg.SensorResult:
        return evaluate_export_sensor(context, marketplace, report, partitions_def, settings)

    return _export_sensor
