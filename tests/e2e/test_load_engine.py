"""The measurement engine against a server whose behaviour is known, over real TCP, with real Locust
processes: what it measures must be what the server did.

- a 20 ms server under a constant 200 req/s: p50 of 20–25 ms, no lateness, goodput 200/s ± 5%;
- the same server paused for 1 s mid-run: the open loop records the backlog (about a second's worth
  of requests above 500 ms), the closed loop one slow request per user;
- a server slower than the offered rate: the run is overloaded, and a sweep's knee lands below;
- failures are never goodput, a timeout is never a latency sample, p99 is never above max, and the
  per-second counts add up to the run's totals;
- distributed runs and runs ended early: tests/e2e/test_load_distribution.py (counts, not timing,
  so they share the machine with other tests);
  a worker of other load-test code refuses a run, and the bench hears why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from loadtests.engine.generator import LoadPlan, LoadResult, run_load
from loadtests.engine.recording import HIGHEST_US
from loadtests.engine.schedule import Schedule
from loadtests.engine.summary import Slo, WindowSummary, series, windows
from loadtests.engine.sweep import knee, sweep_schedule
from tests.support.servers import RunningApp, run_app

pytestmark = [pytest.mark.e2e, pytest.mark.alone]

APP = "tests.support.fixed_delay:create_app"
ROOT = Path(__file__).parents[2]
USERS = Path(__file__).parents[1] / "support" / "fixed_delay_users.py"


@contextmanager
def fixed_delay_server(tmp_path: Path, **env: str) -> Iterator[RunningApp]:
    with run_app(APP, "fixed", env={"LAB_TEST_DELAY_MS": "20", **env}, log_dir=tmp_path) as app:
        yield app


def _load(
    app: RunningApp,
    tmp_path: Path,
    *,
    schedule: Schedule | None = None,
    users: int = 0,
    duration_s: float = 0.0,
    deadline_s: float = 2.0,
    warmup_s: float = 0.0,
    env: Mapping[str, str] | None = None,
) -> LoadResult:
    plan = LoadPlan(
        locustfile=USERS,
        user_class="Arrivals" if schedule is not None else "ClosedLoop",
        host=app.url,
        schedule=schedule,
        users=users,
        duration_s=duration_s,
        deadline_s=deadline_s,
        warmup_s=warmup_s,
        env=dict(env or {}),
    )
    return run_load(plan, out_dir=tmp_path / f"load-{time.monotonic_ns()}")


def _only_window(result: LoadResult, slo: Slo | None = None) -> WindowSummary:
    (window,) = windows(result.recording, slo=slo or Slo())
    return window


def test_a_20ms_server_at_a_constant_200_per_second(tmp_path: Path) -> None:
    with fixed_delay_server(tmp_path) as app:
        result = _load(app, tmp_path, schedule=Schedule.constant(200, 6), warmup_s=1)
    window = _only_window(result)
    assert window.latency_ms["p50"] is not None
    assert 20 <= window.latency_ms["p50"] <= 25
    assert window.valid
    assert window.late_fraction <= 0.01
    assert window.goodput_rps == pytest.approx(200, rel=0.05)
    assert (window.failed, window.timeouts, window.unfinished, window.not_sent) == (0, 0, 0, 0)


def _slow_answers(result: LoadResult, *, above_ms: float) -> int:
    histogram = result.recording.in_window[0].ok_latency
    above_us = round(above_ms * 1000)
    return int(sum(count for value, count in _counts(histogram) if value > above_us))


def _counts(histogram: object) -> Iterator[tuple[int, int]]:
    for item in histogram.get_recorded_iterator():  # type: ignore[attr-defined]
        yield item.value_iterated_to, item.count_at_value_iterated_to


def _paused_once(app: RunningApp, *, after_s: float, for_s: float) -> threading.Thread:
    def pause() -> None:
        time.sleep(after_s)
        app.pause()
        time.sleep(for_s)
        app.resume()

    thread = threading.Thread(target=pause)
    thread.start()
    return thread


def test_a_one_second_stall_shows_as_a_backlog_in_the_open_loop_only(tmp_path: Path) -> None:
    rate, users = 100, 10
    with fixed_delay_server(tmp_path) as app:
        # Locust takes a second or two to start; the pause falls well inside the 8 s run either way.
        pauser = _paused_once(app, after_s=4, for_s=1)
        open_loop = _load(app, tmp_path, schedule=Schedule.constant(rate, 8))
        pauser.join()
        pauser = _paused_once(app, after_s=4, for_s=1)
        closed_loop = _load(app, tmp_path, users=users, duration_s=8)
        pauser.join()
    backlog = _slow_answers(open_loop, above_ms=500)
    stalled = _slow_answers(closed_loop, above_ms=500)
    # Requests intended during the second the server was stopped waited half a second or more:
    # about half the second's arrivals (those of its first half) waited over 500 ms.
    assert 0.3 * rate <= backlog <= 1.2 * rate, backlog
    assert stalled <= users  # each closed-loop user waited once, and sent nothing meanwhile
    assert backlog >= 3 * stalled


def test_a_server_slower_than_the_offered_rate_is_overloaded_and_the_knee_lands_below(tmp_path: Path) -> None:
    # One answer at a time, 10 ms each: at most 100 answers a second.
    rates = [40, 80, 300]
    with fixed_delay_server(tmp_path, LAB_TEST_DELAY_MS="10", LAB_TEST_BLOCKING="1") as app:
        result = _load(app, tmp_path, schedule=sweep_schedule(rates, step_s=3), warmup_s=1)
    steps = windows(result.recording, slo=Slo())
    assert [s.offered_rate for s in steps] == rates
    assert steps[-1].overloaded
    assert not steps[-1].meets_slo
    held = knee(steps)
    assert held is None or held < 300  # None: not even the slowest step held on a busy machine


def test_failures_are_never_goodput(tmp_path: Path) -> None:
    with fixed_delay_server(tmp_path) as app:
        result = _load(app, tmp_path, schedule=Schedule.constant(50, 3), env={"LAB_TEST_PATH": "/fail"})
    window = _only_window(result)
    assert window.failed == window.offered > 0
    assert window.ok == 0
    assert window.goodput_rps == 0
    assert window.latency_ms["p99"] is None  # no ok answer, no ok latency
    assert window.failed_latency_ms["p99"] is not None


def test_a_timeout_is_counted_once_and_never_a_latency_sample(tmp_path: Path) -> None:
    with fixed_delay_server(tmp_path) as app:
        result = _load(
            app, tmp_path, schedule=Schedule.constant(20, 2), deadline_s=0.5, env={"LAB_TEST_PATH": "/slow"}
        )
    window = _only_window(result)
    assert window.timeouts == window.offered > 0
    recorded = result.recording.in_window[0]
    assert recorded.ok_latency.get_total_count() == recorded.failed_latency.get_total_count() == 0


def test_percentiles_never_exceed_the_max_and_the_seconds_add_up_to_the_totals(tmp_path: Path) -> None:
    with fixed_delay_server(tmp_path) as app:
        result = _load(app, tmp_path, schedule=Schedule.constant(150, 4))
    window = _only_window(result)
    latency = window.latency_ms
    assert latency["max"] is not None
    assert latency["max"] * 1000 <= HIGHEST_US
    assert all(value is not None and value <= latency["max"] for value in latency.values())
    rows = series(result.recording)
    for name in ("offered", "ok", "failed", "timeouts", "unfinished", "not_sent"):
        assert sum(int(row[name] or 0) for row in rows) == getattr(window, name), name
    for row in rows:
        assert row["p99_ms"] is None or row["p99_ms"] <= latency["max"]


# -- distributed: workers forked here, and workers that join from elsewhere ----------------------
