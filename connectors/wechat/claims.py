"""Which copy of a WeChat message processes it, agreed in Redis by all instances.

WeChat retries a message it got no answer to within 5 s (three times in all,
~15 s, same MsgId); a load balancer may send the copies to different
instances. The first copy claims the message (SET NX) and holds a lease on it
that it renews while its turn runs. Later copies read what became of it:

- "processing:<owner>": the owner is still at work. While its lease is live,
  a copy waits for the answer and, if none comes in time, turns the message
  to the customer-service API (the owner delivers there). If the lease has
  lapsed, the owner died (or hung) mid-turn: the copy takes the claim over
  and processes the message itself, so the reply is not lost.
- "async:<owner>": the owner delivers through the API (WeChat was told "success").
- "passive:<reply>": answered in WeChat's window; a retry gets the same reply.

The lease is short and renewed (every third of it) rather than longer than
any turn: WeChat's retries all come within ~15 s, so a lease that outlived a
turn's time-out (10 s per action, several actions a turn) would lapse only
when nobody was left to take over.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable

from redis import asyncio as aioredis

from connectors.leases import renew_until_done

logger = logging.getLogger(__name__)

# WeChat's retries come within ~15 s; an hour leaves room for slow ones.
SEEN_TTL_SECONDS = 3600
DEFAULT_LEASE_SECONDS = 3.0  # a normal turn takes well under a second
MIN_LEASE_SECONDS = 0.5
# A copy waits at most this long (WeChat gives up on each request after 5 s):
# a lease up to MAX_LEASE_SECONDS always lapses within it if its owner died.
RETRY_WAIT_SECONDS = 4.5
MAX_LEASE_SECONDS = 4.0
POLL_SECONDS = 0.2

PROCESSING, ASYNC, PASSIVE = "processing:", "async:", "passive:"

_CLAIM = """
if redis.call('SET', KEYS[1], 'processing:' .. ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# A later copy: take over a claim whose lease lapsed, else say what became of it.
_CHECK = """
local state = redis.call('GET', KEYS[1])
if state and string.sub(state, 1, 10) == 'processing' then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('SET', KEYS[1], 'processing:' .. ARGV[1], 'KEEPTTL')
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
    return 'taken'
  end
  return 'live'
end
return state or 'gone'
"""
_RENEW = """
if redis.call('GET', KEYS[2]) == ARGV[1]
   and redis.call('GET', KEYS[1]) == 'processing:' .. ARGV[1] then
  return redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 0
"""
# The owner answers passively only if the message is still its own and in work.
_TAKE_PASSIVE = """
if redis.call('GET', KEYS[1]) == 'processing:' .. ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""
# The owner, out of time: its own message goes to the API. Returns 'async' when
# the owner is to deliver (it set that, or a copy did for it), else the state.
_GO_ASYNC = """
local state = redis.call('GET', KEYS[1])
if state == 'processing:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'async:' .. ARGV[1], 'KEEPTTL')
  return 'async'
end
if state == 'async:' .. ARGV[1] then
  return 'async'
end
return state or 'gone'
"""
# A copy that saw the owner alive and at work: its reply goes to the API.
_HAND_TO_API = """
local state = redis.call('GET', KEYS[1])
if state and string.sub(state, 1, 10) == 'processing' then
  state = 'async' .. string.sub(state, 11)
  redis.call('SET', KEYS[1], state, 'KEEPTTL')
end
return state or 'gone'
"""


@dataclass(frozen=True)
class Outcome:
    """What a later copy makes of the claim: `take_over` (process it here),
    else `reply` (the passive reply given, to give again) or nothing to add."""

    take_over: bool = False
    reply: str | None = None


class Claims:
    def __init__(
        self, redis: aioredis.Redis, app_id: str, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> None:
        self.redis = redis
        self.prefix, self.lease_prefix = f"wechat:{app_id}:seen:", f"wechat:{app_id}:lease:"
        self.lease_ms = int(lease_seconds * 1000)

    def _keys(self, dedup_id: str) -> tuple[str, str]:
        return self.prefix + dedup_id, self.lease_prefix + dedup_id

    async def claim(self, dedup_id: str, owner: str) -> bool:
        """True for the first copy: it processes the message."""
        keys = self._keys(dedup_id)
        return bool(
            await self.redis.eval(_CLAIM, 2, *keys, owner, self.lease_ms, SEEN_TTL_SECONDS)
        )

    async def renew(self, dedup_id: str, owner: str) -> bool:
        """Extend the owner's lease; False once the message is answered or taken over."""
        return bool(await self.redis.eval(_RENEW, 2, *self._keys(dedup_id), owner, self.lease_ms))

    async def keep_lease(self, dedup_id: str, owner: str, work: Awaitable[object]) -> None:
        """Renew the lease every third of it until `work` is done (or the
        message is answered: a lease matters only while it is in work)."""
        await renew_until_done(
            asyncio.ensure_future(work), self.lease_ms / 3000,
            lambda: self.renew(dedup_id, owner), f"WeChat message {dedup_id}",
        )

    async def answer_passively(self, dedup_id: str, owner: str, text: str) -> bool:
        """May the owner answer with `text`? (No if a copy turned it to the API or took it.)"""
        key, _ = self._keys(dedup_id)
        return bool(await self.redis.eval(_TAKE_PASSIVE, 1, key, owner, PASSIVE + text))

    async def go_async(self, dedup_id: str, owner: str) -> bool:
        """The owner's message goes through the API: True if the owner is to
        deliver it (False: a copy took it over, or it was answered)."""
        key, _ = self._keys(dedup_id)
        return await self.redis.eval(_GO_ASYNC, 1, key, owner) == "async"

    async def await_outcome(self, dedup_id: str, owner: str) -> Outcome:
        """For a later copy: wait (within WeChat's window) for the owner's answer
        while its lease is live; take over if the lease lapses."""
        keys = self._keys(dedup_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_WAIT_SECONDS
        while True:
            state = await self.redis.eval(_CHECK, 2, *keys, owner, self.lease_ms)
            if state == "taken":
                return Outcome(take_over=True)
            if state != "live":
                return _outcome(state)
            if loop.time() + POLL_SECONDS > deadline:
                # The lease was renewed while this copy waited: the owner is alive.
                return _outcome(await self.redis.eval(_HAND_TO_API, 1, keys[0]))
            await asyncio.sleep(POLL_SECONDS)


def _outcome(state: str) -> Outcome:
    if state.startswith(PASSIVE):
        return Outcome(reply=state[len(PASSIVE) :])
    return Outcome()
