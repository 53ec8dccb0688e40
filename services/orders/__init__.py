"""Order flow and flash sale: a naive synchronous dual-write checkout versus a hardened one with
idempotency keys, an atomic stock decrement and a transactional outbox (see docs/designs/orders.md)."""
