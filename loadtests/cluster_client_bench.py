"""Client CPU per command on a Redis Cluster: the lab's auto-pipeline on a cluster (one multiplexed
connection per primary, :class:`~services.core.cluster.ClusterAutoPipeline`) against redis-py's
``RedisCluster``, which the hot path would otherwise delegate to. Both send the same GETs, from the
same number of concurrent callers, to the same embedded three-primary cluster, in interleaved rounds;
the ratio is what the multiplexing buys on a cluster.

    python -m loadtests.cluster_client_bench [--commands 20000] [--concurrency 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from loadtests.environment import private_infra
from services.core.cluster import ClusterAutoPipeline, cluster_client

KEYS = [f"bench:{i}".encode() for i in range(1000)]
Send = Callable[[bytes], Awaitable[object]]


async def cpu_per_command_us(send: Send, *, commands: int, concurrency: int) -> float:
    async def caller(first: int) -> None:
        for i in range(first, commands, concurrency):
            await send(KEYS[i % len(KEYS)])

    started = time.process_time()
    await asyncio.gather(*(caller(first) for first in range(concurrency)))
    return (time.process_time() - started) / commands * 1e6


async def compare(url: str, *, commands: int, concurrency: int, rounds: int) -> dict[str, list[float]]:
    pipeline = ClusterAutoPipeline(url, timeout_s=2)
    client = cluster_client(url, timeout_s=2, max_connections=concurrency, retries=0)
    await pipeline.connect()
    await client.initialize()
    senders: dict[str, Send] = {
        "auto-pipeline": lambda key: pipeline.execute_command("GET", key),
        "RedisCluster": lambda key: client.execute_command("GET", key),
    }
    results: dict[str, list[float]] = {name: [] for name in senders}
    try:
        for _ in range(rounds):
            for name, send in senders.items():
                results[name].append(
                    await cpu_per_command_us(send, commands=commands, concurrency=concurrency)
                )
    finally:
        await pipeline.aclose()
        await client.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as state_dir,
        private_infra(Path(state_dir), redis_mode="cluster") as infra,
    ):
        results = asyncio.run(
            compare(infra.redis_url, commands=args.commands, concurrency=args.concurrency, rounds=args.rounds)
        )
    for name, values in results.items():
        print(
            f"{name}: client CPU per GET {statistics.median(values):.1f} µs (median of {args.rounds} rounds)"
        )
    ratios = [
        slow / fast for fast, slow in zip(results["auto-pipeline"], results["RedisCluster"], strict=True)
    ]
    print(f"RedisCluster / auto-pipeline, paired by round: median {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
