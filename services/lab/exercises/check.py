"""``lab check``: the servers a check needs, the variant's preflight, and its stages in order.

A check runs on servers of its own (a private state directory, free ports), so it never disturbs a
lab the learner has up, and stops them again whatever happens: nothing is left running.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from services.core.learner import MINE, LearnerSlot, VariantLoadError
from services.core.settings import invalid_settings
from services.lab.exercises.serving import VariantBroken, serve_variant, startup_failure
from services.lab.exercises.stages import CheckContext, Exercise, Stage, StageResult, run_stages
from services.lab.registry import learner_service
from services.lab.settings import LabSettings
from services.lab.standalone import AppDidNotStart
from services.lab.supervisor import Supervisor, learner_slot_of

VARIANTS = ("mine", "naive", "hardened")
SERVER_PORTS = ("postgres_port", "redis_port", "kafka_port")


class CheckInputError(ValueError):
    """A request ``lab check`` cannot act on (unknown design, variant or stage)."""


@dataclass(frozen=True)
class CheckPlan:
    exercise: Exercise
    variant: str
    stages: tuple[Stage, ...]


def plan_check(exercises: dict[str, Exercise], design: str, *, variant: str, stage: int | None) -> CheckPlan:
    exercise = exercises.get(design)
    if exercise is None:
        raise CheckInputError(f"unknown design {design!r}; choose one of {', '.join(exercises)}")
    if variant not in VARIANTS:
        raise CheckInputError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    try:
        stages = exercise.stages if stage is None else (exercise.stage(stage),)
    except ValueError as exc:
        raise CheckInputError(str(exc)) from None
    return CheckPlan(exercise=exercise, variant=variant, stages=stages)


def learner_slot(exercise: Exercise) -> LearnerSlot:
    try:
        return learner_slot_of(learner_service(exercise.design))
    except ValidationError as exc:  # a malformed LAB_<DESIGN>_* setting
        raise CheckInputError(invalid_settings(exc)) from None


def preload(plan: CheckPlan, *, timeout_s: float) -> None:
    """Import the learner's variant first, in a process of its own: a syntax error is named before
    any server starts, and a module that hangs while importing is stopped after ``timeout_s``."""
    if plan.variant != MINE:
        return
    slot = learner_slot(plan.exercise)
    argv = [sys.executable, "-m", "services.lab.exercises.preload", slot.setting, slot.target]
    try:
        loaded = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise VariantLoadError(
            f"{slot.target}: importing it took longer than {timeout_s:g} s (LAB_CHECK_STARTUP_TIMEOUT_S); "
            "look for work that waits at module level"
        ) from None
    if loaded.returncode != 0:
        lines = loaded.stderr.strip().splitlines()
        raise VariantLoadError(lines[-1] if lines else f"{slot.target}: import exited {loaded.returncode}")


async def preflight(plan: CheckPlan, ctx: CheckContext) -> None:
    """One single-process start of the variant: a failing start-up exits at once (a multi-worker
    server would restart its workers instead), and is reported as :class:`VariantBroken`."""
    with serve_variant(ctx, plan.exercise.factory):
        pass


@contextmanager
def check_servers(settings: LabSettings) -> Iterator[CheckContext]:
    """PostgreSQL, Redis and the broker of this check alone, stopped at the end."""
    state_dir = Path(tempfile.mkdtemp(prefix="check-", dir=_ensure(settings.state_dir)))
    # Free ports, unless the learner named one (then a port in use is reported, not worked around).
    ports = {f: getattr(settings, f) if f in settings.model_fields_set else 0 for f in SERVER_PORTS}
    private = settings.model_copy(update={"state_dir": state_dir, **ports})
    supervisor = Supervisor(private, services=(), workers=())
    try:
        endpoints = supervisor.up().endpoints
        yield CheckContext(
            infra=endpoints,
            variant="",
            log_dir=state_dir / "logs",
            signal_infra=supervisor.signal_component,
            redis_components=tuple(supervisor.redis_components()),
            startup_timeout_s=settings.check_startup_timeout_s,
        )
    finally:
        supervisor.down()
        _keep_only_logs(state_dir)


def _keep_only_logs(state_dir: Path) -> None:
    """The servers' data is throwaway; the logs stay, for a stage that failed."""
    for path in state_dir.iterdir():
        if path.name != "logs":
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_check(
    plan: CheckPlan, ctx: CheckContext, *, on_result: Callable[[StageResult], None] | None = None
) -> list[StageResult]:
    """Preflight, then the plan's stages; :class:`VariantBroken` when the variant cannot start."""
    ctx.variant = plan.variant
    ctx.log_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> list[StageResult]:
        await preflight(plan, ctx)
        return await run_stages(plan.stages, ctx, on_result=on_result)

    try:
        return asyncio.run(run())
    except AppDidNotStart as exc:
        raise VariantBroken(startup_failure(ctx, str(exc))) from None


def all_passed(results: Sequence[StageResult]) -> bool:
    return bool(results) and all(r.outcome == "PASS" for r in results)
