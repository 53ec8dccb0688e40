"""The recording's spans: what a sweep's CPU is divided by."""

from __future__ import annotations

from loadtests.engine.recording import Recording, Window


def test_the_answers_of_a_span_include_the_warm_ups_between_its_windows() -> None:
    # Two sweep steps of 4 s, each with its first 2 s trimmed: the windows hold half the answers of
    # the span from the first window's start to the last one's end, which the CPU is measured over.
    recording = Recording([Window(2.0, 4.0, rate=10.0), Window(6.0, 8.0, rate=20.0)])
    for second in range(8):
        for _ in range(10):
            recording.answered(intended_s=second + 0.1, answered_s=second + 0.2, ok=True)
    recording.answered(intended_s=5.1, answered_s=5.2, ok=False)  # a failure is no good answer
    in_windows = sum(tally.ok for tally in recording.in_window)
    assert in_windows == 40
    assert recording.ok_between(2.0, 8.0) == 60
    assert recording.ok_between(0.0, 8.0) == recording.whole_run().ok == 80
