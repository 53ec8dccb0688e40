"""The load-test lab's pieces without I/O: durations, timelines, shapes, reports."""

from __future__ import annotations

import pytest

from loadtests.bench import BenchError, parse_duration
from loadtests.chaos import TimelineError, parse_timeline
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
