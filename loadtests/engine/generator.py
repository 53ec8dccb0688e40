"""Run the load generator (Locust, headless, in processes of its own) and read back what it recorded.

Open loop: ``schedule`` says when requests go out; one :class:`~loadtests.engine.openloop.OpenLoopUser`
per Locust process follows its share of it. Closed loop: ``users`` Locust users of a class run as fast
as their answers (and the locustfile's load shape) let them. Either way every process writes an exact
recording; this merges them. The generator's CPU is measured by :mod:`loadtests.engine.cpu`, which
needs its pid: :func:`start_load` returns while Locust runs, :meth:`RunningLoad.finish` waits for it.

Locust runs for the schedule (or the stated duration) plus the deadline and a margin, so that the
last requests get their full deadline before the processes stop; its own statistics are not read.

``processes`` > 1 forks the workers here (Locust's ``--processes``). With ``master_bind`` the
workers run elsewhere, on other machines: this process is Locust's master only, listening on
``host:port`` and starting once ``processes`` workers have joined. It writes ``worker.env`` into the
output folder, the environment each worker needs (``worker_argv`` says how to start one), and, given
a :class:`~loadtests.engine.remote.PlanBoard`, publishes the run there, where ``lab load-worker``
finds it; the workers send what they record to the master, so everything is read back here, as
from a local run.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from loadtests.engine.recording import Recording, merged
from loadtests.engine.schedule import Schedule

if TYPE_CHECKING:
    from loadtests.engine.remote import PlanBoard

STOP_MARGIN_S = 2.0
# Locust's --run-time counts from its start, before the users' set-up (the shortener's users create
# their links first); the run itself ends on the load's own clock (see RunningLoad.finish), and the
# run time is only the net below it, this much longer.
SETUP_ALLOWANCE_S = 120.0
MAX_EXTRA_WAIT_S = 90.0  # start-up and shutdown of Locust itself, beyond the run
START_TIMEOUT_S = 60.0
# The environment every process of one run must share (the workers' plan is checked against it).
PLAN_PREFIX = "LAB_LOAD_"


class LoadGeneratorError(RuntimeError):
    """The load generator did not start (workers elsewhere that never joined, or refused), failed, or
    lost a part of the load: the run measured nothing that could be trusted. Carries Locust's log."""


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
    # "host:port" the master listens on for workers that run elsewhere; None forks them here.
    master_bind: str | None = None

    def __post_init__(self) -> None:
        if (self.schedule is None) == (self.users == 0):
            raise ValueError("a load plan is either open loop (a schedule) or closed loop (users), not both")
        if self.schedule is None and self.duration_s <= 0:
            raise ValueError("a closed-loop plan needs a duration")
        if self.processes < 1 or self.deadline_s <= 0 or self.warmup_s < 0:
            raise ValueError("processes ≥ 1, a positive deadline and a warm-up ≥ 0, please")
        if self.master_bind is not None:
            master_address(self.master_bind)

    @property
    def users_count(self) -> int:
        """Locust users: one open-loop user per process (it follows that process's share)."""
        return self.processes if self.open_loop else self.users

    @property
    def run_s(self) -> float:
        return self.schedule.duration_s if self.schedule is not None else self.duration_s

    @property
    def open_loop(self) -> bool:
        return self.schedule is not None


@dataclass(frozen=True)
class LoadResult:
    recording: Recording
    started_monotonic: float  # the earliest process's start: the series' t = 0
    started_at_unix: float
    processes: int


class RunningLoad:
    """Locust while it runs: its pid (for the CPU meter), when its clock started, and its result."""

    def __init__(self, plan: LoadPlan, out_dir: Path, board: PlanBoard | None = None) -> None:
        self.plan = plan
        self.out_dir = out_dir
        self._board = board
        self._started: float | None = None
        self._log: IO[bytes] = (out_dir / "locust.log").open("wb")
        self._child = subprocess.Popen(
            _argv(plan),
            env={**os.environ, **_env(plan, out_dir)},
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self._child.pid

    def wait_started(self) -> float:
        """The monotonic time the generator's first process began its run (its t = 0)."""
        if self._started is not None:
            return self._started
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (clocks := list(self.out_dir.glob("clock-*.json"))):
            if self._child.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LoadGeneratorError(self._why_not_started())
            time.sleep(0.05)
        self._started = min(float(json.loads(path.read_text())["started_monotonic"]) for path in clocks)
        if self._board is not None:
            self._board.close_joining()  # every share of the schedule is taken
        return self._started

    def _why_not_started(self) -> str:
        """What is known: the workers a master waited for (its own log says nothing of workers that
        never came), the refusals of workers elsewhere, and Locust's log."""
        why = "the load generator did not start"
        if self.plan.master_bind is not None:
            why += f": its master waited {START_TIMEOUT_S:g} s at {self.plan.master_bind} for "
            why += f"{self.plan.processes} worker(s) to join"
        refused = self._board.refusals() if self._board is not None else []
        return "\n".join([why, *refused, _tail(self.out_dir / "locust.log")])

    def finish(self) -> LoadResult:
        try:
            self._end_on_the_loads_clock()
            self._child.wait(timeout=MAX_EXTRA_WAIT_S)
        except BaseException:  # a hang or Ctrl-C: never leave a load generator running
            self.stop()
            raise
        finally:
            self._log.close()
        if self._child.returncode not in (0, 1):  # 1: Locust saw failures, which are measured
            log = _tail(self.out_dir / "locust.log")
            raise LoadGeneratorError(f"locust exited with {self._child.returncode}:\n{log}")
        return _read_back(self.out_dir, processes=self.plan.processes)

    def _end_on_the_loads_clock(self) -> None:
        """Stop Locust (SIGTERM: its graceful stop, as at the end of its run time) once the run, the
        last request's deadline and a margin have passed since the load's t = 0."""
        end = self.wait_started() + self.plan.run_s + self.plan.deadline_s + STOP_MARGIN_S
        try:
            self._child.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._child.send_signal(signal.SIGTERM)

    def end_early(self) -> None:
        """End the run now, the way its time running out ends it (Locust's graceful stop): every
        process still hands in what it recorded, and :meth:`finish` reads it back."""
        if self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)

    def live(self) -> LiveView:
        """The run so far, from what its processes handed in while it lasts (``LAB_LOAD_LIVE_S``)."""
        return read_live(self.out_dir)

    def stop(self) -> None:
        if self._child.poll() is None:
            self._child.kill()
            self._child.wait()
        self._log.close()


def master_address(bind: str) -> tuple[str, int]:
    """``host:port`` → its parts, or a clear error."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the master listens on host:port, e.g. 0.0.0.0:5557, not {bind!r}")
    return host, int(port)


def start_load(plan: LoadPlan, *, out_dir: Path, board: PlanBoard | None = None) -> RunningLoad:
    """Start the generator; with ``board``, publish the run for workers elsewhere to join."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind in ("recording", "clock", "live"):  # a folder used before holds an older run's records
        for stale in out_dir.glob(f"{kind}-*.json"):
            stale.unlink()
    if plan.master_bind is not None:
        env = worker_env(plan, out_dir)
        (out_dir / "worker.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    running = RunningLoad(plan, out_dir, board)
    if board is not None:
        board.publish(plan, out_dir)
    return running


def worker_argv(plan: LoadPlan, *, master_host: str) -> list[str]:
    """How a worker on another machine joins a run of ``plan``, with ``worker.env`` in its
    environment; ``--processes N`` added to it forks N workers there."""
    _, port = master_address(plan.master_bind or "")
    return locust_worker_argv(str(plan.locustfile), master_host=master_host, master_port=port)


def locust_worker_argv(locustfile: str, *, master_host: str, master_port: int) -> list[str]:
    return [
        "locust", "-f", locustfile, "--worker", "--master-host", master_host,
        "--master-port", str(master_port), "--loglevel", "WARNING",
    ]  # fmt: skip


def worker_env(plan: LoadPlan, out_dir: Path) -> dict[str, str]:
    """What a worker must share with the master (the master refuses one whose ``LAB_LOAD_*`` differ).
    The record folder stays the master's: workers send their records to it."""
    planned = {k: v for k, v in os.environ.items() if k.startswith(PLAN_PREFIX)}
    env = {**planned, **_env(plan, out_dir)}
    return {k: v for k, v in sorted(env.items()) if k != "LAB_BENCH_RECORD_DIR"}


@dataclass(frozen=True)
class LiveView:
    """The per-second series of a run still going, every process's rows added up by second; t = 0
    is the earliest process's start. Rows before ``final_before_s`` can no longer change (in every
    process); later ones are still filling. Several processes' percentiles cannot be added: a row
    shows the highest of them (an upper bound), exact for the one process a live run uses."""

    started_monotonic: float | None
    rows: list[dict[str, Any]]
    final_before_s: int = 0

    def final_row(self, second: int) -> dict[str, Any] | None:
        """Second ``second``'s row once it is final (an empty second's: zeros); None before."""
        if second >= self.final_before_s:
            return None
        return next((row for row in self.rows if row["t"] == second), {"t": second})


COUNTED = ("offered", "ok", "failed", "timeouts", "unfinished", "not_sent")


def read_live(out_dir: Path) -> LiveView:
    documents = [json.loads(path.read_text()) for path in sorted(out_dir.glob("live-*.json"))]
    if not documents:
        return LiveView(started_monotonic=None, rows=[])
    started = min(float(d["started_monotonic"]) for d in documents)
    by_second: dict[int, dict[str, Any]] = {}
    final_before = []
    for document in documents:
        shift = round(float(document["started_monotonic"]) - started)
        final_before.append(int(document["final_before_s"]) + shift)
        for row in document["rows"]:
            _add_row(by_second.setdefault(row["t"] + shift, {"t": row["t"] + shift}), row)
    rows = [by_second[t] for t in sorted(by_second)]
    return LiveView(started_monotonic=started, rows=rows, final_before_s=min(final_before))


def _add_row(total: dict[str, Any], row: dict[str, Any]) -> None:
    for name in COUNTED:
        total[name] = total.get(name, 0) + row[name]
    for name in ("p50_ms", "p99_ms"):
        values = [v for v in (total.get(name), row[name]) if v is not None]
        total[name] = max(values) if values else None


def run_load(plan: LoadPlan, *, out_dir: Path) -> LoadResult:
    """Start the load, wait for it to end, and read it back."""
    return start_load(plan, out_dir=out_dir).finish()


def _argv(plan: LoadPlan) -> list[str]:
    users = plan.users_count
    argv = [
        sys.executable, "-m", "locust", "-f", str(plan.locustfile), plan.user_class,
        "--headless", "--host", plan.host, "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{round(plan.run_s + plan.deadline_s + STOP_MARGIN_S + SETUP_ALLOWANCE_S)}s",
        "--stop-timeout", str(round(plan.deadline_s + 1)), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    if plan.master_bind is not None:
        host, port = master_address(plan.master_bind)
        argv += ["--master", "--expect-workers", str(plan.processes)]
        argv += ["--master-bind-host", host, "--master-bind-port", str(port)]
    elif plan.processes > 1:
        argv += ["--processes", str(plan.processes)]
    return argv


def _env(plan: LoadPlan, out_dir: Path) -> dict[str, str]:
    env = {
        # gevent's default resolver hands every new connection's lookup to a thread pool, costly at
        # thousands of connections a second for the literal addresses the lab always uses.
        "GEVENT_RESOLVER": os.environ.get("GEVENT_RESOLVER", "block"),
        # The locustfile's load shape steers closed-loop users; an open loop follows its schedule.
        "LAB_SHAPE_USERS": str(plan.users),
        "LAB_SHAPE_DURATION_S": str(plan.run_s),
        **plan.env,
        "LAB_BENCH_RECORD_DIR": str(out_dir),
        "LAB_LOAD_DEADLINE_S": str(plan.deadline_s),
        "LAB_LOAD_WARMUP_S": str(plan.warmup_s),
        "LAB_LOAD_PROCESSES": str(plan.processes),
        "LAB_LOAD_DURATION_S": str(plan.run_s),
    }
    if plan.schedule is not None:
        env["LAB_LOAD_SCHEDULE"] = plan.schedule.to_json()
        env["LAB_SHAPE"] = "none"
    return env


def _documents(out_dir: Path) -> list[dict[str, Any]]:
    documents = [json.loads(path.read_text()) for path in sorted(out_dir.glob("recording-*.json"))]
    if not documents:
        raise LoadGeneratorError(f"the load generator wrote no recording:\n{_tail(out_dir / 'locust.log')}")
    return documents


def read_recording(out_dir: Path) -> Recording:
    """The merged recording of a finished run in ``out_dir`` (what an auditor counts answers from)."""
    return merged(Recording.from_json(d["recording"]) for d in _documents(out_dir))


def read_failure_reasons(out_dir: Path) -> Counter[str]:
    """Why requests failed in a finished run, all processes together (the first 20 reasons of each)."""
    reasons: Counter[str] = Counter()
    for document in _documents(out_dir):
        reasons.update(document.get("failure_reasons", {}))
    return reasons


def _read_back(out_dir: Path, *, processes: int) -> LoadResult:
    documents = _documents(out_dir)
    if len(documents) != processes:  # a part of the load would be missing from every number
        handed_in = f"{len(documents)} of {processes} load processes handed in a recording"
        raise LoadGeneratorError(f"{handed_in}:\n{_tail(out_dir / 'locust.log')}")
    return LoadResult(
        recording=merged(Recording.from_json(d["recording"]) for d in documents),
        started_monotonic=min(d["started_monotonic"] for d in documents),
        started_at_unix=min(d["started_at_unix"] for d in documents),
        processes=processes,
    )


def _tail(path: Path, *, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"
