"""The shortener's own Prometheus series: the numbers the flaw tests and the benchmark read."""

from __future__ import annotations

from prometheus_client import Counter

DB_LOOKUPS = Counter("shortener_db_lookups", "Database reads made to resolve a redirect", ["variant"])
DB_CODE_CHECKS = Counter(
    "shortener_db_code_checks", "Database reads made to learn whether a code is taken", ["variant"]
)
CREATE_RETRIES = Counter(
    "shortener_create_retries",
    "Codes tried for a create that turned out taken (collision check hit or insert race)",
    ["variant"],
)
CACHE_RESULTS = Counter(
    "shortener_cache_results", "Redirect cache lookups by outcome", ["variant", "outcome"]
)
KEYPOOL_LEASED = Counter("shortener_keypool_leased_codes", "Codes leased from the key pool")
KEYPOOL_GENERATED = Counter("shortener_keypool_generated_codes", "Codes added to the key pool")
CLICKS_FLUSHED = Counter("shortener_clicks_flushed", "Clicks written from a replica's tally to PostgreSQL")
