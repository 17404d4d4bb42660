"""Who is on the other end of a web socket, as far as limits go: the client's address.

A visitor can mint as many visitor tokens as they like, so limits per
conversation alone are no limit: these count per client address instead, on
connecting, on minting a visitor and on messages (connectors.web.channel).

The address is the socket's peer, unless a reverse proxy in front says who its
client was in a header the deployment names (`real_ip_header`, e.g. X-Real-IP
or X-Forwarded-For). Only that header is read, and only when it is named:
anyone can send an X-Forwarded-For, so an unconfigured one is ignored. Of a
list (X-Forwarded-For: client, proxy1, …) the last entry is taken, the one our
own proxy appended; entries before it are whatever the client wrote.

An IPv6 client gets a whole /64 from its provider, so its /64 is one address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from connectors.limits import Limits, RateLimiter

# A longer header is no proxy's: the peer counts.
_MAX_HEADER_CHARS = 512


def address_key(value: str) -> str | None:
    """The limit key of one address ("203.0.113.7", "2001:db8:1:2::/64"); None if
    `value` is no IP address."""
    text = value.strip().strip("[]")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def peer_address(request: Any) -> str:
    """The TCP peer of a Sanic request (its `ip`), as a limit key."""
    peer = str(getattr(request, "ip", "") or "")
    return address_key(peer) or peer or "unknown"


def client_address(request: Any, real_ip_header: str = "") -> str:
    """The address limits count for this request: the configured header's last
    entry when there is a valid one, else the socket's peer."""
    if real_ip_header:
        raw = request.headers.get(real_ip_header, "") if request is not None else ""
        if raw and len(raw) <= _MAX_HEADER_CHARS:
            found = address_key(raw.split(",")[-1])
            if found:
                return found
    return peer_address(request) if request is not None else "unknown"


def per_period(count: int, seconds: float) -> Limits:
    """A bucket of `count` that refills over `seconds`: `count` at once, then evenly."""
    if count < 1:
        raise ValueError(f"a per-address limit must be at least 1, got {count}")
    return Limits(rate_per_second=count / seconds, rate_burst=count)


@dataclass(frozen=True)
class AddressLimits:
    """Per client address, shared by all instances through Redis."""

    connects_per_minute: int = 60
    new_visitors_per_hour: int = 60
    messages_per_minute: int = 120

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> AddressLimits:
        credentials = credentials or {}

        def number(key: str, default: int) -> int:
            value = credentials.get(key)
            return default if value in (None, "") else int(value)

        limits = cls(
            connects_per_minute=number("connects_per_minute", cls.connects_per_minute),
            new_visitors_per_hour=number("new_visitors_per_hour", cls.new_visitors_per_hour),
            messages_per_minute=number("messages_per_minute", cls.messages_per_minute),
        )
        limits.limiters()  # refuses a limit below 1 now, not at the first visitor
        return limits

    def limiters(self) -> dict[str, RateLimiter]:
        """One token bucket per kind, keyed "ratelimit:web:<kind>:<address>"."""
        return {
            "connect": RateLimiter(
                per_period(self.connects_per_minute, 60), "ratelimit:web:connect"
            ),
            "new_visitor": RateLimiter(
                per_period(self.new_visitors_per_hour, 3600), "ratelimit:web:visitor"
            ),
            "message": RateLimiter(
                per_period(self.messages_per_minute, 60), "ratelimit:web:message"
            ),
        }
