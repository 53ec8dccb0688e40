"""The verdict statistics: counterbalanced orders, paired ratios, the bootstrap interval, the verdicts."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from statistics import median

import pytest

from loadtests.engine.verdicts import (
    INSIDE_THE_NOISE,
    LOWER_BOUND_NOT_SHOWN,
    MET,
    MIN_ROUNDS,
    NOT_MET,
    TOO_FEW_ROUNDS,
    VERDICTS,
    Comparison,
    Estimate,
    again_label,
    bootstrap_interval,
    paired_ratios,
    round_orders,
    verdict,
)

GOAL = 2.0
# Noisy rounds of a variant about twice as fast as the other: the same shape a real bench produces.
FAST = [410.0, 395.0, 430.0, 388.0, 402.0, 415.0, 399.0]
SLOW = [200.0, 205.0, 198.0, 210.0, 190.0, 202.0, 207.0]


def _cycle(variants: int) -> int:
    return variants if variants % 2 == 0 else 2 * variants


# -- orders ---------------------------------------------------------------------------------------


def test_two_variants_run_abba_abba() -> None:
    orders = round_orders(["naive", "hardened"], 4)
    flat = "".join("A" if label == "naive" else "B" for order in orders for label in order)
    assert flat == "ABBAABBA"


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_each_variant_takes_each_position_equally_often(count: int) -> None:
    variants = [f"v{i}" for i in range(count)]
    rounds = 2 * _cycle(count)
    orders = round_orders(variants, rounds)
    for position in range(count):
        seen = Counter(order[position] for order in orders)
        assert seen == dict.fromkeys(variants, rounds // count)


@pytest.mark.parametrize("count", [3, 4])
def test_each_variant_follows_every_other_equally_often(count: int) -> None:
    variants = [f"v{i}" for i in range(count)]
    orders = round_orders(variants, _cycle(count))
    followers = Counter(pair for order in orders for pair in pairwise(order))
    assert len(followers) == count * (count - 1)
    assert len(set(followers.values())) == 1


def test_three_variants_each_round_runs_every_variant_once() -> None:
    variants = ["naive", "hardened", "mine"]
    assert all(sorted(order) == sorted(variants) for order in round_orders(variants, 7))


def test_an_a_a_comparison_runs_one_variant_under_two_labels() -> None:
    labels = ["hardened", again_label("hardened")]
    orders = round_orders(labels, 2)
    assert orders == [tuple(labels), tuple(reversed(labels))]
    assert labels[0] != labels[1]


def test_one_variant_runs_alone_every_round() -> None:
    assert round_orders(["hardened"], 3) == [("hardened",)] * 3


@pytest.mark.parametrize(
    ("variants", "rounds", "complaint"),
    [
        (["naive", "hardened"], 0, "at least one round"),
        ([], 5, "at least one variant"),
        (["hardened", "hardened"], 5, "must differ"),
    ],
)
def test_bad_orders_are_refused(variants: list[str], rounds: int, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        round_orders(variants, rounds)


# -- ratios ---------------------------------------------------------------------------------------


def test_ratios_are_paired_round_by_round() -> None:
    ratios = paired_ratios(FAST, SLOW)
    assert ratios == [fast / slow for fast, slow in zip(FAST, SLOW, strict=True)]


@pytest.mark.parametrize(
    ("numerator", "denominator", "complaint"),
    [
        ([1.0, 2.0], [1.0], "one value per round"),
        ([], [], "at least one round"),
        ([1.0, 2.0], [1.0, 0.0], "round 2: the denominator is 0.0"),
        ([1.0], [-3.0], "round 1: the denominator is -3.0"),
        ([-1.0], [3.0], "round 1: the numerator is -1.0"),
        ([float("nan")], [3.0], "finite"),
        ([1.0], [float("inf")], "finite"),
    ],
)
def test_bad_ratios_are_refused(numerator: list[float], denominator: list[float], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        paired_ratios(numerator, denominator)


# -- bootstrap ------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_interval() -> None:
    # Few resamples of many distinct rounds: intervals that move with the seed, so equality means something.
    ratios = paired_ratios([*FAST, *SLOW], [*SLOW, *FAST])
    few = len(ratios) * 3

    def interval(seed: int) -> Estimate:
        return bootstrap_interval(ratios, resamples=few, seed=seed)

    assert interval(7) == interval(7)
    assert len({interval(seed) for seed in range(len(ratios))}) > 1


def test_the_interval_contains_the_median_and_lies_within_the_rounds() -> None:
    ratios = paired_ratios(FAST, SLOW)
    estimate = bootstrap_interval(ratios)
    assert min(ratios) <= estimate.low <= estimate.median <= estimate.high <= max(ratios)
    assert estimate.low < estimate.high
    assert estimate.rounds == len(ratios)


def test_five_rounds_give_an_interval_from_the_smallest_round_to_the_largest() -> None:
    ratios = paired_ratios(FAST[:MIN_ROUNDS], SLOW[:MIN_ROUNDS])
    estimate = bootstrap_interval(ratios)
    assert (estimate.low, estimate.median, estimate.high) == (min(ratios), median(ratios), max(ratios))


def test_seven_rounds_drop_the_extreme_rounds_from_the_interval() -> None:
    ordered = sorted(paired_ratios(FAST, SLOW))
    estimate = bootstrap_interval(ordered)
    assert (estimate.low, estimate.high) == (ordered[1], ordered[-2])


def test_an_identical_series_has_a_zero_width_interval() -> None:
    estimate = bootstrap_interval([GOAL] * MIN_ROUNDS)
    assert (estimate.low, estimate.median, estimate.high) == (GOAL, GOAL, GOAL)


def test_a_higher_confidence_never_narrows_the_interval() -> None:
    ratios = paired_ratios(FAST, SLOW)
    narrow, wide = bootstrap_interval(ratios, confidence=0.5), bootstrap_interval(ratios, confidence=0.99)
    assert wide.low <= narrow.low <= narrow.high <= wide.high
    assert (wide.high - wide.low) > (narrow.high - narrow.low)


def test_the_statistic_can_be_changed() -> None:
    values = [1.0, 1.0, 1.0, 1.0, 11.0]
    assert bootstrap_interval(values, statistic=max).median == max(values)


@pytest.mark.parametrize(
    ("values", "options", "complaint"),
    [
        ([], {}, "at least one value"),
        ([1.0, float("nan")], {}, "finite"),
        ([1.0], {"confidence": 1.0}, "strictly between 0 and 1"),
        ([1.0], {"confidence": 0.0}, "strictly between 0 and 1"),
        ([1.0], {"resamples": 0}, "at least one resample"),
    ],
)
def test_bad_bootstraps_are_refused(values: list[float], options: dict[str, float], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        bootstrap_interval(values, **options)  # type: ignore[arg-type]


# -- verdicts -------------------------------------------------------------------------------------

ABOVE = Estimate(median=GOAL * 1.2, low=GOAL * 1.1, high=GOAL * 1.3, rounds=MIN_ROUNDS)
STRADDLING = Estimate(median=GOAL, low=GOAL * 0.9, high=GOAL * 1.1, rounds=MIN_ROUNDS)
BELOW = Estimate(median=GOAL * 0.8, low=GOAL * 0.7, high=GOAL * 0.9, rounds=MIN_ROUNDS)


@pytest.mark.parametrize(
    ("estimate", "higher_is_better", "expected"),
    [
        (ABOVE, True, MET),
        (STRADDLING, True, INSIDE_THE_NOISE),
        (BELOW, True, NOT_MET),
        (ABOVE, False, NOT_MET),
        (STRADDLING, False, INSIDE_THE_NOISE),
        (BELOW, False, MET),
    ],
)
def test_verdict_truth_table(estimate: Estimate, higher_is_better: bool, expected: str) -> None:
    assert verdict(estimate, goal=GOAL, higher_is_better=higher_is_better) == expected


@pytest.mark.parametrize(
    ("estimate", "higher_is_better", "expected"),
    [
        (ABOVE, True, LOWER_BOUND_NOT_SHOWN),
        (STRADDLING, True, LOWER_BOUND_NOT_SHOWN),
        (BELOW, True, LOWER_BOUND_NOT_SHOWN),
        # Even the lower bound misses a lower-is-better goal: the true ratio misses it by more.
        (ABOVE, False, NOT_MET),
        (STRADDLING, False, LOWER_BOUND_NOT_SHOWN),
        (BELOW, False, LOWER_BOUND_NOT_SHOWN),
    ],
)
def test_generator_bound_ratios_never_read_met(
    estimate: Estimate, higher_is_better: bool, expected: str
) -> None:
    assert verdict(estimate, goal=GOAL, higher_is_better=higher_is_better, bound_only=True) == expected


def test_an_interval_ending_on_the_goal_meets_it() -> None:
    touching = Estimate(median=GOAL * 1.1, low=GOAL, high=GOAL * 1.2, rounds=MIN_ROUNDS)
    assert verdict(touching, goal=GOAL) == MET
    assert verdict(touching, goal=GOAL * 1.2, higher_is_better=False) == MET


@pytest.mark.parametrize("higher_is_better", [True, False])
@pytest.mark.parametrize("bound_only", [True, False])
def test_too_few_rounds_bear_no_verdict(higher_is_better: bool, bound_only: bool) -> None:
    for estimate in (ABOVE, BELOW):
        few = Estimate(estimate.median, estimate.low, estimate.high, rounds=MIN_ROUNDS - 1)
        read = verdict(few, goal=GOAL, higher_is_better=higher_is_better, bound_only=bound_only)
        assert read == TOO_FEW_ROUNDS


@pytest.mark.parametrize("goal", [0.0, -1.0, float("nan"), float("inf")])
def test_a_goal_must_be_a_positive_ratio(goal: float) -> None:
    with pytest.raises(ValueError, match="positive number"):
        verdict(ABOVE, goal=goal)


def test_every_verdict_string_is_distinct() -> None:
    assert len(set(VERDICTS)) == len(VERDICTS)


# -- the comparison a report prints ---------------------------------------------------------------


def _twice_as_fast(**options: bool) -> Comparison:
    return Comparison.from_rounds(
        "hardened serves redirects at least 1.5× as fast",
        numerator="hardened",
        denominator="naive",
        values={"hardened": FAST, "naive": SLOW},
        goal=1.5,
        **options,
    )


def test_a_clear_improvement_is_met_and_printed_whole() -> None:
    comparison = _twice_as_fast()
    printed = json.loads(json.dumps(comparison.to_json()))
    assert comparison.verdict == MET
    assert printed["ratios"] == paired_ratios(FAST, SLOW)
    assert printed["low"] <= printed["median"] <= printed["high"]
    assert (printed["numerator"], printed["denominator"], printed["goal"]) == ("hardened", "naive", 1.5)
    assert (printed["direction"], printed["generator_bound"], printed["verdict"]) == (
        "higher is better",
        False,
        MET,
    )
    assert printed["rounds"] == len(FAST)


def test_a_generator_bound_comparison_is_a_lower_bound() -> None:
    comparison = _twice_as_fast(generator_bound=True)
    assert comparison.verdict == LOWER_BOUND_NOT_SHOWN
    assert comparison.to_json()["generator_bound"] is True


def test_an_a_a_comparison_of_noisy_rounds_is_inside_the_noise() -> None:
    again = again_label("hardened")
    # The second run of each round lands a little above or below the first, as on a shared machine.
    values = {"hardened": FAST, again: [*FAST[1:], FAST[0]]}
    comparison = Comparison.from_rounds(
        "A/A noise", numerator=again, denominator="hardened", values=values, goal=1.0
    )
    assert comparison.estimate.low < 1.0 < comparison.estimate.high
    assert comparison.verdict == INSIDE_THE_NOISE


def test_a_comparison_names_the_missing_label() -> None:
    with pytest.raises(ValueError, match="no per-round values for 'mine'"):
        Comparison.from_rounds("x", numerator="mine", denominator="naive", values={"naive": SLOW}, goal=1.0)
