"""The rate limiter's stages' verdicts, without servers."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from services.lab.exercises import ratelimit
from services.lab.exercises.ratelimit import answered_status, paused_redis_servers, paused_verdict
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


async def test_a_window_edge_never_aimed_is_not_graded(monkeypatch: pytest.MonkeyPatch) -> None:
    async def served_late(url: str, key: str, *, moment: float) -> list[float]:
        return [moment + 10.0]  # every burst answered long after the boundary it aimed at

    async def nothing(*args: object, **kwargs: object) -> list[object]:
        return []

    monkeypatch.setattr(ratelimit, "_admitted_at", served_late)
    monkeypatch.setattr(ratelimit, "fire", nothing)

    assert await ratelimit.admitted_around_a_window_edge("http://unused", "edge") is None


def test_a_malformed_limiter_setting_is_a_one_line_error_when_the_stage_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAB_RATELIMIT_REDIS_TIMEOUT_MS", "soon")

    with pytest.raises(ValueError, match=r"^invalid setting: LAB_RATELIMIT_REDIS_TIMEOUT_MS: [^\n]+$"):
        ratelimit.limiter_settings()


def test_a_503_without_retry_after_is_not_the_policys_refusal() -> None:
    refused = answered_status(httpx.Response(503, headers={"Retry-After": "1"}))
    bare = answered_status(httpx.Response(503))

    assert (refused, bare) == (503, "503 without Retry-After")
    assert not paused_verdict([(0.01, refused), (0.01, bare)], budget_ms=50).passed
