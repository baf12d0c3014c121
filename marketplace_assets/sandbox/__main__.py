"""Run the sandbox as a foreground HTTP server: `python -m marketplace_assets.sandbox --port 8080`.

Prints one line `sandbox listening on http://HOST:PORT` when ready (with --port 0, the real port)
and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from marketplace_assets.sandbox.app import HREF_STYLES, Sandbox
from marketplace_assets.sandbox.server import serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marketplace_assets.sandbox", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--volume", type=float, default=1.0)
    parser.add_argument("--developer-id", default="sandbox-developer")
    parser.add_argument("--email", default="sandbox@example.com")
    parser.add_argument("--token", default="sandbox-token")
    parser.add_argument("--href-style", choices=HREF_STYLES, default="rest3")
    args = parser.parse_args(argv)

    sandbox = Sandbox(
        seed=args.seed,
        volume=args.volume,
        developer_id=args.developer_id,
        email=args.email,
        token=args.token,
        href_style=args.href_style,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with serve(sandbox, port=args.port, host=args.host) as url:
        print(f"sandbox listening on {url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
