"""Stages: the executable claims a variant of a design must hold, run in order against real servers.

A stage measures one number and compares it with its bound; a FAIL carries one hint (where to look,
not the answer). The same stage functions grade a learner's ``mine`` in ``lab check`` and prove the
``hardened`` variant in the integration tests.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.lab.exercises.scaffold import ScaffoldSpec
from services.lab.infra import InfraEndpoints

Outcome = Literal["PASS", "FAIL", "NOT RUN"]


@dataclass(frozen=True)
class Measured:
    """What a stage measured: ``value`` against ``bound`` (as text: ``== 100``), and whether it held."""

    value: float
    bound: str
    passed: bool
    detail: str = ""


@dataclass
class CheckContext:
    """What a stage needs: the servers, the variant under check, where its logs go, a memo for stages
    that read one run (the flash sale is run once for the stages that audit it), and a stack for
    services several stages share, closed when the stages are done."""

    infra: InfraEndpoints
    variant: str
    log_dir: Path
    variant_env: Mapping[str, str] = field(default_factory=dict)
    signal_infra: Callable[[str, int], None] | None = None  # ("redis", signal.SIGSTOP)
    redis_components: tuple[str, ...] = ("redis",)  # every node of a cluster: ("redis-1", ...)
    startup_timeout_s: float = 30.0
    memo: dict[str, Any] = field(default_factory=dict)
    shared: ExitStack = field(default_factory=ExitStack)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a service of this check: the servers, the variant's own settings, ``extra``."""
        return {**self.infra.as_env(), "LAB_LOG_LEVEL": "WARNING", **self.variant_env, **extra}


StageRun = Callable[[CheckContext], Awaitable[Measured]]


@dataclass(frozen=True)
class Stage:
    number: int
    claim: str
    hint: str
    run: StageRun


@dataclass(frozen=True)
class Exercise:
    scaffold: ScaffoldSpec  # the design, its port, and how its mine.py is written
    factory: str  # the design's app factory, module:function
    stages: tuple[Stage, ...]

    @property
    def design(self) -> str:
        return self.scaffold.design

    @property
    def title(self) -> str:
        return self.scaffold.title

    @property
    def opener(self) -> str:
        return self.scaffold.opener

    def stage(self, number: int) -> Stage:
        for stage in self.stages:
            if stage.number == number:
                return stage
        raise ValueError(f"{self.design} has no stage {number}; its stages are 1-{len(self.stages)}")


@dataclass(frozen=True)
class StageResult:
    number: int
    claim: str
    outcome: Outcome
    measured: Measured | None = None
    hint: str = ""
    seconds: float = 0.0
    error: str = ""  # why the stage could not run at all (it measured nothing)

    def to_json(self) -> dict[str, Any]:
        measured = self.measured
        return {
            "stage": self.number,
            "claim": self.claim,
            "outcome": self.outcome,
            "value": measured.value if measured else None,
            "bound": measured.bound if measured else None,
            "detail": measured.detail if measured else self.error,
            "hint": self.hint,
            "seconds": round(self.seconds, 2),
        }


async def run_stages(
    stages: Sequence[Stage], ctx: CheckContext, *, on_result: Callable[[StageResult], None] | None = None
) -> list[StageResult]:
    """Each stage in order until the first FAIL; the ones after it are NOT RUN (they build on it)."""
    results: list[StageResult] = []
    with ctx.shared:
        for stage in stages:
            if results and results[-1].outcome != "PASS":
                results.append(StageResult(stage.number, stage.claim, "NOT RUN"))
            else:
                results.append(await _run_one(stage, ctx))
            if on_result is not None:
                on_result(results[-1])
    return results


async def _run_one(stage: Stage, ctx: CheckContext) -> StageResult:
    started = time.monotonic()
    try:
        measured = await stage.run(ctx)
    except Exception as exc:  # a learner's variant may break a stage in any way; it is that stage's FAIL
        return _could_not_run(stage, ctx, exc, seconds=time.monotonic() - started)
    outcome: Outcome = "PASS" if measured.passed else "FAIL"
    return StageResult(
        stage.number,
        stage.claim,
        outcome,
        measured=measured,
        hint="" if measured.passed else stage.hint,
        seconds=time.monotonic() - started,
    )


def _could_not_run(stage: Stage, ctx: CheckContext, exc: Exception, *, seconds: float) -> StageResult:
    error = f"stage could not run: {type(exc).__name__}: {exc} (the services' logs: {ctx.log_dir})"
    return StageResult(stage.number, stage.claim, "FAIL", hint=stage.hint, seconds=seconds, error=error)


def at_most(value: float, bound: float, detail: str = "") -> Measured:
    return Measured(value=value, bound=f"<= {bound:g}", passed=value <= bound, detail=detail)


def at_least(value: float, bound: float, detail: str = "") -> Measured:
    return Measured(value=value, bound=f">= {bound:g}", passed=value >= bound, detail=detail)


def exactly(value: float, bound: float, detail: str = "") -> Measured:
    return Measured(value=value, bound=f"== {bound:g}", passed=value == bound, detail=detail)
