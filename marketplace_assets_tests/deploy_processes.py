"""The command lines of the production deployment's three processes, in one place.

The container image runs them (deploy/docker-compose.yaml, deploy/helm/values.yaml) with the ports below;
the end-to-end deployment test runs the very same command lines on free loopback ports. A test checks
that the compose file and the Helm values say exactly these.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CODE_SERVER_PORT = 4000
WEBSERVER_PORT = 3000
WORKSPACE = "deploy/workspace.yaml"


def code_server(port: int = CODE_SERVER_PORT, host: str = "0.0.0.0") -> list[str]:
    return [
        "dagster",
        "code-server",
        "start",
        "-h",
        host,
        "-p",
        str(port),
        "-m",
        "marketplace_assets.definitions",
    ]


def webserver(port: int = WEBSERVER_PORT, host: str = "0.0.0.0") -> list[str]:
    return ["dagster-webserver", "-h", host, "-p", str(port), "-w", WORKSPACE]


def daemon() -> list[str]:
    return ["dagster-daemon", "run", "-w", WORKSPACE]


@dataclass
class Service:
    """One of the deployment's processes, run with `command` (from the functions above) in its own process
    group, with its stdout and stderr in `log_path`. `stop()` ends the group: the process and whatever it
    started (the code server's gRPC server and run workers)."""

    name: str
    command: list[str]
    env: Mapping[str, str]
    cwd: Path
    log_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self) -> None:
        # The entry point of this interpreter's environment, so the processes run the locked versions.
        program = Path(sys.executable).parent / self.command[0]
        argv = [str(program) if program.exists() else self.command[0], *self.command[1:]]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # Whatever the group still holds (a run worker, the code server's child) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log, without blank lines and the definitions' beta warnings."""
        kept, skip_next = [], False
        for line in self.log().splitlines():
            if skip_next or not line.strip():
                skip_next = False
                continue
            if "BetaWarning" in line:
                skip_next = True  # the warning's source line follows it
                continue
            kept.append(line)
        return f"--- {self.name} ({self.log_path})\n" + "\n".join(kept[-lines:])


def wait_for_port(service: Service, host: str, port: int, timeout: float) -> None:
    """Wait until `service` accepts TCP connections on host:port (the code server listens only once its
    code has loaded); fail at once if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.exited():
            raise AssertionError(f"{service.name} exited early:\n{service.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.3)
    raise AssertionError(
        f"{service.name} did not listen on {host}:{port} within {timeout}s:\n{service.log_tail()}"
    )
