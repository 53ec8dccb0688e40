"""The engine inside Locust: open-loop arrivals, one overall deadline per request, exact recording.

Imported only by locustfiles (importing Locust monkey-patches the interpreter). A design's users
module defines what one request is, once, and gets both ways of loading it:

- :class:`OpenLoopUser`: one scheduler per load-generator process issues requests at the times the
  schedule says (``LAB_LOAD_SCHEDULE``), each in a greenlet of its own, whatever the answers do; the
  latency of a request is measured from its *intended* start, so a stall shows as the backlog real
  arrivals build (no coordinated omission). A bound on requests in flight
  (``LAB_LOAD_MAX_IN_FLIGHT``) keeps a dead server from costing the generator unbounded memory; a
  request it stops is counted ``not_sent``. When the schedule ends, requests in flight are waited for,
  up to the deadline, and what is still missing then is counted ``unfinished``. A run that ends
  before its schedule is through (ended early, or a process too short of CPU to keep up when the
  time ran out) counts every arrival it never issued as ``not_sent``: offered is always the whole
  schedule.
- closed-loop users (any ``FastHttpUser`` of the module): their requests are recorded through
  Locust's request event, exactly, from their real start; :func:`within_deadline` gives a closed-loop
  call the same overall deadline.

Every request has one deadline (``LAB_LOAD_DEADLINE_S``) for connect, send and answer together, kept
by a ``gevent.Timeout`` raising :class:`DeadlinePassed`: Locust's own timeouts bound each socket
operation, not the request. A request
past its deadline is a ``timeouts`` outcome, never a latency sample.

Each process hands its :class:`~loadtests.engine.recording.Recording` (and any document a users
module adds with :func:`add_record_source`) to the runner when the test stops: a single process
writes it to ``LAB_BENCH_RECORD_DIR``; a worker of a distributed run sends it to the master, which
writes it to its own, because workers may run on other machines (``--processes`` forks them here,
``locust --worker --master-host`` joins them from anywhere). The master asks for the records of
every worker before it stops, and refuses a worker whose plan (``LAB_LOAD_*``) is not its own: a
worker with another schedule or worker count would skew the run without a sign.

With ``LAB_LOAD_LIVE_S`` set (the live console sets it, a bench does not), each process also hands
in, that often, the per-second series so far (``live-<process>.json``) and its record sources'
documents as they stand, for a reader that watches the run while it happens. A row's percentiles
are computed once the second can no longer change, so the cost stays a few rows a tick.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import gevent
from gevent import GreenletExit
from gevent.pool import Group
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner

from loadtests.engine.generator import PLAN_PREFIX
from loadtests.engine.recording import Recording, Window, windows_of
from loadtests.engine.schedule import Schedule
from loadtests.engine.summary import series_row

DEFAULT_DEADLINE_S = 2.0
DEFAULT_MAX_IN_FLIGHT = 4096
RECORD_MESSAGE = "lab_record"
COLLECT_MESSAGE = "lab_collect"
# How long the master waits for the workers' records beyond their own stop (a slow network, a
# worker finishing its requests in flight).
COLLECT_MARGIN_S = 15.0

logger = logging.getLogger(__name__)


class DeadlinePassed(BaseException):
    """Raised into a request whose deadline passed. Not a ``gevent.Timeout``: Locust's HTTP client
    catches those and reports a failure; a deadline is an outcome of its own, and a ``BaseException``
    so that nothing on the way catches it."""


class RunClock:
    """This process's view of the run: when it started, what it records, and the knobs it read."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.started_at_unix = time.time()
        self.deadline_s = float(os.environ.get("LAB_LOAD_DEADLINE_S", DEFAULT_DEADLINE_S))
        self.schedule = _schedule_from_env()
        self.recording = Recording(_windows(self.schedule))
        self.failure_reasons: Counter[str] = Counter()  # why requests failed, for the report
        # Where an open loop's scheduler got to (the intended start of the last request it issued;
        # infinite once it issued them all): a second before it may still get requests.
        self.scheduled_s = math.inf if self.schedule is None else 0.0

    def now_s(self) -> float:
        return time.monotonic() - self.started

    def begin(self) -> None:
        """Start the clock again, now: an open loop's t = 0 is when its schedule begins, after its
        users' set-up (``on_start``), which would otherwise make the first arrivals late."""
        self.started = time.monotonic()
        self.started_at_unix = time.time()
        self.announce()
        _start_live(self)

    def announce(self) -> None:
        """Tell the runner when this process's run began: it starts a chaos timeline and marks the CPU
        window on this clock."""
        deliver("clock", {**self.moments(), "plan": load_plan()})

    def moments(self) -> dict[str, float]:
        """When the run began, on the machine's monotonic clock (shared by every process) and the wall
        clock."""
        return {"started_monotonic": self.started, "started_at_unix": self.started_at_unix}


_clock: RunClock | None = None


def clock() -> RunClock:
    if _clock is None:
        raise RuntimeError("the load engine's clock starts with the test (events.test_start)")
    return _clock


def _schedule_from_env() -> Schedule | None:
    text = os.environ.get("LAB_LOAD_SCHEDULE")
    return Schedule.from_json(text) if text else None


def _windows(schedule: Schedule | None) -> list[Window]:
    warmup_s = float(os.environ.get("LAB_LOAD_WARMUP_S", "0"))
    if schedule is None:  # closed loop: one window over the run's stated duration
        duration_s = float(os.environ.get("LAB_LOAD_DURATION_S", "inf"))
        return windows_of([(0.0, duration_s, None)], warmup_s=warmup_s)
    phases = [(s, e, p.rate) for (s, e), p in zip(schedule.phase_bounds(), schedule.phases, strict=True)]
    return windows_of(phases, warmup_s=warmup_s)


def load_plan() -> dict[str, str]:
    """What every process of one run must agree on: the ``LAB_LOAD_*`` environment."""
    return {name: value for name, value in sorted(os.environ.items()) if name.startswith(PLAN_PREFIX)}


# -- records: what each process hands the runner ----------------------------------------------

_environment: Environment | None = None
_record_sources: dict[str, Callable[[], dict[str, Any] | None]] = {}
_delivered = False  # this process's final records went out (once per run)
_workers_delivered: set[str] = set()  # on a master: the workers whose recording arrived
_refused_plan = False  # on a master: a worker's plan was not its own, and the run is being ended


def add_record_source(name: str, source: Callable[[], dict[str, Any] | None]) -> None:
    """A document of a users module's own (``None``: nothing this time), handed to the runner with
    the recording as ``<name>-<process>.json``."""
    _record_sources[name] = source


def deliver(name: str, document: dict[str, Any]) -> None:
    """To ``LAB_BENCH_RECORD_DIR`` here, or from a worker to its master (which may be elsewhere)."""
    runner = _environment.runner if _environment is not None else None
    if isinstance(runner, WorkerRunner):
        sent = {"name": name, "document": document, "sent_monotonic": time.monotonic()}
        runner.send_message(RECORD_MESSAGE, sent)
    else:
        _write_record(name, str(os.getpid()), document)


def _write_record(name: str, process: str, document: dict[str, Any]) -> None:
    directory = os.environ.get("LAB_BENCH_RECORD_DIR")
    if directory is not None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", process)  # a worker's id holds its host name
        path = Path(directory, f"{name}-{safe}.json")
        # Written aside and renamed, as services.core.files.write_whole does: a live reader never
        # sees half a document. Not that function itself: Locust puts a locustfile's own folder
        # first on the path, where loadtests/orders/services.py hides the services package.
        staging = path.with_name(f".{path.name}.tmp")
        staging.write_text(json.dumps(document))
        staging.replace(path)


def _deliver_final_records() -> None:
    global _delivered
    _stop_live()
    if _clock is None or _delivered:
        return
    _delivered = True
    deliver(
        "recording",
        {
            **_clock.moments(),
            "recording": _clock.recording.to_json(),
            "failure_reasons": dict(_clock.failure_reasons.most_common(20)),
        },
    )
    for name, source in _record_sources.items():
        if (document := source()) is not None:
            deliver(name, document)


# -- live: the series so far, while the run lasts ---------------------------------------------


class LiveSeries:
    """The rows of this process's per-second series, and the seconds that can no longer change
    (``final_before_s``), whose rows are computed once. A second is final once every request
    intended in it was issued and its deadline, counted from that intended start, has passed: its
    answer, timeout or refusal is recorded by then."""

    def __init__(self, run: RunClock) -> None:
        self._run = run
        self._final: dict[int, dict[str, Any]] = {}

    def final_before_s(self) -> int:
        run = self._run
        return math.floor(min(run.now_s() - run.deadline_s, run.scheduled_s))

    def document(self, *, finished: bool = False) -> dict[str, Any]:
        """What a tick hands in; ``finished``: the run is over, every second final."""
        final_before = math.inf if finished else self.final_before_s()
        rows = []
        for second, tally in sorted(self._run.recording.seconds.items()):
            row = self._final.get(second) or series_row(second, tally)
            if second < final_before:
                self._final[second] = row
            rows.append(row)
        last = int(rows[-1]["t"] or 0) + 1 if rows else 0
        # Once over, every second the run lasted is final, those in which nothing happened too.
        lasted = math.ceil(min(self._run.now_s(), float(os.environ.get("LAB_LOAD_DURATION_S", "inf"))))
        return {
            **self._run.moments(),
            "at_s": round(self._run.now_s(), 3),
            "final_before_s": max(last, lasted) if finished else final_before,
            "finished": finished,
            "rows": rows,
        }


def _publish_live(live: LiveSeries, period_s: float) -> None:
    while True:
        gevent.sleep(period_s)
        deliver("live", live.document())
        for name, source in _record_sources.items():
            if (document := source()) is not None:
                deliver(name, document)


def _start_live(run: RunClock) -> None:
    global _live
    period = os.environ.get("LAB_LOAD_LIVE_S")
    if period and _live is None:
        series = LiveSeries(run)
        _live = (series, gevent.spawn(_publish_live, series, float(period)))


def _stop_live() -> None:
    """The run is over: the last live document, every second final."""
    global _live
    if _live is not None:
        series, ticks = _live
        ticks.kill(block=False)
        _live = None
        deliver("live", series.document(finished=True))


_live: tuple[LiveSeries, gevent.Greenlet] | None = None


def _receive_record(environment: Environment, msg: Message, **_: Any) -> None:
    """On the master: a worker's record, its moments moved onto this machine's monotonic clock (the
    worker's may count from another boot; the message's transit is the error, well under a ms here)."""
    data, worker = msg.data, str(msg.node_id)
    document = dict(data["document"])
    if "started_monotonic" in document:
        document["started_monotonic"] += time.monotonic() - data["sent_monotonic"]
    if data["name"] == "clock" and document.get("plan") != load_plan():
        _refuse_worker(environment, worker, document.get("plan"))
    if data["name"] == "recording":
        _workers_delivered.add(worker)
    _write_record(data["name"], worker, document)


def _refuse_worker(environment: Environment, worker: str, plan: object) -> None:
    global _refused_plan
    _refused_plan = True
    logger.error("worker_plan_differs worker=%s worker_plan=%s master_plan=%s", worker, plan, load_plan())
    environment.process_exit_code = 3
    assert environment.runner is not None
    gevent.spawn(environment.runner.quit)


def _collect_from_workers(runner: MasterRunner) -> None:
    """Ask every worker that has not delivered yet to stop and deliver, and wait for it: a headless
    master stops before its workers do, and would otherwise quit before their records arrive."""
    if _refused_plan:
        return
    expected = {client.id for client in runner.clients.all}
    for worker in expected - _workers_delivered:
        runner.send_message(COLLECT_MESSAGE, client_id=worker)
    deadline = time.monotonic() + runner.environment.stop_timeout + COLLECT_MARGIN_S
    while expected - _workers_delivered and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if missing := expected - _workers_delivered:
        logger.error("worker_records_missing workers=%s", sorted(missing))


def _stop_and_deliver(environment: Environment, msg: Message, **_: Any) -> None:
    assert environment.runner is not None
    environment.runner.stop()  # its test_stop delivers; a runner already stopped has delivered
    _deliver_final_records()


@events.init.add_listener  # type: ignore[untyped-decorator]
def _route_records(environment: Environment, **_: Any) -> None:
    global _environment
    _environment = environment
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(RECORD_MESSAGE, _receive_record)
    elif isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(COLLECT_MESSAGE, _stop_and_deliver, concurrent=True)


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _start_clock(environment: Environment, **_: Any) -> None:
    global _clock, _delivered
    _clock, _delivered = RunClock(), False
    _workers_delivered.clear()
    if _clock.schedule is None and not isinstance(environment.runner, MasterRunner):
        _clock.announce()  # an open loop announces its clock when its schedule begins
        _start_live(_clock)


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _hand_over_records(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        _collect_from_workers(environment.runner)  # the master issues nothing: its workers do
    else:
        _deliver_final_records()


@events.request.add_listener  # type: ignore[untyped-decorator]
def _record_closed_loop(response_time: float, exception: BaseException | None, **_: Any) -> None:
    """Every request of a closed-loop user, from its real start. An open-loop run records only its
    scheduled requests (a user's set-up, such as creating links, is not what is measured)."""
    current = gevent.getcurrent()
    if exception is not None and _clock is not None:
        _clock.failure_reasons[_reason(exception)] += 1
    if getattr(current, "lab_open_loop", False):
        if exception is not None:
            current.lab_failed = True
        return
    if _clock is None or _clock.schedule is not None:
        return
    answered_s = _clock.now_s()
    started_s = answered_s - response_time / 1000
    _clock.recording.offered(intended_s=started_s, sent_s=started_s)
    _clock.recording.answered(intended_s=started_s, answered_s=answered_s, ok=exception is None)


def _reason(exception: BaseException) -> str:
    return f"{type(exception).__name__}: {exception}"[:200]


@contextmanager
def within_deadline() -> Iterator[None]:
    """Give a closed-loop call the run's one overall deadline; past it, a ``timeouts`` outcome."""
    run = clock()
    started_s = run.now_s()
    try:
        with gevent.Timeout(run.deadline_s, DeadlinePassed):
            yield
    except DeadlinePassed:
        run.recording.offered(intended_s=started_s, sent_s=started_s)
        run.recording.ended("timeouts", intended_s=started_s, at_s=run.now_s())


class OpenLoopUser(FastHttpUser):
    """One per load-generator process: issues :meth:`send` on the schedule. A subclass implements
    :meth:`send` (one request with ``catch_response`` marking success or failure)."""

    abstract = True
    concurrency = DEFAULT_MAX_IN_FLIGHT  # the HTTP pool's connections: never the bound that binds
    worker_count: ClassVar[int] = int(os.environ.get("LAB_LOAD_PROCESSES", "1"))

    def send(self) -> None:
        raise NotImplementedError

    @task
    def follow_schedule(self) -> None:
        run = clock()
        if run.schedule is None:
            raise RuntimeError("an open-loop user needs LAB_LOAD_SCHEDULE")
        in_flight = Group()
        bound = int(os.environ.get("LAB_LOAD_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT))
        run.begin()
        arrivals = iter(run.schedule.arrivals(worker=self._worker_index(), workers=self.worker_count))
        waiting_for: float | None = None  # the arrival the scheduler sleeps until
        try:
            for waiting_for in arrivals:
                gevent.sleep(max(0.0, waiting_for - run.now_s()))
                run.scheduled_s = waiting_for
                if len(in_flight) >= bound:
                    _not_sent(run, waiting_for)
                else:
                    in_flight.spawn(self._send_one, run, waiting_for)
                waiting_for = None
            run.scheduled_s = math.inf  # every request of the schedule issued
            _wait_for(in_flight, run)
        except GreenletExit:
            # The run ended while this process was still behind its schedule (a generator short of
            # CPU, or a run ended early): what it never issued was offered all the same, not sent.
            for intended_s in ([waiting_for] if waiting_for is not None else []) + list(arrivals):
                _not_sent(run, intended_s)
            _give_up_on(in_flight, run)
            raise
        gevent.sleep(float("inf"))  # the run's time is up soon; nothing more to issue

    def _worker_index(self) -> int:
        return max(0, int(getattr(self.environment.runner, "worker_index", 0)))

    def _send_one(self, run: RunClock, intended_s: float) -> None:
        current = gevent.getcurrent()
        current.lab_open_loop = True
        current.lab_intended_s = intended_s
        run.recording.offered(intended_s=intended_s, sent_s=run.now_s())
        remaining_s = intended_s + run.deadline_s - run.now_s()
        try:
            with gevent.Timeout(max(remaining_s, 0.001), DeadlinePassed):
                self.send()
        except DeadlinePassed:
            run.recording.ended("timeouts", intended_s=intended_s, at_s=run.now_s())
            return
        failed = getattr(current, "lab_failed", False)
        run.recording.answered(intended_s=intended_s, answered_s=run.now_s(), ok=not failed)


def _not_sent(run: RunClock, intended_s: float) -> None:
    run.recording.offered(intended_s=intended_s, sent_s=run.now_s())
    run.recording.ended("not_sent", intended_s=intended_s, at_s=run.now_s())


def _wait_for(in_flight: Group, run: RunClock) -> None:
    """Requests still out when the schedule ends get until their deadline, then count as unfinished."""
    in_flight.join(timeout=run.deadline_s + 0.5)
    _give_up_on(in_flight, run)


def _give_up_on(in_flight: Group, run: RunClock) -> None:
    # A greenlet that just finished stays in the group until the hub runs its discard callback:
    # it recorded its own outcome, and is not counted twice.
    for greenlet in [g for g in in_flight if not g.dead]:
        run.recording.ended("unfinished", intended_s=greenlet.lab_intended_s, at_s=run.now_s())
    in_flight.kill(block=False)
