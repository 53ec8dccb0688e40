"""The fault matrix's judgement of a cell, from answers and audits made up here (no I/O)."""

from __future__ import annotations

import pytest

from loadtests.faults.model import (
    AFTER_RECOVERY_S,
    Answer,
    Audit,
    Bound,
    Cell,
    Timeline,
    classify,
    summarize,
    violations,
)

TIMELINE = Timeline(fault_at=1.0, recovered_at=3.0)
CELL = Cell("orders", "hardened", "postgres", "kill")


def _ok(sent_at: float) -> Answer:
    return Answer(sent_at=sent_at, done_at=sent_at + 0.01, outcome="2xx", status=201, served=True)


def _judge(answers: list[Answer], audit: Audit | None = None, cell: Cell = CELL) -> list[str]:
    audit = audit or Audit(numbers={}, lost={}, doubled={})
    return violations(summarize(cell, answers, TIMELINE, audit))


def test_statuses_fall_into_the_matrix_classes() -> None:
    assert [classify(s) for s in (201, 302, 409, 429, 503, 500, 502)] == [
        "2xx", "3xx", "4xx", "429", "503", "5xx", "5xx",
    ]  # fmt: skip


def test_a_cell_that_answered_and_recovered_holds() -> None:
    assert _judge([_ok(0.5), _ok(3.5)]) == []


def test_a_500_and_a_503_without_retry_after_are_misses() -> None:
    answers = [
        _ok(3.5),
        Answer(sent_at=1.5, done_at=1.6, outcome="5xx", status=500),
        Answer(sent_at=1.5, done_at=1.6, outcome="503", status=503, retry_after=False),
    ]
    assert len(_judge(answers)) == 2


def test_only_the_requests_held_at_the_fault_may_go_unanswered() -> None:
    held = Answer(sent_at=0.9, done_at=1.9, outcome="timeout")
    later = Answer(sent_at=2.0, done_at=3.0, outcome="timeout")
    assert _judge([held, _ok(3.5)]) == []
    assert _judge([held, later, _ok(3.5)]) != []


def test_data_lost_beyond_the_stated_bound_is_a_miss() -> None:
    within = Audit(numbers={}, lost={"events": 5}, doubled={}, bound=Bound(lost={"events": 5}))
    beyond = Audit(numbers={}, lost={"events": 6}, doubled={}, bound=Bound(lost={"events": 5}))
    assert _judge([_ok(3.5)], within) == []
    assert _judge([_ok(3.5)], beyond) == ["lost 6 events, beyond the bound of 5"]


def test_nothing_served_after_the_recovery_is_a_miss() -> None:
    assert _judge([_ok(0.5)]) == ["nothing was served after the recovery"]


def test_naive_cells_are_shown_not_judged() -> None:
    naive = Cell("orders", "naive", "kafka", "kill", lesson="dual write")
    assert _judge([Answer(sent_at=1.5, done_at=1.6, outcome="5xx", status=500)], cell=naive) == []


def test_the_load_goes_on_after_a_late_recovery_and_stops_without_one() -> None:
    assert Timeline(fault_at=1.0, recovered_at=9.5).load_ends_at == 9.5 + AFTER_RECOVERY_S
    assert Timeline(fault_at=1.0, error="RuntimeError: still runs").load_ends_at == 0.0


def test_cells_are_chosen_by_parts_of_their_ids_and_a_part_matching_none_is_refused() -> None:
    from loadtests.faults import matching_cells

    assert matching_cells([]) is None  # every cell
    chosen = matching_cells(["ratelimit-hardened", "orders-naive"])
    assert chosen == [
        "ratelimit-hardened-redis-kill",
        "ratelimit-hardened-redis-stop",
        "ratelimit-hardened-worker-kill",
        "ratelimit-hardened-worker-stop",
        "orders-naive-kafka-kill",
    ]
    with pytest.raises(ValueError, match="no cell matches mainframe"):
        matching_cells(["ratelimit", "mainframe"])
