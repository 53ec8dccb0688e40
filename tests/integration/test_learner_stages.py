"""The exercises' stages as executable claims, on the session's servers: every design's hardened
variant passes every stage, its naive variant fails the first one with the number, a half fix passes
the stages it should and fails the next, and a freshly scaffolded variant serves the contract and
fails like naive.

Each design's full stage list runs once (against hardened); the other variants run only as far as
their first failure, which is where ``lab check`` stops too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.lab.exercises import exercises
from services.lab.exercises.orderflow import open_sale, place_order, run_orders_lab
from services.lab.exercises.scaffold import scaffold_source
from services.lab.exercises.stages import CheckContext, StageResult, run_stages
from services.lab.infra import InfraEndpoints
from services.lab.settings import LabSettings
from services.lab.supervisor import Supervisor

pytestmark = pytest.mark.integration

MakeContext = Callable[..., CheckContext]
HALF_FIXES = "tests.support.learner_variants"


@pytest.fixture
def context(infra: InfraEndpoints, lab_settings: LabSettings, tmp_path: Path) -> MakeContext:
    """A check's context on the session's servers; ``env`` goes to every service the stages start."""
    servers = Supervisor(lab_settings, services=(), workers=())

    def make(variant: str, **env: str) -> CheckContext:
        return CheckContext(
            infra=infra,
            variant=variant,
            log_dir=tmp_path,
            variant_env=env,
            signal_infra=servers.signal_component,
        )

    return make


async def run(design: str, ctx: CheckContext) -> list[StageResult]:
    return await run_stages(exercises()[design].stages, ctx)


def outcomes(results: list[StageResult]) -> list[str]:
    return [r.outcome for r in results]


def value_of(result: StageResult) -> float:
    assert result.measured is not None, result.to_json()
    return result.measured.value


def first_failure(results: list[StageResult]) -> StageResult:
    return next(r for r in results if r.outcome == "FAIL")


@pytest.mark.parametrize("design", ["ratelimit", "shortener", "orders"])
async def test_hardened_passes_every_stage(design: str, context: MakeContext) -> None:
    results = await run(design, context("hardened"))

    assert outcomes(results) == ["PASS"] * len(exercises()[design].stages), [r.to_json() for r in results]


@pytest.mark.parametrize(
    ("design", "number", "measured"),
    [
        ("ratelimit", 1, lambda v: v > 100),
        ("shortener", 1, lambda v: v == 1),
        ("orders", 1, lambda v: v > 0),
    ],
)
async def test_naive_fails_its_first_stage_with_the_number(
    design: str, number: int, measured: Callable[[float], bool], context: MakeContext
) -> None:
    results = await run(design, context("naive"))

    failed = first_failure(results)
    assert failed.number == number
    assert measured(value_of(failed)), failed.to_json()
    assert failed.hint
    assert outcomes(results)[number:] == ["NOT RUN"] * (len(results) - number)


async def test_a_shared_counter_with_a_fixed_window_is_exact_across_workers_but_not_at_the_edge(
    context: MakeContext,
) -> None:
    ctx = context("mine", LAB_RATELIMIT_MINE=f"{HALF_FIXES}:open_shared_fixed_window")

    results = await run("ratelimit", ctx)

    assert outcomes(results)[:2] == ["PASS", "FAIL"], [r.to_json() for r in results]
    assert value_of(results[1]) > 10


async def test_the_orders_row_lock_stops_the_oversell_but_not_the_double_charges(
    context: MakeContext,
) -> None:
    ctx = context(
        "mine", LAB_ORDERS_MINE="services.orders.app:open_naive_flow", LAB_ORDERS_NAIVE_LOCKING="row-lock"
    )

    results = await run("orders", ctx)

    assert outcomes(results)[:2] == ["PASS", "FAIL"], [r.to_json() for r in results]
    assert value_of(results[1]) > 0


@pytest.fixture
def scaffolded(tmp_path: Path) -> Callable[[str], dict[str, str]]:
    """A design's scaffold written as a module of the test's own: the environment that loads it as mine."""

    def write(design: str) -> dict[str, str]:
        spec = exercises()[design].scaffold
        folder = tmp_path / "scaffolds"
        folder.mkdir(exist_ok=True)
        (folder / f"scaffolded_{design}.py").write_text(scaffold_source(spec))
        return {
            "PYTHONPATH": f"{folder}:{':'.join(sys.path)}",
            f"LAB_{design.upper()}_MINE": f"scaffolded_{design}:{spec.opener}",
        }

    return write


@pytest.mark.parametrize("design", ["ratelimit", "shortener"])
async def test_a_scaffold_serves_the_contract_and_fails_its_first_stage_like_naive(
    design: str, context: MakeContext, scaffolded: Callable[[str], dict[str, str]]
) -> None:
    stage = exercises()[design].stage(1)

    [result] = await run_stages([stage], context("mine", **scaffolded(design)))
    [naive] = await run_stages([stage], context("naive"))

    assert result.outcome == naive.outcome == "FAIL"
    # The same flaw, measured twice: a race's count (the units a sale oversells) varies run to run.
    assert value_of(result) == pytest.approx(value_of(naive), rel=0.5)


async def test_the_orders_scaffold_starts_and_takes_an_order(
    context: MakeContext, scaffolded: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    ctx = context("mine", **scaffolded("orders"))
    with run_orders_lab("mine", env=ctx.env(), log_dir=tmp_path) as lab:
        async with httpx.AsyncClient(base_url=lab.orders.url, timeout=10) as client:
            await open_sale(client, sku="scaffold-sku", stock=3)
            reply = await place_order(client, sku="scaffold-sku", customer_id="scaffold-buyer", key="k")
    assert reply.status_code == 201, reply.text
