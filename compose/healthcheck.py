#!/usr/bin/env python3
"""The image's HEALTHCHECK: a service is healthy when ``GET /healthz`` on the port its command names
answers 200; any other process (a worker, Locust) is healthy while it runs.

Reading the port from the running command (``/proc/1/cmdline``) keeps one health check valid for
every service without repeating ports in the compose file.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path


def port_of(argv: list[str]) -> int | None:
    if "uvicorn" not in argv or "--port" not in argv:
        return None
    return int(argv[argv.index("--port") + 1])


def main() -> int:
    argv = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    port = port_of(argv)
    if port is None:
        return 0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2.5) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
