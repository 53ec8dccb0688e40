"""The fault matrix: each component a design depends on, killed (SIGKILL) or paused (SIGSTOP) under
a short bounded load, then recovered, and what the clients and the stores saw, as numbers.

A *cell* is (design, variant, component, fault). Every cell runs the same timeline: an open-loop load
of :data:`RATE_PER_S` requests a second, each request with one overall deadline
(:data:`CLIENT_DEADLINE_S`, the flash-sale buyers' own timeout); the fault at :data:`FAULT_AT_S`; the
recovery at :data:`RECOVER_AT_S` (a restart after a kill, ``SIGCONT`` after a pause; a killed uvicorn
worker is restarted by uvicorn's own manager); the load goes on for :data:`AFTER_RECOVERY_S` after
the recovery is done (a restart that is slow on a busy machine lengthens the load, not shortens what
is seen after it); then the design settles (polled, bounded) and its auditor counts what was lost
and what was doubled.

Why these lengths prove what they must: the outage (two seconds) is twice the client deadline, so a
request held by a frozen or dead process runs out its deadline inside the outage, and a design that
stalls every request while one component is away shows late answers; the load after the recovery
is twice the deadline again, so a request sent right after it gets its whole deadline to be
answered before the load ends, and "served again" is seen rather than assumed. The second before
the fault is the design running normally, warmed by one request through the whole flow.

The targets (:func:`violations`), for the hardened variants: no ``5xx`` other than ``503``; every
``429`` and ``503`` with ``Retry-After``; every other request answered within the deadline, except
those the faulted process held at the moment of the fault (it cannot answer what it held when it
was killed or frozen); nothing lost or doubled beyond the bound the design's docs state (each cell
says which); and served again after the recovery. Naive cells stand beside them where the fault is
the lesson; their numbers are shown, not judged.

The test (``tests/integration/test_fault_matrix.py``) and the bench
(:func:`loadtests.faults.bench.run_fault_matrix`, which writes ``docs/results/faults.md``) both run
:func:`run_cell`, through :mod:`loadtests.faults.scenarios`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import httpx

from loadtests.designs import ORDERS

Fault = Literal["kill", "stop"]
FAULTS: tuple[Fault, ...] = ("kill", "stop")

# One client deadline for every design: the flash-sale buyers' timeout, the lab's one stated
# deadline of a client (a frontend that gives up and shows an error).
CLIENT_DEADLINE_S = ORDERS.deadline_s
RATE_PER_S = 50
FAULT_AT_S = 1.0
RECOVER_AT_S = 3.0
AFTER_RECOVERY_S = 2 * CLIENT_DEADLINE_S
# However late the recovery, the load stops here: the most requests a cell sends is bounded.
LOAD_MAX_S = 20.0
MOST_REQUESTS = int(RATE_PER_S * LOAD_MAX_S)
# Answers that may take longer than the deadline to come back on a 2-core machine under load, when
# the deadline itself has already passed: the client gave up at the deadline, this is bookkeeping.
DRAIN_S = 2.0

OUTCOMES = ("2xx", "3xx", "4xx", "429", "503", "5xx", "timeout", "no answer")


@dataclass(frozen=True)
class Cell:
    design: str
    variant: str
    component: str
    fault: Fault
    # Naive cells only: what the fault shows about the naive design.
    lesson: str = ""

    @property
    def id(self) -> str:
        return f"{self.design}-{self.variant}-{self.component}-{self.fault}"


@dataclass(frozen=True)
class Answer:
    sent_at: float
    done_at: float
    outcome: str
    status: int | None = None
    retry_after: bool = False
    served: bool = False  # the design's own notion of "did what was asked" (a checked 429 is one)


def classify(status: int) -> str:
    if status in (429, 503):
        return str(status)
    return f"{status // 100}xx" if status // 100 in (2, 3, 4) else "5xx"


@dataclass(frozen=True)
class Bound:
    """What the docs allow a cell to lose or double, per kind of data, and why (0 unless named)."""

    lost: Mapping[str, int] = field(default_factory=dict)
    doubled: Mapping[str, int] = field(default_factory=dict)
    why: str = ""


@dataclass
class Audit:
    """What a design's auditor found after the cell: its own numbers, and the lost and doubled data."""

    numbers: dict[str, int]
    lost: dict[str, int]
    doubled: dict[str, int]
    bound: Bound = field(default_factory=Bound)


class Target(Protocol):
    """A component the matrix can fault and recover."""

    def fault(self, fault: Fault) -> None: ...

    def recover(self, fault: Fault) -> None: ...


class Scenario(Protocol):
    """One design's side of a cell: what it runs, what one request is, and how it is audited."""

    @property
    def base_url(self) -> str: ...

    def targets(self) -> Mapping[str, Target]: ...

    async def prepare(self, client: httpx.AsyncClient) -> None: ...

    async def send(self, client: httpx.AsyncClient, number: int) -> httpx.Response: ...

    def served(self, response: httpx.Response) -> bool: ...

    async def before_fault(self, component: str, fault: Fault) -> None: ...

    async def audit(self, answers: list[Answer], timeline: Timeline) -> Audit: ...


@dataclass
class Timeline:
    """Seconds since the load started."""

    fault_at: float | None = None
    recovered_at: float | None = None
    error: str | None = None
    done: bool = False  # the fault and the recovery are over, or failed

    @property
    def load_ends_at(self) -> float:
        """Where the load stops once :attr:`done`: a while after the recovery, or at once without one."""
        return 0.0 if self.recovered_at is None else self.recovered_at + AFTER_RECOVERY_S


@dataclass
class CellResult:
    cell: Cell
    answers: dict[str, int]
    without_retry_after: int
    late_beyond_fault: int
    held_at_fault: int
    recovered_s: float | None
    slowest_ms: float
    audit: Audit
    timeline: Timeline
    violations: list[str] = field(default_factory=list)
    took_s: float = 0.0  # the whole cell: preparing, the load, settling and the audit

    @property
    def holds(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cell"]["id"] = self.cell.id
        data["holds"] = self.holds
        return data


# -- the load ------------------------------------------------------------------------------------


async def one_request(scenario: Scenario, client: httpx.AsyncClient, number: int, t0: float) -> Answer:
    """One request under the overall deadline (httpx's own timeouts bound each socket operation only)."""
    sent = time.monotonic() - t0
    try:
        async with asyncio.timeout(CLIENT_DEADLINE_S):
            response = await scenario.send(client, number)
    except TimeoutError:
        return Answer(sent_at=sent, done_at=time.monotonic() - t0, outcome="timeout")
    except httpx.TransportError:
        return Answer(sent_at=sent, done_at=time.monotonic() - t0, outcome="no answer")
    return Answer(
        sent_at=sent,
        done_at=time.monotonic() - t0,
        outcome=classify(response.status_code),
        status=response.status_code,
        retry_after="retry-after" in response.headers,
        served=scenario.served(response),
    )


async def drive(scenario: Scenario, client: httpx.AsyncClient, t0: float, timeline: Timeline) -> list[Answer]:
    """:data:`RATE_PER_S` requests a second on a schedule, whatever the answers do (open loop), until
    :data:`AFTER_RECOVERY_S` after the recovery (at once when the fault could not be applied)."""
    tasks = []
    for number in range(MOST_REQUESTS):
        at = number / RATE_PER_S
        if timeline.done and at >= timeline.load_ends_at:
            break
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        tasks.append(asyncio.create_task(one_request(scenario, client, number, t0)))
    return list(await asyncio.gather(*tasks))


async def inject(scenario: Scenario, cell: Cell, t0: float, timeline: Timeline) -> None:
    """The fault at :data:`FAULT_AT_S` and the recovery at :data:`RECOVER_AT_S`, into ``timeline``."""
    target = scenario.targets()[cell.component]
    try:
        await asyncio.sleep(max(0.0, t0 + FAULT_AT_S - time.monotonic()))
        await scenario.before_fault(cell.component, cell.fault)
        await asyncio.to_thread(target.fault, cell.fault)
        timeline.fault_at = time.monotonic() - t0
        await asyncio.sleep(max(0.0, t0 + RECOVER_AT_S - time.monotonic()))
        await asyncio.to_thread(target.recover, cell.fault)
        timeline.recovered_at = time.monotonic() - t0
    except Exception as exc:  # a fault that could not be applied is reported in its cell
        timeline.error = f"{type(exc).__name__}: {exc}"
    finally:
        timeline.done = True


def client_for(base_url: str) -> httpx.AsyncClient:
    """A new connection per request, as from many clients: a fault then holds only what was in flight
    on the faulted process, not every later request a kept-alive connection would have sent it."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=CLIENT_DEADLINE_S + DRAIN_S)


async def run_cell(cell: Cell, scenario: Scenario) -> CellResult:
    started = time.monotonic()
    async with client_for(scenario.base_url) as client:
        await scenario.prepare(client)
        t0 = time.monotonic()
        timeline = Timeline()
        answers, _ = await asyncio.gather(
            drive(scenario, client, t0, timeline), inject(scenario, cell, t0, timeline)
        )
    audit = await scenario.audit(answers, timeline)
    result = summarize(cell, answers, timeline, audit)
    result.violations = violations(result)
    result.took_s = round(time.monotonic() - started, 1)
    return result


# -- what the answers say ----------------------------------------------------------------------


def summarize(cell: Cell, answers: list[Answer], timeline: Timeline, audit: Audit) -> CellResult:
    counts = Counter(answer.outcome for answer in answers)
    held = held_at(answers, timeline.fault_at)
    failed = [a for a in answers if a.outcome in ("timeout", "no answer")]
    return CellResult(
        cell=cell,
        answers={outcome: counts.get(outcome, 0) for outcome in OUTCOMES},
        without_retry_after=sum(1 for a in answers if a.outcome in ("429", "503") and not a.retry_after),
        late_beyond_fault=max(0, len(failed) - held),
        held_at_fault=held,
        recovered_s=recovery_s(answers, timeline.recovered_at),
        slowest_ms=round(max((a.done_at - a.sent_at for a in answers), default=0.0) * 1000, 1),
        audit=audit,
        timeline=timeline,
    )


def held_at(answers: list[Answer], moment: float | None) -> int:
    """Requests in flight at ``moment``: what a process killed or frozen then may have been holding."""
    if moment is None:
        return 0
    return sum(1 for a in answers if a.sent_at <= moment < a.done_at)


def recovery_s(answers: list[Answer], recovered_at: float | None) -> float | None:
    """From the recovery action to the first served answer to a request sent after it."""
    if recovered_at is None:
        return None
    after = [a.done_at for a in answers if a.served and a.sent_at >= recovered_at]
    return round(min(after) - recovered_at, 3) if after else None


def violations(result: CellResult) -> list[str]:
    """The hardened targets a cell misses, in words (naive cells are not judged: empty)."""
    if result.cell.variant != "hardened":
        return []
    found = []
    if result.timeline.error:
        found.append(f"the fault could not be applied: {result.timeline.error}")
    if result.answers["5xx"]:
        found.append(f"{result.answers['5xx']} answers were a 5xx other than 503")
    if result.without_retry_after:
        found.append(f"{result.without_retry_after} 429/503 answers had no Retry-After")
    if result.late_beyond_fault:
        found.append(
            f"{result.late_beyond_fault} requests got no answer within {CLIENT_DEADLINE_S} s beyond the "
            f"{result.held_at_fault} in flight at the fault"
        )
    found += _beyond_bound(result.audit)
    if result.recovered_s is None:
        found.append("nothing was served after the recovery")
    return found


def _beyond_bound(audit: Audit) -> list[str]:
    found = []
    for what, counts, allowed in (
        ("lost", audit.lost, audit.bound.lost),
        ("doubled", audit.doubled, audit.bound.doubled),
    ):
        found += [
            f"{what} {count} {name}, beyond the bound of {allowed.get(name, 0)}"
            for name, count in counts.items()
            if count > allowed.get(name, 0)
        ]
    return found


# -- settling ----------------------------------------------------------------------------------


async def settle(read: Callable[[], Awaitable[Any]], *, done: Callable[[Any], bool], timeout_s: float) -> Any:
    """Poll ``read`` until ``done`` holds for it and two readings agree, or the time is up; the last
    reading either way (the audit then shows what never settled)."""
    deadline = time.monotonic() + timeout_s
    previous = None
    while True:
        current = await read()
        if (done(current) and current == previous) or time.monotonic() > deadline:
            return current
        previous = current
        await asyncio.sleep(0.5)
