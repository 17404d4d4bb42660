"""Replies owed to WeChat customers, kept in Redis until delivered.

A turn that misses WeChat's passive window is answered "success", and WeChat
never sends that message again: the reply goes out later through the
customer-service API. If the instance owing it died first, the reply was lost.
So, before "success" is answered, the debt is written down
(`wechat:<app>:owed`: a sorted set of message ids scored by when their
lease ends, the messages themselves in a hash, the owner in another). The
instance at work renews its lease while the turn runs and settles the debt
once the reply is delivered (or its failure recorded for the desk).

Every instance sweeps every SWEEP_SECONDS for debts whose lease ended (their
instance died or hung) and takes them over: it runs the message again with
its retry key, so a turn the dead instance stored is answered from the store
(bot.repeated_messages) and one it never stored runs now, and delivers that.
Delivery is at least once: an instance that dies between WeChat's API taking
the reply and settling the debt leaves a reply that is sent again. A message
taken over MAX_TAKEOVERS times (its turn kills the server?) gets the trouble
notice instead of yet another try.

Times are Redis's own (TIME in the scripts): instances' clocks may disagree.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable

from redis import asyncio as aioredis

from connectors.leases import renew_until_done

logger = logging.getLogger(__name__)

LEASE_SECONDS = 10.0  # renewed every third: a live owner never loses it
SWEEP_SECONDS = 2.0
SWEEP_BATCH = 20
MAX_TAKEOVERS = 3

_NOW_MS = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)"
# KEYS: owed, messages, owners, takeovers. ARGV: id, message JSON, owner, lease ms.
_OWE = _NOW_MS + """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
return 1
"""
# ARGV: id, owner, lease ms. 1 renewed; 0 no longer this owner's (taken over, settled).
_RENEW = _NOW_MS + """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
# ARGV: id, owner.
_SETTLE = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"""
# ARGV: owner, lease ms, batch. The debts whose lease ended, now the owner's,
# each counted as taken over once more: [id, message JSON, times taken over, ...].
# One whose message is missing is dropped.
_TAKE_DUE = _NOW_MS + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local taken = {}
for _, id in ipairs(due) do
  local message = redis.call('HGET', KEYS[2], id)
  if message then
    local count = redis.call('HINCRBY', KEYS[4], id, 1)
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    redis.call('HSET', KEYS[3], id, ARGV[1])
    table.insert(taken, id)
    table.insert(taken, message)
    table.insert(taken, count)
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  end
end
return taken
"""


@dataclass
class OwedReply:
    """What it takes to run the message again and deliver its reply."""

    message_id: str  # the WeChat message's de-duplication id, also its retry key
    conversation: str
    text: str
    metadata: dict[str, Any]
    language: str
    takeovers: int = field(default=0, compare=False)  # kept apart in Redis

    def dumps(self) -> str:
        data = asdict(self)
        data.pop("takeovers")
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str) -> OwedReply:
        return cls(**json.loads(raw))


class Deliveries:
    def __init__(self, redis: aioredis.Redis, app_id: str, lease_seconds: float = LEASE_SECONDS):
        base = f"wechat:{app_id}:owed"
        self.redis = redis
        self.keys = (base, f"{base}:message", f"{base}:owner", f"{base}:takeovers")
        self.lease_ms = int(lease_seconds * 1000)

    async def owe(self, owed: OwedReply, owner: str) -> None:
        await self.redis.eval(_OWE, 4, *self.keys, owed.message_id, owed.dumps(), owner,
                              self.lease_ms)

    async def renew(self, message_id: str, owner: str) -> bool:
        return bool(await self.redis.eval(_RENEW, 4, *self.keys, message_id, owner,
                                          self.lease_ms))

    async def settle(self, message_id: str, owner: str) -> bool:
        return bool(await self.redis.eval(_SETTLE, 4, *self.keys, message_id, owner))

    async def take_due(self, owner: str, batch: int = SWEEP_BATCH) -> list[OwedReply]:
        flat = await self.redis.eval(_TAKE_DUE, 4, *self.keys, owner, self.lease_ms, batch)
        taken = []
        for message_id, raw, count in zip(flat[0::3], flat[1::3], flat[2::3], strict=True):
            try:
                owed = OwedReply.loads(raw)
                owed.takeovers = int(count)
                taken.append(owed)
            except (ValueError, TypeError):  # written by another version? drop it, loudly
                logger.error("owed WeChat reply %s could not be read: %.200s", message_id, raw)
                await self.settle(message_id, owner)
        return taken

    async def keep(self, message_id: str, owner: str, work: Awaitable[object]) -> None:
        """Renew the lease every third of it until `work` is done (or the debt
        was taken over), then wait for `work`."""
        done = asyncio.ensure_future(work)
        await renew_until_done(done, self.lease_ms / 3000, lambda: self.renew(message_id, owner),
                               f"the reply owed for WeChat message {message_id}")
        await done
