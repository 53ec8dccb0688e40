"""The rate limiter's stages' verdicts, without servers."""

from __future__ import annotations

from services.lab.exercises.ratelimit import paused_verdict


def test_a_paused_redis_answered_by_timeouts_fails_instead_of_breaking_the_stage() -> None:
    measured = paused_verdict([(0.05, 200), (0.4, 503), (10.0, "timeout")], budget_ms=50)

    assert not measured.passed
    assert "statuses [200, 503, 'timeout']" in measured.detail


def test_a_paused_redis_answered_in_time_by_the_policy_passes() -> None:
    assert paused_verdict([(0.05, 200), (0.06, 200)], budget_ms=50).passed
