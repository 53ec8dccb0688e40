"""Run Locust headless in its own process and read back what it measured.

Locust runs as a separate process (gevent patches the whole interpreter it runs in), writes its
final statistics with ``--json-file``, and this module turns them into a :class:`LoadSummary`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoadSummary:
    requests: int
    failures: int
    duration_s: float
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_locust(
    locustfile: Path,
    *,
    host: str,
    users: int,
    duration_s: int,
    spawn_rate: float | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> LoadSummary:
    """Drive ``host`` with ``users`` users of ``locustfile`` for ``duration_s`` seconds."""
    with tempfile.TemporaryDirectory(prefix="lab-locust-") as scratch:
        stats_file = Path(scratch) / "stats"
        argv = [
            sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
            "--host", host, "--users", str(users), "--spawn-rate", str(spawn_rate or users),
            "--run-time", f"{duration_s}s", "--only-summary", "--json-file", str(stats_file),
            "--loglevel", "WARNING",
        ]  # fmt: skip
        completed = subprocess.run(
            argv,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout_s or duration_s + 60,
            stdin=subprocess.DEVNULL,
        )
        if completed.returncode not in (0, 1):  # 1 means "some requests failed", still measured
            raise RuntimeError(f"locust failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
        entries = json.loads(stats_file.with_suffix(".json").read_text())
    return summarize(entries)


def summarize(entries: list[dict[str, Any]]) -> LoadSummary:
    """Merge every request name's statistics into one summary."""
    histogram: dict[float, int] = {}
    for entry in entries:
        for bucket, count in entry["response_times"].items():
            histogram[float(bucket)] = histogram.get(float(bucket), 0) + count
    requests = sum(e["num_requests"] for e in entries)
    started = min((e["start_time"] for e in entries), default=0.0)
    ended = max((e["last_request_timestamp"] or started for e in entries), default=0.0)
    duration = max(ended - started, 1e-9)
    return LoadSummary(
        requests=requests,
        failures=sum(e["num_failures"] for e in entries),
        duration_s=round(duration, 3),
        throughput_rps=round(requests / duration, 1),
        p50_ms=percentile(histogram, 0.50),
        p95_ms=percentile(histogram, 0.95),
        p99_ms=percentile(histogram, 0.99),
        max_ms=max((e["max_response_time"] for e in entries), default=0.0),
    )


def percentile(histogram: Mapping[float, int], fraction: float) -> float:
    """The smallest recorded response time at or below which ``fraction`` of requests fall."""
    total = sum(histogram.values())
    if total == 0:
        return 0.0
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= fraction * total:
            return bucket
    return max(histogram)
