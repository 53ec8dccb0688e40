"""The shortener's audit: every redirect served is a click counted, and every Location was right."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg

from loadtests.engine.generator import read_failure_reasons, read_recording
from loadtests.engine.scenario import AuditResult, BenchContext, Target
from loadtests.environment import counter

# The service's database reads made to resolve a redirect, when each run began, by component: the
# counter lives as long as the service, and a run's reads are the difference.
_LOOKUPS_AT_START: dict[str, float] = {}


def fresh_links_per_run(context: BenchContext, target: Target) -> None:
    """Nothing to clear: every run creates its own links under its run id (``LAB_BENCH_RUN_ID``),
    and the auditor looks only at those. The database reads so far are noted, for the audit."""
    if target.audited:  # a reference endpoint reads no database and claims nothing
        _LOOKUPS_AT_START[target.component] = _database_lookups(context, target)


def _reads_this_run(context: BenchContext, target: Target) -> int:
    """The service's database reads since the run's reset (its counter lives as long as it does)."""
    return round(_database_lookups(context, target) - _LOOKUPS_AT_START.get(target.component, 0.0))


def _database_lookups(context: BenchContext, target: Target) -> float:
    return counter(context.lab.url_of(target.component), "shortener_db_lookups")


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
    # The cache's promise: the database is off the redirect path. A link's first redirect may read
    # it (a cold miss); every other redirect is answered from the cache. The links redirected at all
    # (a click counted) bound the cold misses: a run with fewer redirects than links is no excuse.
    links = asyncio.run(_links_of(context, target.variant, run_id, redirected_only=True))
    reads = _reads_this_run(context, target)
    return AuditResult(
        invariants={
            "redirects_served": served,
            "clicks_counted": counted,
            "clicks_lost": max(0, served - counted),
            "unanswered_but_counted": max(0, counted - served),
            "wrong_redirects": wrong,
            "failed_requests": failed,
            "database_reads": reads,
            "database_reads_beyond_cold_misses": max(0, reads - links),
            "database_reads_per_redirect": round(reads / served, 3) if served else 0,
        },
        holds=served > 0 and served <= counted <= served + unanswered and wrong == 0 and reads <= links,
        explanation=(
            f"{served} redirects served, {counted} clicks counted, {wrong} redirects to a wrong "
            f"Location, {failed} requests failed; {reads} database reads for {links} links redirected "
            f"(at most one cold miss each)"
        ),
    )


def reads_so_far(context: BenchContext, target: Target, run_dir: Path) -> dict[str, int]:
    """The live console's count of a run still going: database reads beyond one per link the run
    created (the cache's promise is at most one cold miss a link; the audit holds it to the links
    actually redirected, once the clicks are flushed)."""
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    links = asyncio.run(_links_of(context, target.variant, run_id))
    reads = _reads_this_run(context, target)
    return {"database_reads_beyond_one_per_link": max(0, reads - links)}


async def _links_of(
    context: BenchContext, variant: str, run_id: str, *, redirected_only: bool = False
) -> int:
    """The links the run created (its working set), or only those redirected at least once."""
    conn = await asyncpg.connect(context.endpoints.postgres_url)
    try:
        query = f"SELECT count(*) FROM shortener_{variant}.links WHERE long_url LIKE $1"
        if redirected_only:
            query += " AND clicks > 0"
        return int(await conn.fetchval(query, f"https://example.com/{run_id}/%"))
    finally:
        await conn.close()


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
    stored = asyncio.run(_links_of(context, target.variant, run_id))
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
