"""The order flow's stages' verdicts, without servers."""

from __future__ import annotations

from services.lab.exercises.orders import probes_verdict


def test_fast_refusals_are_not_answers_to_the_buyer() -> None:
    measured = probes_verdict([(0.01, 201), (0.01, 503), (0.01, 503), (0.02, 429)], sale="")

    assert not measured.passed
    assert measured.detail.endswith("not placed (201): 1 x 429, 2 x 503")


def test_orders_placed_fast_pass() -> None:
    assert probes_verdict([(0.01, 201), (0.03, 201)], sale="").passed
