"""The async export lifecycle: start → poll status → download, shared by sensors and runs.

Licenses, transactions and marketing attribution are pulled as async exports: the Marketplace prepares a
file and the client downloads it when its status is COMPLETED. Sensors drive the lifecycle one step per
tick (`start_export`, `export_status`, `download_export`); a run that was not launched by a sensor (a UI
backfill, a manual materialization) drives the same steps itself with `run_export`. Both do what the state
machine in `export_job.py` decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.errors import MarketplaceApiError, MarketplaceError

# ExportStatus and ExportHandle live with the state machine (which this module drives) and are imported
# from here as before.
from marketplace_assets.api.export_job import advance
from marketplace_assets.api.export_job_model import (
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
    StatusRead,
    Tick,
    Wait,
)
from marketplace_assets.constants import DEFAULT_EXPORT_POLL_INTERVAL

# The prefix of every reporting path (the catalog's reports and the exports).
REPORTING = "reporting/developer-space/{developerId}"


@dataclass(frozen=True)
class ExportKind:
    """An async export: its name (in messages and metadata), the path that starts it, and the offset-paged
    list with the same filters, whose `totalCount` says how many records the export must hold (None: the
    report has no such list, like marketing attribution). The catalog's export rows hold them
    (`reports/catalog.py`), so a new export is a new row."""

    name: str
    start_path: str  # under /rest/3; {developerId} is filled in
    list_path: str | None = None


class ExportFailedError(MarketplaceError):
    """The service reported FAILED (or the export could not be completed) after every restart."""


class ExportNotReadyError(MarketplaceError):
    """The download answered 404 "Export is being processed": poll again, do not fail."""


def start_export(
    client: MarketplaceClient,
    developer_id: str,
    kind: ExportKind,
    params: Mapping[str, Any],
    accept: str = "csv",
) -> ExportHandle:
    """POST the export with the list endpoint's filters; follow the hrefs it answers (never build them)."""
    path = kind.start_path.format(developerId=developer_id)
    # accept is sent explicitly: without it the request's Accept header would pick the format.
    body = client.request_json("POST", path, params={**params, "accept": accept})
    try:
        export_id = str(body["export"]["id"])
        links = body.get("_links") or {}
        base = f"{path.rsplit('/async/export', 1)[0]}/async/export/{export_id}"
        status_href = (links.get("status") or {}).get("href") or f"{base}/status"
        download_href = (links.get("download") or {}).get("href") or base
    except (KeyError, TypeError) as exc:
        raise MarketplaceError(
            f"{kind.name} export: the start answer has no export id ({exc}): {str(body)[:200]}"
        ) from None
    return ExportHandle(export_id, status_href, download_href, accept)


def export_status(client: MarketplaceClient, handle: ExportHandle) -> tuple[ExportStatus, str]:
    """(status, the raw value the service sent)."""
    body = client.get_json(handle.status_href)
    raw = str(((body or {}).get("export") or {}).get("status", ""))
    try:
        return ExportStatus(raw), raw
    except ValueError:
        return ExportStatus.UNKNOWN, raw


def download_export(client: MarketplaceClient, handle: ExportHandle) -> Path:
    """Stream the finished file to disk. A 404 "being processed" means not ready yet, not a failure."""
    try:
        return client.download(
            handle.download_href, params={"accept": handle.accept}, suffix=f".{handle.accept}"
        )
    except MarketplaceApiError as exc:
        if exc.status == 404 and "being processed" in exc.service_message.lower():
            raise ExportNotReadyError(f"export {handle.export_id} is still being processed") from None
        raise


def await_download(
    client: MarketplaceClient,
    handle: ExportHandle,
    lifecycle: Lifecycle,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Path:
    """Download a finished export, polling again while it answers "being processed" (up to the deadline)."""
    # The run a sensor requested: the sensor saw the export COMPLETED, so only the file is awaited, and
    # the deadline counts from here.
    now = clock()
    job = ExportJob(phase=Phase.READY, handle=handle, first_started=now, started=now)
    return _see_through(client, job, _policy(lifecycle, Driver.SENSOR), print, sleep, clock)[1]


@dataclass(frozen=True)
class Lifecycle:
    """How long to wait for an export, how often to look, and how often to start a FAILED one again.

    `poll_interval` is the longest wait between reads (they start a second apart and double);
    `deadline` bounds the whole export, restarts included (MARKETPLACE_EXPORT_DEADLINE)."""

    poll_interval: float = DEFAULT_EXPORT_POLL_INTERVAL
    deadline: float = 3 * 3600.0
    max_restarts: int = 2
    restart_backoff: float = 30.0


def count_export_records(
    client: MarketplaceClient, developer_id: str, kind: ExportKind, params: Mapping[str, Any]
) -> int | None:
    """How many records an export with these filters must hold, by the list endpoint's `totalCount`
    for the same filters (one request of one record); None where the report has no list."""
    if kind.list_path is None:
        return None
    return client.count(kind.list_path.format(developerId=developer_id), params)


def run_export(
    client: MarketplaceClient,
    developer_id: str,
    kind: ExportKind,
    params: Mapping[str, Any],
    *,
    lifecycle: Lifecycle = Lifecycle(),
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[ExportHandle, Path]:
    """Start an export and see it through inside a run: poll, download, restart a FAILED one, and give
    up once the deadline (restarts included) has passed, naming the export and the time waited."""
    job = ExportJob(first_started=clock())  # the deadline counts from here, the first start included
    policy = _policy(lifecycle, Driver.RUN, kind.name)

    def start() -> ExportHandle:
        return start_export(client, developer_id, kind, params)

    return _see_through(client, job, policy, log, sleep, clock, start)


def _policy(lifecycle: Lifecycle, driver: Driver, label: str = "") -> ExportPolicy:
    return ExportPolicy(
        max_attempts=lifecycle.max_restarts + 1,
        deadline_seconds=lifecycle.deadline,
        restart_backoff_seconds=lifecycle.restart_backoff,
        poll_interval_seconds=lifecycle.poll_interval,
        driver=driver,
        label=label,
    )


def _see_through(
    client: MarketplaceClient,
    job: ExportJob,
    policy: ExportPolicy,
    log: Callable[[str], None],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    start: Callable[[], ExportHandle] | None = None,
) -> tuple[ExportHandle, Path]:
    """Do what `advance` says, sleeping through its waits, until the file is downloaded; raise
    ExportFailedError with its message when it gives up. A status that fails (a 404 included) raises."""
    observation: Observation = Tick()
    while True:
        job, actions = advance(job, observation, clock(), policy)
        observation = Tick()  # after a log or a wait: look again
        for action in actions:
            match action:
                case Log(message=message):
                    log(message)
                case Wait(seconds=seconds):
                    sleep(seconds)
                case StartExport() if start is not None:
                    observation = Started(start())
                case PollStatus(handle=handle):
                    observation = StatusRead(*export_status(client, handle))
                case Download(handle=handle):
                    try:
                        return handle, download_export(client, handle)
                    except ExportNotReadyError:
                        observation = NotReady()
                case GiveUp(message=message):
                    raise ExportFailedError(message)
                case _:
                    raise MarketplaceError(f"a run that only downloads an export cannot {action}")
