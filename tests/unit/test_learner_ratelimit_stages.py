"""The rate limiter's stages' verdicts, without servers."""

from __future__ import annotations

import signal
from pathlib import Path

from services.lab.exercises.ratelimit import paused_redis_servers, paused_verdict
from services.lab.exercises.stages import CheckContext
from services.lab.infra import InfraEndpoints


def test_a_paused_redis_answered_by_timeouts_fails_instead_of_breaking_the_stage() -> None:
    measured = paused_verdict([(0.05, 200), (0.4, 503), (10.0, "timeout")], budget_ms=50)

    assert not measured.passed
    assert "statuses [200, 503, 'timeout']" in measured.detail


def test_a_paused_redis_answered_in_time_by_the_policy_passes() -> None:
    assert paused_verdict([(0.05, 200), (0.06, 200)], budget_ms=50).passed


def test_a_paused_redis_is_every_node_of_a_cluster_each_resumed(tmp_path: Path) -> None:
    sent: list[tuple[str, int]] = []
    infra = InfraEndpoints(postgres_url="", redis_url="", kafka_bootstrap="")
    ctx = CheckContext(
        infra=infra,
        variant="mine",
        log_dir=tmp_path,
        signal_infra=lambda name, sig: sent.append((name, sig)),
        redis_components=("redis-1", "redis-2", "redis-3"),
    )

    with paused_redis_servers(ctx):
        assert sent == [(f"redis-{n}", signal.SIGSTOP) for n in (1, 2, 3)]
    assert sent[3:] == [(f"redis-{n}", signal.SIGCONT) for n in (1, 2, 3)]
