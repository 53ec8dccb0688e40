"""What the bench knows of a design: its named scenarios, each a question with its targets, load,
goals, reset and audit. A design's package (``loadtests/<design>/scenarios.py``) declares them; the
runner (:mod:`loadtests.bench`) runs any of them the same way and the report writer writes them the
same way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.engine.lab import AppSpec, Endpoints, RunningLab


@dataclass(frozen=True)
class BenchContext:
    lab: RunningLab

    @property
    def endpoints(self) -> Endpoints:
        return self.lab.endpoints


@dataclass(frozen=True)
class AuditResult:
    """The design's invariants as numbers, and whether they hold (every one at its correct value);
    ``holds`` is None where nothing is claimed (a reference endpoint)."""

    invariants: Mapping[str, float | int]
    holds: bool | None
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return {"invariants": dict(self.invariants), "holds": self.holds, "explanation": self.explanation}


@dataclass(frozen=True)
class Target:
    """One column of a scenario: ``label`` in the report, served by the lab's ``component``.

    ``app`` is set for what the lab does not run by itself (a reference endpoint, or a variant under
    other settings): the runner asks the lab to serve it beside its own services. ``variant`` is the
    schema and the flaw the reset and the audit look at (``naive``, ``hardened``); a target that is
    not ``audited`` claims no invariants.
    """

    label: str
    component: str
    variant: str
    app: AppSpec | None = None
    audited: bool = True


def reference_endpoint(label: str, *, design: str, app_factory: str, workers: int = 2) -> Target:
    """A target the lab serves beside its own services for a scenario, claiming no invariants; two
    workers by default, as the lab serves its variants."""
    return Target(
        label,
        f"{design}-{label}",
        "reference",
        app=AppSpec(app_factory, label, workers=workers),
        audited=False,
    )


Reset = Callable[[BenchContext, Target], None]
Audit = Callable[[BenchContext, Target, Path], AuditResult]
LiveAudit = Callable[[BenchContext, Target, Path], Mapping[str, int]]
"""What can be counted of a run still going, read-only and cheap (the live console reads it every
few seconds): counts whose correct value is 0, so one above 0 is an invariant broken, as it happens
(oversold units, customers charged twice, requests over-admitted). The run's :data:`Audit` still
gives the verdict, once everything has settled."""


def not_audited(_: BenchContext, target: Target, __: Path) -> AuditResult:
    return AuditResult(
        invariants={},
        holds=None,
        explanation=f"{target.label} is a reference endpoint: no invariants claimed",
    )


@dataclass(frozen=True)
class Sweep:
    """The offered rates of a capacity sweep: ``start``, then ``factor`` times more each step."""

    start: float
    factor: float
    steps: int


@dataclass(frozen=True)
class Goal:
    """A target for one ratio: ``numerator``'s ``metric`` over ``denominator``'s, in ``mode`` runs."""

    name: str
    numerator: str
    denominator: str
    metric: str  # a key of a run's "metrics": knee_rps, goodput_rps, p99_ms, system_us_per_request…
    goal: float
    mode: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    question: str
    what_to_watch: str
    targets: tuple[Target, ...]  # in report order; the last one runs twice for the A/A comparison
    locustfile: Path
    reset: Reset
    audit: Audit
    # How it is loaded by default: open loop ("rate" or "sweep") with ``open_user``, or "closed"
    # with ``closed_user`` (from ``closed_locustfile`` when it is another file).
    mode: str
    closed_user: str
    open_user: str | None = None
    closed_locustfile: Path | None = None
    rate: float = 200.0
    sweep: Sweep = field(default_factory=lambda: Sweep(start=100.0, factor=1.5, steps=6))
    users: int = 20
    deadline_s: float = 2.0  # the client's one overall deadline per request
    # The p99 a capacity is measured against: a redirect or a limiter check answers in milliseconds,
    # an order that calls a payment gateway in a few hundred.
    slo_p99_ms: float = 100.0
    warmup_s: float = 2.0  # trimmed from the start of each window
    goals: tuple[Goal, ...] = ()
    # Settings of the Locust users (e.g. the client timeout of the flash-sale buyers).
    load_env: Mapping[str, str] = field(default_factory=dict)
    # Settings the design's services need for the question to show in a short run; a bench or demo
    # sets them when the user has not, before it brings the lab up (a running lab keeps its own).
    lab_env: Mapping[str, str] = field(default_factory=dict)
    # A learner's own variant (``lab exercise start``), run only when asked for (``--variants``):
    # it is not among the default targets, since it exists only once a learner scaffolded it.
    learner: Target | None = None
    live_audit: LiveAudit | None = None

    def target(self, label: str) -> Target | None:
        known = (*self.targets, self.learner) if self.learner else self.targets
        return next((t for t in known if t.label == label), None)


@dataclass(frozen=True)
class BenchDesign:
    name: str
    scenarios: Mapping[str, Scenario]
    headline: str  # the scenario ``lab bench DESIGN`` runs when none is named

    @property
    def default(self) -> Scenario:
        return self.scenarios[self.headline]

    @property
    def deadline_s(self) -> float:
        """The client deadline of the design's headline scenario (what a buyer waits, for orders)."""
        return self.default.deadline_s
