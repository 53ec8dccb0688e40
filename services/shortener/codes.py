"""Short codes: the base62 alphabet, random codes, and the names a code may never take."""

from __future__ import annotations

import re
import secrets
import string

BASE62 = string.digits + string.ascii_letters

# Top-level paths the service itself serves or may serve; a code equal to one would be shadowed.
RESERVED = frozenset(
    {"api", "healthz", "metrics", "docs", "redoc", "openapi.json", "static", "admin", "favicon.ico"}
)

ALIAS_PATTERN = re.compile(r"[A-Za-z0-9_-]{4,32}")
# Anything a redirect could legitimately be asked for: generated codes and custom aliases.
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")


# Bytes below 248 = 4 × 62 map onto the alphabet with ``% 62`` without bias; the rest are dropped.
_UNBIASED_LIMIT = 4 * len(BASE62)


def random_code(*, length: int) -> str:
    """A uniformly random base62 code that is not a reserved word."""
    return random_codes(count=1, length=length)[0]


def random_codes(*, count: int, length: int) -> list[str]:
    """``count`` uniformly random base62 codes, none reserved, from a few large reads of the OS's
    secure generator: one ``secrets.choice`` per character costs a system call each, which made a
    refill of tens of thousands of codes hold the event loop for seconds."""
    codes: list[str] = []
    while len(codes) < count:
        chars = _random_chars((count - len(codes)) * length)
        for start in range(0, len(chars) - length + 1, length):
            code = chars[start : start + length]
            if not is_reserved(code):
                codes.append(code)
    return codes[:count]


def _random_chars(wanted: int) -> str:
    raw = secrets.token_bytes(wanted + wanted // 16 + 16)  # ~3% are dropped; the caller loops if short
    return "".join(BASE62[byte % len(BASE62)] for byte in raw if byte < _UNBIASED_LIMIT)


def is_reserved(code: str) -> bool:
    return code.lower() in RESERVED


def looks_like_code(text: str) -> bool:
    return CODE_PATTERN.fullmatch(text) is not None
