"""Every knob of the shortener, read from ``LAB_SHORTENER_*`` environment variables.

The defaults are the design's numbers; tests and benchmarks pass their own instance.
"""

from __future__ import annotations

from pydantic import Field

from services.core.settings import CoreSettings


class ShortenerSettings(CoreSettings):
    """Tunables of both variants; a variant ignores the ones it has no use for."""

    # 7 base62 characters = 62^7 ≈ 3.5 trillion codes. Small values make the naive collision
    # check visible (a 2-character space holds 3,844 codes).
    shortener_code_length: int = Field(default=7, ge=2, le=16)
    # Prefix of ``short_url``; empty means the scheme and host the request came in on.
    shortener_public_base_url: str = ""
    # Longest lifetime a client may ask for with ``ttl_seconds`` (default one year).
    shortener_max_ttl_seconds: int = Field(default=365 * 24 * 3600, ge=1)
    # Naive: random codes tried before a create gives up with 503; hardened: leased codes tried
    # when they turn out taken (a custom alias claimed them after they were generated).
    shortener_max_create_attempts: int = Field(default=50, ge=1)
    # Redis keys of the variant start with this; empty means ``shortener:<variant>:``, so both
    # variants can share one Redis.
    shortener_redis_prefix: str = ""
    # Injected latency before every database lookup of a redirect, to make a stampede visible
    # (0 = off). Simulates a slow or distant database.
    shortener_db_lookup_delay_ms: int = Field(default=0, ge=0, le=10_000)
    # The learner's own variant ("mine"): the opener of its adapters, as module:attribute. The default
    # is the file 'lab exercise start shortener' scaffolds.
    shortener_mine: str = "services.shortener.mine:open_adapters"

    # Key pool (hardened): codes an instance leases at once (a crash wastes at most this many),
    # the level below which the generator tops the table up, and the level it tops it up to.
    shortener_keypool_batch_size: int = Field(default=500, ge=1, le=100_000)
    shortener_keypool_low_water: int = Field(default=20_000, ge=1)
    shortener_keypool_target: int = Field(default=50_000, ge=1)
    # How often each instance checks the pool level.
    shortener_keypool_check_interval_s: float = Field(default=2.0, gt=0)

    # Cache-aside (hardened): lifetime of a cached link, plus up to this much random jitter so
    # entries written together do not expire together.
    shortener_cache_ttl_s: int = Field(default=3600, ge=1)
    shortener_cache_ttl_jitter_s: int = Field(default=300, ge=0)
    # Unknown codes are remembered this long, so scans for random codes stay off the database.
    shortener_negative_ttl_s: int = Field(default=30, ge=1)
    # Stampede protection: the lock one filler holds while it reads the database, how long
    # other requests wait for it before reading the database themselves, and how often they look.
    shortener_fill_lock_ttl_ms: int = Field(default=5_000, ge=10)
    shortener_fill_wait_s: float = Field(default=5.0, gt=0)
    shortener_fill_poll_ms: int = Field(default=10, ge=1)

    # The longest a redirect waits on Redis for its cache entry, counted from when the read is sent;
    # past it the redirect reads PostgreSQL instead. A stalled Redis must cost a redirect this, not the
    # client's patience: well under any client deadline.
    shortener_cache_timeout_ms: int = Field(default=100, ge=1)

    # Optional in-process hot-key cache in front of Redis (0 = off): how long a replica keeps its own
    # copy of an entry, which is also the staleness bound if a delete's broadcast is missed.
    shortener_hot_cache_ttl_ms: int = Field(default=0, ge=0, le=60_000)
    shortener_hot_cache_max_entries: int = Field(default=10_000, ge=1)

    # Clicks (hardened): how often each replica writes the clicks it added up to PostgreSQL. A replica
    # that is killed loses at most this long of its own clicks; a clean stop and a Redis crash none.
    shortener_click_flush_interval_s: float = Field(default=1.0, gt=0)
