"""Naive limiter: a fixed-window counter in the memory of each process.

Archetype: "just add more servers". The code is correct for one process. Behind a load balancer,
or under uvicorn with two workers as the lab runs it, every process counts alone, so a client gets
the limit once *per process*. And a fixed window forgets everything at its edge: a burst at the end
of one window and another at the start of the next admit twice the limit within one window's length.

Exposed by ``tests/integration/test_ratelimit_flaws.py`` (500 concurrent requests against a limit of
50 admit more than 50; the window-edge burst admits 2x the limit) and by the bench's over-admission
audit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from services.ratelimit.ports import Decision, Policy


class FixedWindowCounter:
    """Counts requests per (identity, window number); windows start at multiples of their length."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, str, int], int] = {}
        self._current_window: dict[str, int] = {}

    async def check(self, identity: str, policy: Policy) -> Decision:
        now = self._clock()
        window = int(now // policy.window_s)
        self._forget_past_windows(policy, window)
        key = (policy.name, identity, window)
        used = self._counts.get(key, 0)
        reset_s = math.ceil((window + 1) * policy.window_s - now)
        if used >= policy.limit:
            return Decision(allowed=False, remaining=0, reset_s=reset_s)
        self._counts[key] = used + 1
        return Decision(allowed=True, remaining=policy.limit - used - 1, reset_s=reset_s)

    @property
    def tracked_counts(self) -> int:
        """How many (identity, window) counts are held in memory."""
        return len(self._counts)

    def _forget_past_windows(self, policy: Policy, window: int) -> None:
        """Drop counts of finished windows, so memory stays bounded by the active identities."""
        if self._current_window.get(policy.name) == window:
            return
        self._current_window[policy.name] = window
        self._counts = {k: v for k, v in self._counts.items() if k[0] != policy.name or k[2] >= window}
