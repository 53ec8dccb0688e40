"""The shortener's audit: every redirect served is a click counted, and every Location was right."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg

from loadtests.engine.generator import read_failure_reasons, read_recording
from loadtests.engine.scenario import AuditResult, BenchContext, Target


def fresh_links_per_run(context: BenchContext, target: Target) -> None:
    """Nothing to clear: every run creates its own links under its run id (``LAB_BENCH_RUN_ID``),
    and the auditor looks only at those."""


def audit_shortener(context: BenchContext, target: Target, run_dir: Path) -> AuditResult:
    """Every redirect served is a click counted (after the flush), and every Location was right.

    A request the generator gave up on (its deadline passed, or the run ended) may still have been
    served and counted by the service, so the clicks may exceed the redirects seen by at most that many.
    """
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    whole = read_recording(run_dir).whole_run()
    served, failed = whole.ok, whole.failed
    # Any request without a good answer may still have reached the service and been counted.
    unanswered = whole.failed + whole.timeouts + whole.unfinished
    wrong = sum(n for reason, n in read_failure_reasons(run_dir).items() if "wrong Location" in reason)
    counted = asyncio.run(_clicks_when_flushed(context, target.variant, run_id, expected=served))
    return AuditResult(
        invariants={
            "redirects_served": served,
            "clicks_counted": counted,
            "clicks_lost": max(0, served - counted),
            "unanswered_but_counted": max(0, counted - served),
            "wrong_redirects": wrong,
            "failed_requests": failed,
        },
        holds=served > 0 and served <= counted <= served + unanswered and wrong == 0,
        explanation=(
            f"{served} redirects served, {counted} clicks counted, {wrong} redirects to a wrong "
            f"Location, {failed} requests failed"
        ),
    )


async def _clicks_when_flushed(context: BenchContext, variant: str, run_id: str, *, expected: int) -> int:
    """Hardened clicks reach PostgreSQL in batches: wait (bounded) until the flush caught up."""
    conn = await asyncpg.connect(context.endpoints.postgres_url)
    query = f"SELECT coalesce(sum(clicks), 0) FROM shortener_{variant}.links WHERE long_url LIKE $1"
    try:
        for _ in range(30):
            counted = int(await conn.fetchval(query, f"https://example.com/{run_id}/%"))
            if counted >= expected:
                return counted
            await asyncio.sleep(0.5)
        return counted
    finally:
        await conn.close()


def audit_creates(context: BenchContext, target: Target, run_dir: Path) -> AuditResult:
    """Every create answered ``201`` is a link stored (and a create the generator gave up on may
    have been stored too)."""
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    whole = read_recording(run_dir).whole_run()
    unanswered = whole.failed + whole.timeouts + whole.unfinished
    stored = asyncio.run(_links_of_run(context, target.variant, run_id))
    return AuditResult(
        invariants={
            "creates_answered": whole.ok,
            "links_stored": stored,
            "links_lost": max(0, whole.ok - stored),
            "failed_requests": whole.failed,
        },
        holds=whole.ok > 0 and whole.ok <= stored <= whole.ok + unanswered,
        explanation=f"{whole.ok} creates answered 201, {stored} links stored, {whole.failed} requests failed",
    )


async def _links_of_run(context: BenchContext, variant: str, run_id: str) -> int:
    conn = await asyncpg.connect(context.endpoints.postgres_url)
    query = f"SELECT count(*) FROM shortener_{variant}.links WHERE long_url LIKE $1"
    try:
        return int(await conn.fetchval(query, f"https://example.com/{run_id}/%"))
    finally:
        await conn.close()
