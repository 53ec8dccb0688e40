"""Idempotency keys for the hardened checkout (IETF draft-ietf-httpapi-idempotency-key-header and
Stripe's published behaviour).

A key is scoped to the customer and stored with a fingerprint of the request. The first request
*claims* it in its own short statement (so a concurrent duplicate sees it and gets ``409``); the
order's statement (:data:`services.orders.hardened.CHECKOUT`) *completes* it with the response,
atomically with the order itself. A retry
after completion replays that response; the same key with another body is ``422``. A claim whose
request crashed expires after ``orders_idempotency_lock_s``; keys live ``orders_idempotency_ttl_s``
and are then reaped (:func:`keep_reaping_expired`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import asdict, dataclass

import asyncpg

from services.orders.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from services.orders.ports import OrderReply, PlaceOrder

logger = logging.getLogger(__name__)

CLAIM = """
INSERT INTO idempotency_keys (customer_id, key, sku, fingerprint, locked_until, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), now() + make_interval(secs => $6))
ON CONFLICT (customer_id, key) DO UPDATE
    SET sku = EXCLUDED.sku, fingerprint = EXCLUDED.fingerprint, locked_until = EXCLUDED.locked_until,
        expires_at = EXCLUDED.expires_at, response_status = NULL, response_body = NULL,
        created_at = now()
    WHERE idempotency_keys.expires_at < now()
RETURNING true
"""
FIND = """
SELECT fingerprint, response_status, response_body::text AS response_body,
       locked_until > now() AS locked
FROM idempotency_keys WHERE customer_id = $1 AND key = $2
"""
# Take over the claim of a request that crashed: only if its lock has expired, and only once.
TAKE_OVER = """
UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => $3)
WHERE customer_id = $1 AND key = $2 AND response_status IS NULL AND locked_until <= now()
RETURNING true
"""
RELEASE = "DELETE FROM idempotency_keys WHERE customer_id = $1 AND key = $2 AND response_status IS NULL"
REAP = "DELETE FROM idempotency_keys WHERE expires_at < now()"
DELETE_FOR_SKU = "DELETE FROM idempotency_keys WHERE sku = $1"


@dataclass(frozen=True)
class IdempotencyPolicy:
    ttl_s: float
    lock_s: float


def fingerprint(command: PlaceOrder) -> str:
    canonical = json.dumps(asdict(command), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(
    pool: asyncpg.Pool, *, key: str, command: PlaceOrder, policy: IdempotencyPolicy
) -> OrderReply | None:
    """Claim ``key`` for this request: ``None`` when the caller now owns it, the stored reply when
    the request already completed; :class:`IdempotencyKeyReused` or :class:`IdempotencyKeyInFlight`
    otherwise."""
    customer, digest = command.customer_id, fingerprint(command)
    async with pool.acquire() as conn:
        claimed = await conn.fetchval(CLAIM, customer, key, command.sku, digest, policy.lock_s, policy.ttl_s)
        if claimed:
            return None
        return await _settle_existing(conn, customer=customer, key=key, digest=digest, policy=policy)


async def _settle_existing(
    conn: asyncpg.Connection, *, customer: str, key: str, digest: str, policy: IdempotencyPolicy
) -> OrderReply | None:
    row = await conn.fetchrow(FIND, customer, key)
    if row is None:  # reaped between the two statements: rare, and safe to ask again
        raise IdempotencyKeyInFlight()
    if row["fingerprint"] != digest:
        raise IdempotencyKeyReused()
    if row["response_status"] is not None:
        return OrderReply(row["response_status"], json.loads(row["response_body"]), replayed=True)
    if row["locked"] or not await conn.fetchval(TAKE_OVER, customer, key, policy.lock_s):
        raise IdempotencyKeyInFlight()
    logger.info("idempotency_lock_taken_over customer_id=%s", customer)
    return None


async def release(pool: asyncpg.Pool, *, key: str, command: PlaceOrder) -> None:
    """Give a claim back when the request failed before completing, so a retry may run at once."""
    async with pool.acquire() as conn:
        await conn.execute(RELEASE, command.customer_id, key)


async def reap_expired(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        status: str = await conn.execute(REAP)
    return int(status.rsplit(" ", 1)[-1])


async def keep_reaping_expired(pool: asyncpg.Pool, *, interval_s: float) -> None:
    """Delete expired keys every ``interval_s`` until cancelled (the hardened service's background work)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            reaped = await reap_expired(pool)
        except (OSError, asyncpg.PostgresError) as exc:
            logger.warning("idempotency_reap_failed error=%s", type(exc).__name__)
            continue
        if reaped:
            logger.info("idempotency_keys_reaped count=%d", reaped)
