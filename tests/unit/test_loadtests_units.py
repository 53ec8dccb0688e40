"""The load-test lab's pieces without I/O: durations, timelines, shapes, reports."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loadtests import bench
from loadtests.bench import BenchError, parse_duration, serve_with_companions
from loadtests.chaos import TimelineError, parse_timeline
from loadtests.engine.lab import AppSpec
from loadtests.engine.scenario import Goal
from loadtests.orders.scenarios import NAIVE_ROW_LOCK
from loadtests.ratelimit.audit import quota_of
from loadtests.shapes import ShapeKnobs, users_at

COMPONENTS = ["postgres", "redis", "kafka", "ratelimit-naive"]


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("2m", 120), ("45", 45), (" 5s ", 5)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "ten", "5h", "-3s", "1.5m"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(BenchError):
        parse_duration(text)


def test_timeline_is_parsed_and_sorted() -> None:
    steps = parse_timeline("kafka:resume@20s, kafka:pause@10s", components=COMPONENTS)
    assert [(s.component, s.action, s.at_s) for s in steps] == [
        ("kafka", "pause", 10.0),
        ("kafka", "resume", 20.0),
    ]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("kafka:pause", "cannot read"),
        ("mainframe:kill@1s", "unknown chaos target"),
        ("redis:explode@1s", "unknown chaos action"),
    ],
)
def test_bad_timelines_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(TimelineError, match=complaint):
        parse_timeline(text, components=COMPONENTS)


def test_shapes() -> None:
    knobs = ShapeKnobs(users=100, duration_s=100, spike_factor=10)
    assert users_at("steady", knobs, 50) == 100
    assert users_at("ramp", knobs, 25) == 25
    assert [users_at("spike", knobs, t) for t in (10, 45, 69, 80)] == [10, 100, 100, 10]
    assert users_at("steady", knobs, 100) is None


def _announced(run_dir: Path, process: str, **policies: str) -> None:
    (run_dir / f"announced-{process}.json").write_text(json.dumps(policies))


def test_the_rate_limit_audit_holds_a_service_to_the_stricter_quota_it_announced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_RATELIMIT_LIMIT", "100")
    _announced(tmp_path, "1", **{"hot-0": '"default";q=7;w=60', "hot-1": '"default";q=7;w=60'})
    _announced(tmp_path, "2", **{"hot-0": '"default";q=7;w=60'})
    quota = quota_of(tmp_path)
    assert (quota.limit, quota.window_s) == (7, 60.0)  # a lab started with a lower limit
    assert "announced 7 per 60 s" in quota.source


@pytest.mark.parametrize(
    ("policies", "source"),
    [
        ({}, "as configured"),
        ({"hot-0": '"default";q=42;w=60'}, "as configured, and as announced"),
        # A variant that announces a larger quota is still held to the configured one.
        ({"hot-0": '"default";q=100000;w=1'}, "as configured, and as announced"),
    ],
)
def test_no_variant_passes_by_announcing_a_larger_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policies: dict[str, str], source: str
) -> None:
    monkeypatch.setenv("LAB_RATELIMIT_LIMIT", "42")
    _announced(tmp_path, "1", **policies)
    quota = quota_of(tmp_path)
    assert (quota.limit, quota.window_s) == (42, 60.0)
    assert quota.source.startswith(source)


class ServingLab:
    """Records what the bench asked it to serve, and answers each served app's URL."""

    def __init__(self) -> None:
        self.served: list[tuple[str, AppSpec]] = []

    def serve(self, component: str, app: AppSpec) -> None:
        self.served.append((component, app))

    def url_of(self, component: str) -> str:
        return f"http://127.0.0.1/{component}"


def test_the_row_locked_naive_service_calls_an_inventory_service_that_takes_the_lock() -> None:
    lab = ServingLab()
    assert NAIVE_ROW_LOCK.app is not None
    serve_with_companions(lab, NAIVE_ROW_LOCK.component, NAIVE_ROW_LOCK.app)  # type: ignore[arg-type]
    (inventory, inventory_app), (orders, orders_app) = lab.served
    # The lock is the inventory service's (services/orders/inventory.py reads the setting).
    assert inventory_app.app_factory == "services.orders.inventory:create_app"
    assert inventory_app.env["LAB_ORDERS_NAIVE_LOCKING"] == "row-lock"
    assert orders == "orders-naive-row-lock"
    assert orders_app.env["LAB_ORDERS_INVENTORY_URL"] == lab.url_of(inventory)
    assert orders_app.companions == ()


def _sweep_rounds(knees: dict[str, list[tuple[float, float | None]]]) -> list[dict[str, Any]]:
    """Rounds of sweep runs: per label, one (knee, broke_at) per round."""
    count = len(next(iter(knees.values())))
    return [
        {
            "runs": {
                label: {
                    "metrics": {
                        "knee_rps": per_round[i][0],
                        "broke_at_rps": per_round[i][1],
                        "generator_bound": False,
                    }
                }
                for label, per_round in knees.items()
            }
        }
        for i in range(count)
    ]


CAPACITY = Goal("capacity, hardened / naive", "hardened", "naive", "knee_rps", 1.5, "sweep")


def _plan(*labels: str) -> Any:
    scenario = SimpleNamespace(goals=(CAPACITY,))
    return SimpleNamespace(scenario=scenario, mode="sweep", labels=labels)


def test_a_capacity_above_the_sweep_is_a_lower_bound_never_a_ratio_to_divide_by() -> None:
    both_held = _sweep_rounds({"hardened": [(759.0, None)] * 5, "naive": [(759.0, None)] * 5})
    assert bench._comparisons(_plan("hardened", "naive"), both_held) == []
    (uncompared,) = bench._uncompared(_plan("hardened", "naive"), both_held)
    assert (
        "naive held every offered rate of the sweep in round(s) 1, 2, 3, 4, 5, up to 759 req/s"
        in (uncompared["reason"])
    )
    numerator_held = _sweep_rounds({"hardened": [(759.0, None)] * 5, "naive": [(300.0, 450.0)] * 5})
    (comparison,) = bench._comparisons(_plan("hardened", "naive"), numerator_held)
    assert comparison.generator_bound  # read "≥": the hardened capacity is at least its top step
    assert comparison.verdict != "met"
    both_broke = _sweep_rounds({"hardened": [(759.0, 1000.0)] * 5, "naive": [(300.0, 450.0)] * 5})
    (measured,) = bench._comparisons(_plan("hardened", "naive"), both_broke)
    assert not measured.generator_bound
    assert measured.verdict == "met"
