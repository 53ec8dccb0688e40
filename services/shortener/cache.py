"""What the hardened redirect cache keeps in Redis: one entry per code, and how it is written.

An entry is ``{"u": url, "e": expiry in epoch milliseconds or null, "d": deleted}``, or ``-`` for "no
such link" (negative caching). The adapter that reads and fills the entries is
:class:`services.shortener.hardened.CachedRedirects`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from services.shortener.links import Target

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING = "-"  # the negative entry: no link was ever created under this code


class Miss:
    """Nothing cached (distinct from a cached "no such link")."""


MISS = Miss()


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch, exact (no float): how an entry stores its expiry."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def encode_entry(target: Target | None) -> str:
    if target is None:
        return _MISSING
    expires = epoch_ms(target.expires_at) if target.expires_at else None
    return json.dumps({"u": target.long_url, "e": expires, "d": target.deleted}, separators=(",", ":"))


def decode_entry(raw: bytes | str) -> Target | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text == _MISSING:
        return None
    data = json.loads(text)
    expires = EPOCH + timedelta(milliseconds=data["e"]) if data["e"] is not None else None
    return Target(long_url=data["u"], expires_at=expires, deleted=data["d"])
