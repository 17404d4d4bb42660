"""Limits every channel applies before anything is processed.

- message size: characters of text a customer may send in one message;
- rate: messages per sender, a token bucket shared by all server instances
  through Redis (a burst of `rate_burst`, then `rate_per_second`).

Written here because `limits`, the usual library, needs a newer `packaging`
than Rasa 3.6 allows; the bucket is one small Lua script, atomic in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import asyncio as aioredis

# Redis' own clock, so instances with drifting clocks share one bucket.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True)
class Limits:
    max_message_chars: int = 2000
    rate_per_second: float = 1.0
    rate_burst: int = 5

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> Limits:
        credentials = credentials or {}
        limits = cls(
            max_message_chars=int(credentials.get("max_message_chars") or cls.max_message_chars),
            rate_per_second=float(credentials.get("rate_per_second") or cls.rate_per_second),
            rate_burst=int(credentials.get("rate_burst") or cls.rate_burst),
        )
        if limits.max_message_chars < 1 or limits.rate_per_second <= 0 or limits.rate_burst < 1:
            raise ValueError(f"limits must be positive: {limits}")
        return limits

    def too_long(self, text: str | None) -> bool:
        return text is not None and len(text) > self.max_message_chars


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: float  # seconds until the next message would be accepted


class RateLimiter:
    """Per-sender token bucket in Redis."""

    def __init__(self, limits: Limits, prefix: str = "ratelimit") -> None:
        self.limits = limits
        self.prefix = prefix

    async def hit(self, redis: aioredis.Redis, sender: str) -> RateDecision:
        allowed, wait = await redis.eval(
            _TOKEN_BUCKET,
            1,
            f"{self.prefix}:{sender}",
            self.limits.rate_per_second,
            self.limits.rate_burst,
        )
        return RateDecision(bool(int(allowed)), float(wait))
