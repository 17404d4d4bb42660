"""The event pipe (DESIGN.md): a Rasa event broker that appends every tracker
event to a Redis Stream, and the consumer-group reader the desk, the archiver
and analytics build on.

Rasa loads the broker by module path from endpoints.yml (`event_broker: type:
bot.events.stream.RedisStreamBroker`) and calls `publish` with each event as a
dict, in order, as the tracker store saves it. Each stream entry holds the
conversation id and the event as JSON. The stream is capped (approximately,
so trimming stays cheap) at `max_length` entries.

A consumer reads with a consumer group: Redis remembers per group what was
delivered and what was acknowledged. A consumer that restarts under the same
name first gets what it had been given and not acknowledged (so a crash
between reading and handling loses nothing), then new entries; what it
acknowledged never comes again. Entries a dead consumer held longer than
`claim_after_ms` are taken over by the live ones (XAUTOCLAIM).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List

import redis
from rasa.core.brokers.broker import EventBroker
from rasa.utils.endpoints import EndpointConfig
from redis import asyncio as aioredis

from bot import fast_json
from bot.settings import get_settings

logger = logging.getLogger(__name__)

STREAM = "events"
DEFAULT_MAX_LENGTH = 1_000_000


class RedisStreamBroker(EventBroker):
    """Appends each tracker event to the Redis Stream `stream` (XADD)."""

    def __init__(self, url: str, stream: str = STREAM, max_length: int = DEFAULT_MAX_LENGTH):
        self.stream = stream
        self.max_length = max_length
        # Synchronous: Rasa's publish is. A local XADD takes well under a millisecond.
        self.client = redis.Redis.from_url(url, socket_timeout=5)

    @classmethod
    async def from_endpoint_config(
        cls, broker_config: EndpointConfig, event_loop: asyncio.AbstractEventLoop | None = None
    ) -> RedisStreamBroker:
        url = broker_config.url or get_settings().redis_url
        if not url:
            raise RuntimeError("the event broker needs REDIS_URL (`bot run` sets it)")
        kwargs = broker_config.kwargs
        return cls(url, kwargs.get("stream", STREAM),
                   int(kwargs.get("max_length", DEFAULT_MAX_LENGTH)))

    def publish(self, event: Dict[str, Any]) -> None:
        fields = entry_fields(event)
        try:
            self.client.xadd(self.stream, fields, maxlen=self.max_length, approximate=True)
        except redis.RedisError:
            # The tracker store already saved the event: the conversation goes on, and
            # the archive can be rebuilt from the trackers. Say so loudly.
            logger.exception("event pipe: could not append an event of %s", event.get("sender_id"))

    def publish_many(self, events: List[Dict[str, Any]]) -> None:
        """Several events in one round trip (a turn's, in order)."""
        if not events:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.xadd(self.stream, entry_fields(event), maxlen=self.max_length,
                              approximate=True)
                pipe.execute()
        except redis.RedisError:
            logger.exception("event pipe: could not append %d events of %s", len(events),
                             events[0].get("sender_id"))

    def is_ready(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    async def close(self) -> None:
        self.client.close()


def entry_fields(event: Dict[str, Any]) -> Dict[str, str]:
    """A stream entry's fields for an event (with its "sender_id")."""
    return {
        "sender_id": str(event.get("sender_id") or ""),
        "event": fast_json.dumps(event),
    }


@dataclass
class Entry:
    id: str
    sender_id: str
    event: Dict[str, Any]


Handler = Callable[[Entry], Awaitable[None]]


class StreamConsumer:
    """One consumer of a consumer group on the event stream."""

    def __init__(
        self, client: aioredis.Redis, group: str, name: str, stream: str = STREAM,
        claim_after_ms: int = 60_000,
    ) -> None:
        self.client = client
        self.group = group
        self.name = name
        self.stream = stream
        self.claim_after_ms = claim_after_ms
        # Each read used to make four round trips (create the group, look at what
        # this consumer holds, claim dead consumers' entries, read new ones):
        # most of the desk's CPU per message under load. The group is made once
        # (again if Redis lost it), held entries are looked at on start and after
        # a failure, and dead consumers' entries every half claim period.
        self._group_ready = False
        self._check_held = True
        self._claimed_at = float("-inf")

    async def ensure_group(self) -> None:
        try:
            # "0": a new group starts with everything the stream still holds.
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except aioredis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    async def read(self, count: int = 100, block_ms: int | None = None) -> List[Entry]:
        """What this consumer holds unacknowledged (after a restart), then entries
        of dead consumers held too long, then new ones."""
        try:
            if not self._group_ready:
                await self.ensure_group()
            if self._check_held:
                held = await self._read("0", count, None)
                if held:
                    return held
                self._check_held = False
            now = asyncio.get_running_loop().time()
            if (now - self._claimed_at) * 1000 >= self.claim_after_ms / 2:
                self._claimed_at = now
                claimed = await self._claim(count)
                if claimed:
                    return claimed
            return await self._read(">", count, block_ms)
        except (aioredis.RedisError, OSError):
            # Redis restarted (the group may be gone) or is away: start over.
            self._group_ready = False
            self._check_held = True
            raise

    async def ack(self, entries: List[Entry]) -> None:
        if entries:
            await self.client.xack(self.stream, self.group, *[e.id for e in entries])

    async def run_once(self, handle: Handler, count: int = 100, block_ms: int | None = None) -> int:
        """Read, handle each entry in order, acknowledge each once handled."""
        entries = await self.read(count, block_ms)
        try:
            for entry in entries:
                await handle(entry)
                await self.ack([entry])
        except BaseException:
            self._check_held = True  # what wasn't handled comes again first
            raise
        return len(entries)

    async def _read(self, start: str, count: int, block_ms: int | None) -> List[Entry]:
        found = await self.client.xreadgroup(
            self.group, self.name, {self.stream: start}, count=count, block=block_ms
        )
        return [entry for _, rows in found or [] for entry in map(_entry, rows) if entry]

    async def _claim(self, count: int) -> List[Entry]:
        result = await self.client.xautoclaim(
            self.stream, self.group, self.name, self.claim_after_ms, "0-0", count=count
        )
        rows = result[1] if isinstance(result, (list, tuple)) and len(result) > 1 else []
        return [entry for entry in map(_entry, rows) if entry]


def _entry(row: Any) -> Entry | None:
    entry_id, fields = row
    if not fields:  # deleted meanwhile (trimmed)
        return None
    fields = {_text(k): _text(v) for k, v in fields.items()}
    return Entry(_text(entry_id), fields.get("sender_id", ""), fast_json.loads(fields["event"]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
