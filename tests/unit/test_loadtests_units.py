"""The load-test lab's pieces without I/O: durations, timelines, shapes, percentiles, reports."""

from __future__ import annotations

import pytest

from loadtests.bench import BenchError, parse_duration
from loadtests.chaos import TimelineError, parse_timeline
from loadtests.locust_runner import percentile, summarize
from loadtests.report import line_chart, render_html, render_markdown
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


def test_percentiles_from_a_histogram() -> None:
    histogram = {1.0: 50, 2.0: 40, 10.0: 9, 100.0: 1}
    assert [percentile(histogram, f) for f in (0.5, 0.9, 0.99, 1.0)] == [1.0, 2.0, 10.0, 100.0]


def test_summary_merges_request_names() -> None:
    entry = {
        "num_requests": 10,
        "num_failures": 1,
        "start_time": 100.0,
        "last_request_timestamp": 110.0,
        "max_response_time": 9.0,
        "response_times": {"1": 9, "9": 1},
    }
    summary = summarize([entry, {**entry, "num_failures": 0}])
    assert (summary.requests, summary.failures, summary.throughput_rps, summary.p99_ms) == (20, 1, 2.0, 9.0)


def _report() -> dict[str, object]:
    def variant(holds: bool, over: int) -> dict[str, object]:
        history = [
            {"t": float(t), "rps": 10.0 * t, "p50_ms": 1.0, "p99_ms": 5.0, "failures_per_s": 0.0}
            for t in range(5)
        ]
        load = {"requests": 100, "throughput_rps": 20.0, "p50_ms": 1, "p95_ms": 3, "p99_ms": 5, "failures": 0,
                "locust_cpu_percent": 40.0, "history": history}  # fmt: skip
        audit = {"invariants": {"over_admitted_requests": over}, "holds": holds, "explanation": "x"}
        return {"load": load, "audit": audit, "service_cpu_cores": 0.5, "bench_overhead_s": 1.0}

    return {
        "design": "ratelimit",
        "title": "Rate limiter",
        "run": {"when": "now", "shape": "steady", "users": 5, "duration_s": 5, "concurrent": False},
        "machine": {"cores": 2, "memory_gib": 24, "cpu": "cpu", "python": "3.11", "commit": "abc"},
        "variants": {"naive": variant(False, 7), "hardened": variant(True, 0)},
        "chaos": {
            "hardened": [
                {"component": "redis", "action": "pause", "at_s": 1, "applied_at_s": 1.01, "error": None}
            ]
        },
        "flags": ["naive: the load generator peaked"],
    }


def test_markdown_report_puts_the_variants_side_by_side() -> None:
    text = render_markdown(_report())
    assert "| verdict | BROKEN | holds |" in text
    assert "| over_admitted_requests | 7 | 0 |" in text
    assert "redis pause @ 1 s" in text
    assert "load generator peaked" in text


def test_html_report_is_self_contained_with_one_series_per_variant() -> None:
    page = render_html(_report())
    assert "<script" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert page.count("class='series'") == 2 * 4  # four charts, two variants each
    assert page.count("class='marker'") == 4  # the chaos step on every chart


def test_chart_scales_points_into_the_canvas() -> None:
    svg = line_chart({"a": [{"t": 0.0, "v": 0.0}, {"t": 10.0, "v": 5.0}]}, y_key="v", y_label="v")
    points = svg.split("points='")[1].split("'")[0].split()
    xs = [float(p.split(",")[0]) for p in points]
    assert xs[0] == 45.0
    assert xs[-1] == 720 - 45
