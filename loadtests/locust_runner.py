"""Run Locust headless in its own processes and read back what it measured.

Locust runs as a separate process (gevent patches the whole interpreter it runs in). It writes its
final statistics with ``--json-file`` and a per-second history with ``--csv-full-history``; its own
HTML report goes next to ours. While it runs, this module samples the CPU of the Locust processes,
so a report can say when the load generator, not the system under test, was the bottleneck.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

# A Locust process above this share of one core is saturated: it measures itself, not the target.
SATURATED_CPU_PERCENT = 90.0


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
    history: list[dict[str, float]] = field(default_factory=list)
    locust_cpu_percent: float = 0.0
    locust_processes: int = 1

    @property
    def locust_saturated(self) -> bool:
        return self.locust_cpu_percent / self.locust_processes >= SATURATED_CPU_PERCENT

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "locust_saturated": self.locust_saturated}


def run_locust(
    locustfile: Path,
    *,
    host: str,
    users: int,
    duration_s: int,
    shape: str = "steady",
    env: Mapping[str, str] | None = None,
    out_dir: Path | None = None,
    processes: int = 0,
) -> LoadSummary:
    """Drive ``host`` with ``locustfile`` following ``shape``; files land in ``out_dir``.

    ``processes`` > 0 runs Locust's master with that many worker processes.
    """
    scratch = out_dir or Path(os.environ.get("TMPDIR", "/tmp")) / f"lab-locust-{os.getpid()}-{time.time_ns()}"
    scratch.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", host,
        "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{duration_s + 5}s",
        "--only-summary", "--loglevel", "WARNING",
        "--json-file", str(scratch / "locust"), "--csv", str(scratch / "locust"), "--csv-full-history",
        "--html", str(scratch / "locust.html"),
    ]  # fmt: skip
    if processes > 0:
        argv += ["--processes", str(processes)]
    shape_env = {"LAB_SHAPE": shape, "LAB_SHAPE_USERS": str(users), "LAB_SHAPE_DURATION_S": str(duration_s)}
    child = subprocess.Popen(
        argv,
        env={**os.environ, **shape_env, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=(scratch / "locust.log").open("wb"),
        stdin=subprocess.DEVNULL,
    )
    try:
        cpu_percent = _sample_cpu_until_exit(child, timeout_s=duration_s + 90)
    except BaseException:  # Ctrl-C included: never leave a load generator running
        child.kill()
        child.wait()
        raise
    if child.returncode not in (0, 1):  # 1 means "some requests failed", still measured
        log = (scratch / "locust.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"locust exited with {child.returncode}:\n{log}")
    entries = json.loads((scratch / "locust.json").read_text())
    return dataclasses.replace(
        summarize(entries),
        history=read_history(scratch / "locust_stats_history.csv"),
        locust_cpu_percent=cpu_percent,
        locust_processes=max(1, processes),
    )


def _sample_cpu_until_exit(child: subprocess.Popen[bytes], *, timeout_s: float) -> float:
    """The highest CPU use of Locust (all its processes, percent of one core) over the run."""
    deadline = time.monotonic() + timeout_s
    peak = 0.0
    tracked: dict[int, psutil.Process] = {}
    while child.poll() is None:
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            raise RuntimeError("locust did not finish in time")
        peak = max(peak, _cpu_of_family(child.pid, tracked))
        time.sleep(1.0)
    return round(peak, 1)


def _cpu_of_family(pid: int, tracked: dict[int, psutil.Process]) -> float:
    try:
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in family:
        known = tracked.setdefault(process.pid, process)
        try:
            total += known.cpu_percent(interval=None)  # since the previous sample of this process
        except psutil.NoSuchProcess:
            continue
    return total


def read_history(path: Path) -> list[dict[str, float]]:
    """Per-second rows of the aggregated line: elapsed seconds, users, throughput, percentiles."""
    if not path.exists():
        return []
    rows = [row for row in csv.DictReader(path.open()) if row.get("Name") == "Aggregated"]
    if not rows:
        return []
    start = float(rows[0]["Timestamp"])
    return [_history_point(row, start) for row in rows]


def _history_point(row: Mapping[str, str], start: float) -> dict[str, float]:
    def number(key: str) -> float:
        value = row.get(key, "") or "0"
        return 0.0 if value == "N/A" else float(value)

    return {
        "t": float(row["Timestamp"]) - start,
        "users": number("User Count"),
        "rps": number("Requests/s"),
        "failures_per_s": number("Failures/s"),
        "p50_ms": number("50%"),
        "p95_ms": number("95%"),
        "p99_ms": number("99%"),
    }


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
        max_ms=round(max((e["max_response_time"] for e in entries), default=0.0), 1),
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
