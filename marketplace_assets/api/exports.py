"""The async export lifecycle: start → poll status → download, shared by sensors and runs.

Licenses, transactions and marketing attribution are pulled as async exports: the Marketplace prepares a
file and the client downloads it when its status is COMPLETED. Sensors drive the lifecycle one step per
tick (`start_export`, `export_status`, `download_export`); a run that was not launched by a sensor (a UI
backfill, a manual materialization) drives the same steps itself with `run_export`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from marketplace_assets.api.client import MarketplaceClient
from marketplace_assets.api.errors import MarketplaceApiError, MarketplaceError

# The prefix of every reporting path (the catalog's reports and the exports).
REPORTING = "reporting/developer-space/{developerId}"


class ExportKind(StrEnum):
    LICENSES = "licenses"
    TRANSACTIONS = "transactions"
    ATTRIBUTION = "attribution"

    @property
    def list_path(self) -> str | None:
        """The offset-paged list with the same filters, whose `totalCount` says how many records the
        export must hold; marketing attribution has no such list."""
        paths = {"licenses": "/licenses", "transactions": "/sales/transactions"}
        return REPORTING + paths[self.value] if self.value in paths else None

    @property
    def start_path(self) -> str:
        return (
            REPORTING
            + {
                "licenses": "/licenses/async/export",
                "transactions": "/sales/transactions/async/export",
                "attribution": "/marketing-attribution/async/export",
            }[self.value]
        )


class ExportStatus(StrEnum):
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"  # any other value: treated as still running until a deadline


class ExportFailedError(MarketplaceError):
    """The service reported FAILED (or the export could not be completed) after every restart."""


class ExportNotReadyError(MarketplaceError):
    """The download answered 404 "Export is being processed": poll again, do not fail."""


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
            f"{kind.value} export: the start answer has no export id ({exc}): {str(body)[:200]}"
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
    started = clock()
    while True:
        try:
            return download_export(client, handle)
        except ExportNotReadyError:
            waited = clock() - started
            if waited > lifecycle.deadline:
                raise ExportFailedError(
                    f"export {handle.export_id} was still being processed after waiting {waited:.0f}s "
                    f"(MARKETPLACE_EXPORT_DEADLINE: {lifecycle.deadline:.0f}s)"
                ) from None
            sleep(lifecycle.poll_interval)


@dataclass(frozen=True)
class Lifecycle:
    """How long to wait for an export, how often to look, and how often to start a FAILED one again.

    `deadline` bounds the whole export, restarts included (MARKETPLACE_EXPORT_DEADLINE)."""

    poll_interval: float = 5.0
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
    began = clock()

    def time_left() -> float:
        return lifecycle.deadline - (clock() - began)

    failed: list[str] = []
    for attempt in range(lifecycle.max_restarts + 1):
        if attempt:
            sleep(max(0.0, min(lifecycle.restart_backoff * attempt, time_left())))
        handle = start_export(client, developer_id, kind, params)
        attempts = lifecycle.max_restarts + 1
        log(f"{kind.value} export {handle.export_id} started (attempt {attempt + 1} of {attempts})")
        path, last_status = _see_through(client, handle, lifecycle, time_left, log, sleep)
        if path is not None:
            return handle, path
        if last_status != ExportStatus.FAILED.value:
            raise ExportFailedError(
                f"{kind.value} export {handle.export_id} did not complete within the deadline: waited "
                f"{clock() - began:.0f}s (MARKETPLACE_EXPORT_DEADLINE: {lifecycle.deadline:.0f}s), last "
                f"status {last_status!r}{'; earlier attempts: ' + ', '.join(failed) if failed else ''}. The "
                "Marketplace may be slow to prepare exports; raise MARKETPLACE_EXPORT_DEADLINE or narrow the "
                "date range."
            )
        failed.append(f"{handle.export_id} FAILED")
        if time_left() <= 0:
            break
    raise ExportFailedError(
        f"{kind.value} export did not complete after {len(failed)} attempt(s) in {clock() - began:.0f}s "
        f"({', '.join(failed)}). The Marketplace may be having trouble preparing exports; re-run later or "
        "narrow the date range."
    )


def _see_through(
    client: MarketplaceClient,
    handle: ExportHandle,
    lifecycle: Lifecycle,
    time_left: Callable[[], float],
    log: Callable[[str], None],
    sleep: Callable[[float], None],
) -> tuple[Path | None, str]:
    """Poll one export until it is downloaded (the file), FAILED, or out of time (None, last status)."""
    last = ""
    while time_left() > 0:
        status, last = export_status(client, handle)
        if status is ExportStatus.FAILED:
            log(f"export {handle.export_id} FAILED")
            return None, ExportStatus.FAILED.value
        if status is ExportStatus.UNKNOWN:
            log(f"export {handle.export_id}: unknown status {last!r}, treated as still running")
        if status is ExportStatus.COMPLETED:
            try:
                return download_export(client, handle), last
            except ExportNotReadyError:
                log(f"export {handle.export_id} is COMPLETED but still being processed; polling on")
        sleep(max(0.0, min(lifecycle.poll_interval, time_left())))
    return None, last
