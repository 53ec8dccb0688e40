"""Rate limiter: a per-process fixed window (naive) versus one atomic Redis sliding window (hardened)."""
