"""Verdicts on a goal from interleaved rounds: paired ratios, a bootstrap interval and what it shows.

A benchmark on a shared machine drifts: other work starts, caches warm, the CPU's clock moves. One
run per variant cannot tell a real difference from that drift, so a comparison is made of rounds:

1. **Rounds in a counterbalanced order** (``round_orders``). Every round runs each variant once. With
   two variants the order alternates, A B | B A | A B | B A…, so a slow drift in either direction
   favours neither; with more, a balanced Latin square puts each variant in each position equally
   often. An A/A comparison runs one variant twice under two labels (``again_label``).
2. **Ratios paired per round** (``paired_ratios``): the numerator's value in round *i* divided by the
   denominator's value in the same round, so the drift common to both runs of a round cancels.
3. **The median with a percentile-bootstrap 95% interval** (``bootstrap_interval``): the rounds'
   ratios are resampled with replacement ``resamples`` times; the interval holds the middle
   ``confidence`` share of the resampled medians. It is deterministic given its seed.
4. **A verdict** (``verdict``) that reads the interval, not the point. The exact strings, as the
   report prints them:

   ``"met"`` (``MET``)
       the whole interval is on the goal's side: for a goal where higher is better, the interval's
       lower end is at least the goal; where lower is better, its upper end is at most the goal.
   ``"not met"`` (``NOT_MET``)
       the whole interval is on the wrong side: its upper end is below a higher-is-better goal, or
       its lower end above a lower-is-better one.
   ``"inside the noise"`` (``INSIDE_THE_NOISE``)
       the interval straddles the goal: these rounds cannot tell.
   ``"too few rounds"`` (``TOO_FEW_ROUNDS``)
       fewer than ``MIN_ROUNDS`` (5) rounds: nothing is read from them, whatever the interval.
   ``"lower bound: not shown"`` (``LOWER_BOUND_NOT_SHOWN``)
       some run was bound by its load generator, so the measured ratio is only a lower bound of the
       true one and cannot read "met". Such a comparison still reads "not met" when the goal is
       lower-is-better and even the lower bound is above it (the true ratio can only be higher).

What this module does not do: it measures nothing and runs nothing (no I/O). Whether a run was
generator-bound comes from the CPU meter (``loadtests.engine.cpu``); the per-round values come from
the runner. Resampling assumes the rounds are exchangeable, which interleaving is there to make true.
The interval of a median from few rounds is coarse: with 5 rounds the resampled median is the
smallest round's ratio about 5.8% of the time (three or more of five draws), more than the 2.5% tail,
so the 95% interval runs from the smallest round's ratio to the largest, and "met" needs every round
to clear the goal; with 7 rounds it runs from the second smallest to the second largest. More rounds
narrow it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

MIN_ROUNDS = 5  # the floor: fewer rounds give an interval too coarse to bear a verdict

MET = "met"
NOT_MET = "not met"
INSIDE_THE_NOISE = "inside the noise"
TOO_FEW_ROUNDS = "too few rounds"
LOWER_BOUND_NOT_SHOWN = "lower bound: not shown"
VERDICTS = (MET, NOT_MET, INSIDE_THE_NOISE, TOO_FEW_ROUNDS, LOWER_BOUND_NOT_SHOWN)

AGAIN_SUFFIX = " (again)"
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 13  # any fixed seed: the point is that a report's intervals can be recomputed exactly

Statistic = Callable[[Sequence[float]], float]


# -- the order of the runs ------------------------------------------------------------------------


def again_label(label: str) -> str:
    """The second label of an A/A comparison: the same variant, run again as if it were another."""
    return label + AGAIN_SUFFIX


def round_orders(variants: Sequence[str], rounds: int) -> list[tuple[str, ...]]:
    """The order in which to run ``variants`` in each of ``rounds`` rounds, counterbalanced.

    Rows of a Williams design (a balanced Latin square): each variant takes each position once every
    ``n`` rounds, and follows every other variant equally often, for ``n`` variants when ``n`` is even
    and every ``2n`` rounds when it is odd (the square and its mirror). For two variants this is
    AB, BA, AB, BA… (ABBA ABBA when run back to back). Positions are exactly balanced only when
    ``rounds`` is a multiple of that cycle; choose the number of rounds accordingly.

    ``variants`` are labels, not services: an A/A comparison passes one service under two labels.
    """
    if rounds < 1:
        raise ValueError(f"a comparison needs at least one round, not {rounds}")
    if not variants:
        raise ValueError("a comparison needs at least one variant")
    if len(set(variants)) != len(variants):
        raise ValueError(f"variant labels must differ (use again_label for an A/A run): {list(variants)}")
    cycle = _williams_rows(len(variants))
    return [tuple(variants[index] for index in cycle[i % len(cycle)]) for i in range(rounds)]


def _williams_rows(n: int) -> list[list[int]]:
    first = [_williams_entry(j, n) for j in range(n)]  # 0, 1, n-1, 2, n-2, …
    square = [[(entry + shift) % n for entry in first] for shift in range(n)]
    # An odd square balances positions but not which variant follows which; its mirror completes it.
    return square if n % 2 == 0 else square + [row[::-1] for row in square]


def _williams_entry(j: int, n: int) -> int:
    if j == 0:
        return 0
    return (j + 1) // 2 if j % 2 == 1 else n - j // 2


# -- ratios and their interval --------------------------------------------------------------------


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Round *i*'s numerator over round *i*'s denominator, for every round."""
    if len(numerator) != len(denominator):
        sides = f"{len(numerator)} against {len(denominator)}"
        raise ValueError(f"paired ratios need one value per round on each side: {sides}")
    if not numerator:
        raise ValueError("paired ratios need at least one round")
    return [
        _ratio(top, bottom, index)
        for index, (top, bottom) in enumerate(zip(numerator, denominator, strict=True))
    ]


def _ratio(top: float, bottom: float, index: int) -> float:
    if not (math.isfinite(top) and math.isfinite(bottom)):
        raise ValueError(f"round {index + 1}: values must be finite numbers, got {top} and {bottom}")
    if bottom <= 0:
        raise ValueError(f"round {index + 1}: the denominator is {bottom}; a ratio needs a positive one")
    if top < 0:
        raise ValueError(f"round {index + 1}: the numerator is {top}; measured quantities are not negative")
    return top / bottom


@dataclass(frozen=True)
class Estimate:
    """The rounds' statistic (the median unless another was asked for) and its bootstrap interval."""

    median: float
    low: float
    high: float
    rounds: int
    confidence: float = DEFAULT_CONFIDENCE


def bootstrap_interval(
    values: Sequence[float],
    *,
    statistic: Statistic = median,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Estimate:
    """``statistic`` of ``values`` with its percentile-bootstrap interval at ``confidence``.

    The same values, seed and resamples always give the same interval (``random.Random(seed)``).
    """
    _check_bootstrap(values, confidence=confidence, resamples=resamples)
    rng = random.Random(seed)
    resampled = sorted(statistic(rng.choices(values, k=len(values))) for _ in range(resamples))
    tail = (1.0 - confidence) / 2.0
    return Estimate(
        median=statistic(values),
        low=_quantile(resampled, tail),
        high=_quantile(resampled, 1.0 - tail),
        rounds=len(values),
        confidence=confidence,
    )


def _check_bootstrap(values: Sequence[float], *, confidence: float, resamples: int) -> None:
    if not values:
        raise ValueError("a bootstrap interval needs at least one value")
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"a bootstrap interval needs finite values, got {list(values)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence is a share strictly between 0 and 1, not {confidence}")
    if resamples < 1:
        raise ValueError(f"a bootstrap needs at least one resample, not {resamples}")


def _quantile(ordered: Sequence[float], share: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default, written out)."""
    position = share * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


# -- the verdict ----------------------------------------------------------------------------------


def verdict(
    estimate: Estimate, *, goal: float, higher_is_better: bool = True, bound_only: bool = False
) -> str:
    """One of ``VERDICTS`` for ``estimate`` against ``goal`` (see the module's table).

    ``bound_only``: the runs were generator-bound, so the measured ratio is a lower bound of the true
    one; such a comparison never reads "met".
    """
    if not (math.isfinite(goal) and goal > 0):
        raise ValueError(f"a goal on a ratio is a positive number, not {goal}")
    if estimate.rounds < MIN_ROUNDS:
        return TOO_FEW_ROUNDS
    if higher_is_better:
        shown_met, shown_missed = estimate.low >= goal, estimate.high < goal
    else:
        shown_met, shown_missed = estimate.high <= goal, estimate.low > goal
    if bound_only:
        return _bound_verdict(shown_missed=shown_missed, higher_is_better=higher_is_better)
    if shown_met:
        return MET
    return NOT_MET if shown_missed else INSIDE_THE_NOISE


def _bound_verdict(*, shown_missed: bool, higher_is_better: bool) -> str:
    # A lower bound below a higher-is-better goal says nothing (the true ratio may clear it); a
    # lower bound already above a lower-is-better goal shows the goal missed whatever the true ratio.
    return NOT_MET if shown_missed and not higher_is_better else LOWER_BOUND_NOT_SHOWN


@dataclass(frozen=True)
class Comparison:
    """One goal as the report prints it: which ratio, its rounds, its interval and its verdict."""

    name: str
    numerator: str
    denominator: str
    ratios: tuple[float, ...]
    estimate: Estimate
    goal: float
    higher_is_better: bool
    generator_bound: bool
    verdict: str

    @classmethod
    def from_rounds(
        cls,
        name: str,
        *,
        numerator: str,
        denominator: str,
        values: Mapping[str, Sequence[float]],
        goal: float,
        higher_is_better: bool = True,
        generator_bound: bool = False,
        seed: int = DEFAULT_SEED,
    ) -> Comparison:
        """Build the comparison of ``numerator`` over ``denominator`` from per-round ``values``
        (label → one value per round, in round order). ``generator_bound``: any run behind it was."""
        ratios = paired_ratios(_values_of(values, numerator), _values_of(values, denominator))
        estimate = bootstrap_interval(ratios, seed=seed)
        return cls(
            name=name,
            numerator=numerator,
            denominator=denominator,
            ratios=tuple(ratios),
            estimate=estimate,
            goal=goal,
            higher_is_better=higher_is_better,
            generator_bound=generator_bound,
            verdict=verdict(
                estimate, goal=goal, higher_is_better=higher_is_better, bound_only=generator_bound
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "ratios": list(self.ratios),
            **asdict(self.estimate),
            "goal": self.goal,
            "direction": "higher is better" if self.higher_is_better else "lower is better",
            "generator_bound": self.generator_bound,
            "verdict": self.verdict,
        }


def _values_of(values: Mapping[str, Sequence[float]], label: str) -> Sequence[float]:
    if label not in values:
        raise ValueError(f"no per-round values for {label!r}; there are {sorted(values)}")
    return values[label]
