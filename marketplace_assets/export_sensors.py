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
The state lives in the sensor cursor as small JSON: the last day started and the exports in flight.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import dagster as dg

from marketplace_assets.api.errors import MarketplaceApiError
from marketplace_assets.api.exports import (
    ExportHandle,
    ExportStatus,
    count_export_records,
    export_status,
    start_export,
)
from marketplace_assets.api.resource import MarketplaceResource
from marketplace_assets.reports.report import ExportSpec, Report
from marketplace_assets.dagster_conventions import range_tags
from marketplace_assets.reports.fetch import Window


@dataclass(frozen=True)
class ExportSensorSettings:
    minimum_interval_seconds: int = 30
    # How long one export may take, restarts included; None: the resource's export_deadline
    # (MARKETPLACE_EXPORT_DEADLINE).
    deadline_seconds: float | None = None
    max_attempts: int = 3
    restart_backoff_seconds: float = 300
    max_polls: int = 25  # per tick: each poll is one HTTP request
    max_in_flight: int = 50
    time_budget_seconds: float = 40  # stop polling for this tick after this long (ticks time out at 60 s)


def _load(cursor: str | None) -> dict[str, Any]:
    state = json.loads(cursor) if cursor else {}
    return {"last_started": state.get("last_started"), "in_flight": list(state.get("in_flight", []))}


def _run_request(
    report: Report, job: dict[str, Any], config: dict[str, str], key_suffix: str
) -> dg.RunRequest:
    op_name = "__".join(report.key.path)
    return dg.RunRequest(
        run_key=f"{report.label}:{job['handle']['export_id']}{key_suffix}",
        asset_selection=[report.key],
        tags={
            **range_tags(job["start"], job["end"]),
        },
        run_config={"ops": {op_name: {"config": config}}},
    )


def evaluate_export_sensor(
    context: dg.SensorEvaluationContext,
    marketplace: MarketplaceResource,
    report: Report,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settings: ExportSensorSettings,
    now: Callable[[], float] = time.time,
) -> dg.SensorResult:
    tick_started = time.monotonic()
    deadline = (
        settings.deadline_seconds if settings.deadline_seconds is not None else marketplace.export_deadline
    )
    state = _load(context.cursor)
    requests: list[dg.RunRequest] = []
    last_key = partitions_def.get_last_partition_key()
    with marketplace.make_client(logger=context.log) as client:
        # 1. A newly complete day: one export for it and its lookback window.
        if (
            last_key
            and last_key != state["last_started"]
            and len(state["in_flight"]) < settings.max_in_flight
        ):
            latest = date.fromisoformat(last_key)
            first = max(
                latest - timedelta(days=_export(report).lookback_days - 1),
                date.fromisoformat(partitions_def.get_first_partition_key() or last_key),
            )
            job = {
                "start": first.isoformat(),
                "end": latest.isoformat(),
                "attempt": 1,
                "started": now(),
                "handle": None,
            }
            state["in_flight"].append(job)
            state["last_started"] = last_key
        # 2. Start what is waiting to start, poll what is running.
        still: list[dict[str, Any]] = []
        polls = 0
        for job in state["in_flight"]:
            out_of_time = time.monotonic() - tick_started > settings.time_budget_seconds
            if polls >= settings.max_polls or out_of_time or now() < job.get("not_before", 0):
                still.append(job)
                continue
            polls += 1
            window = f"{job['start']}..{job['end']}"
            if job["handle"] is None:
                params = _export(report).params(_window(job))
                # The list's count for the same filters, taken before the export starts: the run that
                # downloads the file fails if it holds fewer records.
                job["expected"] = count_export_records(client, marketplace.developer_id, _export(report).kind, params)
                job["handle"] = start_export(client, marketplace.developer_id, _export(report).kind, params).to_dict()
                job["started"] = now()
                job.setdefault("first_started", job["started"])
                context.log.info(f"{report.label}: started export {job['handle']['export_id']} for {window}")
                still.append(job)
                continue
            handle = ExportHandle.from_dict(job["handle"])
            try:
                status, raw = export_status(client, handle)
            except MarketplaceApiError as exc:
                if exc.status != 404:
                    raise
                status, raw = ExportStatus.FAILED, "gone (404)"  # the service no longer knows it: start again
            if status is ExportStatus.COMPLETED:
                context.log.info(
                    f"{report.label}: export {handle.export_id} for {window} is ready; requesting its run"
                )
                config = {
                    "export_id": handle.export_id,
                    "status_href": handle.status_href,
                    "download_href": handle.download_href,
                }
                if job.get("expected") is not None:
                    config["expected_records"] = job["expected"]
                requests.append(_run_request(report, job, config, ""))
                continue
            if status is ExportStatus.UNKNOWN:
                context.log.warning(
                    f"{report.label}: export {handle.export_id} has unknown status {raw!r}; "
                    "treated as running"
                )
            waited = now() - job.get("first_started", job["started"])
            overdue = waited > deadline
            if status is not ExportStatus.FAILED and not overdue:
                still.append(job)
                continue
            problem = (
                "FAILED"
                if status is ExportStatus.FAILED
                else f"was not finished after waiting {waited:.0f}s "
                f"(MARKETPLACE_EXPORT_DEADLINE: {deadline:.0f}s)"
            )
            if job["attempt"] < settings.max_attempts and not overdue:
                context.log.warning(
                    f"{report.label}: export {handle.export_id} for {window} {problem}; starting it again "
                    f"(attempt {job['attempt'] + 1} of {settings.max_attempts})"
                )
                still.append(
                    {
                        **job,
                        "handle": None,
                        "attempt": job["attempt"] + 1,
                        "not_before": now() + settings.restart_backoff_seconds * job["attempt"],
                    }
                )
                continue
            times = f" {job['attempt']} times" if status is ExportStatus.FAILED else ""
            message = (
                f"the export for {window} {problem}{times} (last export {handle.export_id}); the sensor "
                "gave up. Backfill these partitions to try again."
            )
            context.log.error(f"{report.label}: {message}")
            requests.append(_run_request(report, job, {"failure": message}, ":failed"))
        state["in_flight"] = still
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(state, separators=(",", ":")))


def _export(report: Report) -> ExportSpec:
    assert report.export is not None, f"{report.label} is not an export-backed report"
    return report.export


def _window(job: dict[str, Any]) -> Window:
    return Window(date.fromisoformat(job["start"]), date.fromisoformat(job["end"]))


def build_export_sensor(
    report: Report,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settings: ExportSensorSettings = ExportSensorSettings(),
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """`default_status` is the status the sensor ships with (MARKETPLACE_AUTOMATION); the UI can switch it."""

    @dg.sensor(
        name=f"{report.area}_{report.name}_export_sensor",
        description=(
            f"Starts and polls the async exports of {report.label}: the latest complete day plus "
            f"{_export(report).lookback_days - 1} day(s) of lookback, one export per new day; launches one run per "
            "finished export. Backfills from the UI do not need it: their runs start their own export."
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
