"""Where a sweep stopped: at the system's limit, or at the generator's."""

from __future__ import annotations

from loadtests.engine.summary import WindowSummary
from loadtests.engine.sweep import knee, knee_bound_by_generator


def _step(rate: float, *, meets: bool = True, valid: bool = True, overloaded: bool = False) -> WindowSummary:
    return WindowSummary(
        start_s=0.0, end_s=1.0, offered_rate=rate, offered=int(rate), ok=int(rate), failed=0, timeouts=0,
        unfinished=0, not_sent=0, goodput_rps=rate, attempts_rps=rate, error_fraction=0.0,
        latency_ms={"p99": 5.0}, failed_latency_ms={"p99": None}, lateness_p99_ms=0.0, late_fraction=0.0,
        valid=valid, overloaded=overloaded, meets_slo=meets,
    )  # fmt: skip


def test_a_sweep_stopped_by_late_sends_is_bound_by_the_generator() -> None:
    held = [_step(100), _step(200)]
    late = _step(400, meets=False, valid=False)
    assert knee([*held, late]) == 200
    assert knee_bound_by_generator([*held, late])  # the system may hold more than 200


def test_a_sweep_stopped_by_the_system_is_a_knee_of_the_system() -> None:
    held = [_step(100), _step(200)]
    assert not knee_bound_by_generator([*held, _step(400, meets=False)])  # slow answers: valid window
    assert not knee_bound_by_generator([*held, _step(400, meets=False, valid=False, overloaded=True)])
    assert not knee_bound_by_generator(held)  # every step held: no stop at all
