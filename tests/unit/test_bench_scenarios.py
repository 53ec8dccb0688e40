"""The designs' scenarios as the bench reads them: every goal compares targets its scenario has,
the headline scenario comes first, unknown names are refused in one line, and ``--pin`` says what it
did (or why it could not)."""

from __future__ import annotations

import os

import pytest

from loadtests.bench import (
    BenchError,
    BenchOptions,
    describe_scenarios,
    reproducing_command,
    resolve,
    scenario_named,
)
from loadtests.designs import DESIGNS
from loadtests.engine import cpu

SCENARIOS = [(design, name) for design, bench in DESIGNS.items() for name in bench.scenarios]


@pytest.mark.parametrize(("design", "name"), SCENARIOS)
def test_every_goal_compares_targets_of_its_scenario(design: str, name: str) -> None:
    scenario = DESIGNS[design].scenarios[name]
    labels = {target.label for target in scenario.targets}

    assert len(labels) == len(scenario.targets), "two targets of one scenario share a label"
    for goal in scenario.goals:
        assert {goal.numerator, goal.denominator} <= labels, goal.name
    assert scenario.mode == "closed" or scenario.open_user is not None


@pytest.mark.parametrize(("design", "name"), SCENARIOS)
def test_a_reference_endpoint_is_served_beside_the_lab(design: str, name: str) -> None:
    for target in DESIGNS[design].scenarios[name].targets:
        if not target.audited:
            assert target.app is not None, f"{target.label} claims nothing, so it is no lab variant"


@pytest.mark.parametrize("design", DESIGNS)
def test_the_listing_starts_with_the_headline_scenario(design: str) -> None:
    lines = describe_scenarios(design)

    assert lines[0].startswith(f"{DESIGNS[design].headline} (headline):")
    assert len(lines) == len(DESIGNS[design].scenarios)


def test_no_scenario_named_is_the_headline_one() -> None:
    assert scenario_named("shortener", None).name == "zipf"
    assert scenario_named("orders", None).name == "flash-sale"


def test_an_unknown_scenario_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(BenchError) as refused:
        scenario_named("shortener", "nonesuch")

    message = str(refused.value)
    assert "\n" not in message
    assert "unknown scenario 'nonesuch'" in message
    assert all(name in message for name in DESIGNS["shortener"].scenarios)


def test_a_scenario_plan_runs_its_own_targets_and_the_aa_run_last() -> None:
    plan = resolve(BenchOptions(design="shortener", scenario="ceiling"), components=[])

    assert plan.labels == ("bare-302", "floor", "hardened", "hardened-hot", "hardened-hot (again)")
    assert plan.mode == "sweep"
    assert plan.targets["bare-302"].app is not None


def test_a_target_the_scenario_does_not_have_is_refused() -> None:
    with pytest.raises(BenchError, match="ratelimit hot-keys has naive, hardened"):
        resolve(BenchOptions(design="ratelimit", variants=("floor",)), components=[])


def test_pinning_on_one_core_says_so_and_pins_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0})

    result = cpu.pin_apart(generator=os.getpid(), services=[])

    assert result == {
        "asked": True,
        "pinned": False,
        "reason": "1 core available, none to spare: ran unpinned",
    }


def test_the_reported_command_names_the_scenario_it_ran() -> None:
    typed = BenchOptions(design="shortener", command="lab bench shortener --step 2s")
    named = BenchOptions(design="shortener", scenario="viral", command="lab bench shortener --scenario viral")

    assert (
        reproducing_command(resolve(typed, components=[]), typed)
        == "lab bench shortener --step 2s --scenario zipf"
    )
    assert reproducing_command(resolve(named, components=[]), named) == "lab bench shortener --scenario viral"
