"""Whom a request is counted against: its API key, or else its client IP, proxy-aware.

``X-Forwarded-For`` is only believed when the direct peer is a trusted proxy. Each proxy appends
the address it received the request from, so the rightmost entry that is not itself a trusted proxy
is the client. A client can prepend anything it likes to the header; it cannot forge what our own
proxy appended. From an untrusted peer the header is ignored entirely.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from services.ratelimit.errors import InvalidApiKey

API_KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")

Network = IPv4Network | IPv6Network


def client_identity(
    *,
    api_key: str | None,
    peer: str | None,
    forwarded_for: str | None,
    trusted_proxies: Sequence[Network],
) -> str:
    """``key:<api key>`` or ``ip:<address>``: the bucket this request is counted in."""
    if api_key is not None:
        if not API_KEY_PATTERN.fullmatch(api_key):
            raise InvalidApiKey("X-API-Key must be 1-128 characters of letters, digits, '.', '_' or '-'")
        return f"key:{api_key}"
    return f"ip:{client_ip(peer=peer, forwarded_for=forwarded_for, trusted_proxies=trusted_proxies)}"


def client_ip(*, peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[Network]) -> str:
    peer = peer or "unknown"
    if not forwarded_for or not _is_trusted(peer, trusted_proxies):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        address = _parse(hop.strip())
        if address is None:
            return peer  # a malformed hop: nothing left of it can be believed
        if not _is_trusted(str(address), trusted_proxies):
            return str(address)
    return peer


def _is_trusted(address: str, trusted_proxies: Sequence[Network]) -> bool:
    parsed = _parse(address)
    return parsed is not None and any(parsed in network for network in trusted_proxies)


def _parse(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None
