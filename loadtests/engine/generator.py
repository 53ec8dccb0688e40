"""Run the load generator (Locust, headless, in processes of its own) and read back what it recorded.

Open loop: ``schedule`` says when requests go out; one :class:`~loadtests.engine.openloop.OpenLoopUser`
per Locust process follows its share of it. Closed loop: ``users`` Locust users of a class run as fast
as their answers let them. Either way every process writes an exact recording; this merges them and
samples the generator's CPU, so a run can say whether the generator, not the system, was the limit.

Locust runs for the schedule (or the stated duration) plus the deadline and a margin, so that the
last requests get their full deadline before the processes stop; its own statistics are not read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from loadtests.engine.recording import Recording, merged
from loadtests.engine.schedule import Schedule

STOP_MARGIN_S = 2.0
MAX_EXTRA_WAIT_S = 90.0  # start-up and shutdown of Locust itself, beyond the run


@dataclass(frozen=True)
class LoadPlan:
    """What to run: the locustfile and user class, and either a schedule or a number of users."""

    locustfile: Path
    user_class: str
    host: str
    schedule: Schedule | None = None
    users: int = 0
    duration_s: float = 0.0  # closed loop only; an open-loop run lasts its schedule
    warmup_s: float = 0.0
    deadline_s: float = 2.0
    processes: int = 1
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.schedule is None) == (self.users == 0):
            raise ValueError("a load plan is either open loop (a schedule) or closed loop (users), not both")
        if self.schedule is None and self.duration_s <= 0:
            raise ValueError("a closed-loop plan needs a duration")
        if self.processes < 1 or self.deadline_s <= 0 or self.warmup_s < 0:
            raise ValueError("processes ≥ 1, a positive deadline and a warm-up ≥ 0, please")

    @property
    def run_s(self) -> float:
        return self.schedule.duration_s if self.schedule is not None else self.duration_s

    @property
    def open_loop(self) -> bool:
        return self.schedule is not None


@dataclass(frozen=True)
class LoadResult:
    recording: Recording
    started_at_unix: float  # the earliest process's start, for chaos markers on the same clock
    generator_cpu: list[float]  # cores used by all generator processes, one sample a second
    processes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at_unix": self.started_at_unix,
            "generator_cpu": self.generator_cpu,
            "processes": self.processes,
            "recording": self.recording.to_json(),
        }


def run_load(plan: LoadPlan, *, out_dir: Path) -> LoadResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("recording-*.json"):
        stale.unlink()
    with (out_dir / "locust.log").open("wb") as log:
        child = subprocess.Popen(
            _argv(plan, out_dir),
            env={**os.environ, **_env(plan, out_dir)},
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        try:
            cpu = _sample_cpu_until_exit(child, timeout_s=plan.run_s + plan.deadline_s + MAX_EXTRA_WAIT_S)
        except BaseException:  # Ctrl-C included: never leave a load generator running
            child.kill()
            child.wait()
            raise
    if child.returncode not in (0, 1):  # 1: Locust saw failures, which are measured, not fatal
        raise RuntimeError(f"locust exited with {child.returncode}:\n{_tail(out_dir / 'locust.log')}")
    return _read_back(out_dir, cpu=cpu, processes=plan.processes)


def _argv(plan: LoadPlan, out_dir: Path) -> list[str]:
    users = plan.processes if plan.open_loop else plan.users
    argv = [
        sys.executable, "-m", "locust", "-f", str(plan.locustfile), plan.user_class,
        "--headless", "--host", plan.host, "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{round(plan.run_s + plan.deadline_s + STOP_MARGIN_S)}s",
        "--stop-timeout", str(round(plan.deadline_s + 1)), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    if plan.processes > 1:
        argv += ["--processes", str(plan.processes)]
    return argv


def _env(plan: LoadPlan, out_dir: Path) -> dict[str, str]:
    env = {
        **plan.env,
        "LAB_BENCH_RECORD_DIR": str(out_dir),
        "LAB_LOAD_DEADLINE_S": str(plan.deadline_s),
        "LAB_LOAD_WARMUP_S": str(plan.warmup_s),
        "LAB_LOAD_PROCESSES": str(plan.processes),
        "LAB_LOAD_DURATION_S": str(plan.run_s),
    }
    if plan.schedule is not None:
        env["LAB_LOAD_SCHEDULE"] = plan.schedule.to_json()
    return env


def _read_back(out_dir: Path, *, cpu: list[float], processes: int) -> LoadResult:
    documents = [json.loads(path.read_text()) for path in sorted(out_dir.glob("recording-*.json"))]
    if not documents:
        raise RuntimeError(f"the load generator wrote no recording:\n{_tail(out_dir / 'locust.log')}")
    return LoadResult(
        recording=merged(Recording.from_json(d["recording"]) for d in documents),
        started_at_unix=min(d["started_at_unix"] for d in documents),
        generator_cpu=cpu,
        processes=processes,
    )


def _sample_cpu_until_exit(child: subprocess.Popen[bytes], *, timeout_s: float) -> list[float]:
    """Cores used by the generator's processes (all of them), sampled once a second until it exits."""
    deadline = time.monotonic() + timeout_s
    tracked: dict[int, psutil.Process] = {}
    samples: list[float] = []
    while child.poll() is None:
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            raise RuntimeError("the load generator did not finish in time")
        samples.append(_cores_of_family(child.pid, tracked))
        time.sleep(1.0)
    return samples[1:]  # the first reading has no interval behind it


def _cores_of_family(pid: int, tracked: dict[int, psutil.Process]) -> float:
    try:
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in family:
        known = tracked.setdefault(process.pid, process)
        try:
            total += known.cpu_percent(interval=None) / 100
        except psutil.NoSuchProcess:
            continue
    return round(total, 3)


def _tail(path: Path, *, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"
