"""The app's outbox: every message for a customer, kept until fetched.

One Redis Stream per customer (`app:outbox:<customer id>`): XADD appends (the
stream id is the message id clients track), XRANGE serves a reconnecting or
polling client everything after the last id it saw. Length-capped and
expiring, so an app that never comes back doesn't keep messages forever.

Nothing is dropped silently: the append trims exactly (the latest
`max_length` kept) and records the newest id no longer kept (trimmed, or the
last of a stream that expired) and the newest id appended, in
`app:outbox:dropped:<customer id>` (kept 4× as long as the stream). A reader
whose `since` is older than what is dropped is told (`Batch.gap`): the client
fetches the conversation's history instead (GET /webhooks/app/history).

Open WebSockets learn of new messages through one pub/sub channel per Redis
database (`app:outbox:new:<db>`): every append PUBLISHes the customer id in the
same MULTI as its XADD, and each process runs one subscriber (`Wakeups`) that
wakes only its own sockets of that customer, which then XRANGE after their
cursor. Why this rather than one XREAD BLOCK over all local streams: the
socket keeps the plain "XRANGE after my cursor" loop (order, `since` resync and
reconnects work exactly as for polling clients), nothing re-issues an
XREAD of thousands of keys whenever a socket comes or goes, and a lost
notification costs latency, never a message: a socket wakes to XRANGE at least
every keepalive/presence interval anyway, and everyone is woken whenever the
subscription (re)starts, so a message appended while it was down is read too.
Every instance sees every notification; a PUBLISH is a few bytes, and a
process ignores customers it holds no socket for.

Redis connections: all of the channel's commands go through one bounded pool
per process (`OutboxConfig.max_connections`, the subscriber's connection
included), however many sockets are open; no command blocks server-side.

Presence (`app:presence:<customer id>`) is a sorted set of open sockets
scored by when each stops counting unless refreshed, so a server that dies
with sockets open doesn't leave the customer "online" for longer than the TTL.
A message appended while no socket is open triggers the app's push-notification
webhook, signed with HMAC-SHA256; a failing webhook is logged and the message
stays in the outbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from rasa.core.channels.channel import OutputChannel
from redis import asyncio as aioredis

from connectors.clients import PerLoop, redis_url
from connectors.identity import conversation_id, split_conversation_id
from connectors.rich import as_text

logger = logging.getLogger(__name__)

# What of a bot message an app can render; "agent" names the person who wrote it.
MESSAGE_KEYS = (
    "text",
    "buttons",
    "quick_replies",
    "image",
    "attachment",
    "custom",
    "elements",
    "agent",
)
PREVIEW_CHARS = 120
# A stream id as clients send it back: "<ms>" or "<ms>-<seq>"; "0" is "from the start".
# Used with fullmatch ("$" would let a trailing newline through); ASCII digits only.
_STREAM_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")

# One round trip, atomic: append, trim exactly, record what was trimmed, announce.
# (Redis 6.2, as embedded, has no XINFO max-deleted-entry-id to ask afterwards.)
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- A stream that expired: everything it held is gone.
  local last = redis.call('HGET', KEYS[2], 'last')
  if last then redis.call('HSET', KEYS[2], 'dropped', last) end
end
local id = redis.call('XADD', KEYS[1], '*', 'message', ARGV[1])
local keep = tonumber(ARGV[2])
local length = redis.call('XLEN', KEYS[1])
if length > keep then
  local dropped = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', length - keep)
  redis.call('XTRIM', KEYS[1], 'MAXLEN', keep)
  redis.call('HSET', KEYS[2], 'dropped', dropped[#dropped][1])
end
redis.call('HSET', KEYS[2], 'last', id)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return id
"""

# Strong references to webhook calls in flight (the loop keeps only weak ones).
_background: set[asyncio.Task[None]] = set()


class BadCursor(ValueError):
    pass


def stream_id_key(message_id: str) -> tuple[int, int]:
    """A stream id in Redis' order ("<ms>" is "<ms>-0")."""
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Batch:
    messages: list[tuple[str, dict[str, Any]]]
    # Messages newer than the reader's `since` are gone (trimmed or expired):
    # the client should fetch the history rather than trust the outbox is complete.
    gap: bool = False
    first_kept: str | None = None  # the oldest id still kept (None: nothing kept)
    dropped_up_to: str | None = None  # the newest id no longer kept, when there is a gap


def check_since(since: str | None) -> str:
    """A client's "last id I saw", validated; absent means from the start."""
    if since is None or since == "":
        return "0"
    if not isinstance(since, str) or not _STREAM_ID.fullmatch(since):
        raise BadCursor("since must be a message id such as 1700000000000-0, or 0")
    return since


def app_message(message: dict[str, Any]) -> dict[str, Any]:
    """The renderable part of a Rasa bot message (drops timestamps, template names…)."""
    return {k: message[k] for k in MESSAGE_KEYS if message.get(k) not in (None, "", [], {})}


@dataclass(frozen=True)
class OutboxConfig:
    max_length: int = 1000
    ttl_seconds: int = 7 * 24 * 3600
    presence_ttl_seconds: int = 60
    push_webhook_url: str | None = None
    push_webhook_secret: str | None = None
    push_timeout_seconds: float = 3.0
    # The process's Redis connections for the channel (sockets, polls, sends, pushes).
    max_connections: int = 16
    # How long a command waits for a free connection before failing (a RedisError).
    pool_timeout_seconds: float = 10.0


# Bounded clients, one per loop, URL and size (a client is bound to its loop).
_bounded: PerLoop[aioredis.Redis] = PerLoop()


def bounded_redis(url: str, max_connections: int, timeout: float) -> aioredis.Redis:
    """A client whose pool never holds more than `max_connections` connections;
    beyond that, commands wait for one (up to `timeout`) instead of opening more."""

    def make() -> aioredis.Redis:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            decode_responses=True,
            health_check_interval=10,
            socket_connect_timeout=5,
        )
        return aioredis.Redis(connection_pool=pool)

    return _bounded.get((url, max_connections, timeout), make)


class Outbox:
    def __init__(self, config: OutboxConfig, redis_url: str | None = None) -> None:
        self.config = config
        self.redis_url = redis_url  # None: REDIS_URL, read when first used

    def redis(self) -> aioredis.Redis:
        return bounded_redis(
            self.redis_url or redis_url(),
            self.config.max_connections,
            self.config.pool_timeout_seconds,
        )

    def wakeups(self) -> Wakeups:
        """This process's subscriber of new-message notifications (per loop)."""
        client = self.redis()
        return _wakeups.get(id(client), lambda: Wakeups(client, self.notify_channel()))

    def notify_channel(self) -> str:
        # Pub/sub ignores database numbers: the number goes into the name, so
        # deployments (or test sessions) on other databases of one server stay apart.
        db = self.redis().connection_pool.connection_kwargs.get("db", 0)
        return f"app:outbox:new:{db}"

    @staticmethod
    def stream_key(customer: str) -> str:
        return f"app:outbox:{customer}"

    @staticmethod
    def dropped_key(customer: str) -> str:
        return f"app:outbox:dropped:{customer}"

    @staticmethod
    def presence_key(customer: str) -> str:
        return f"app:presence:{customer}"

    # --- writing --------------------------------------------------------------

    async def append(self, customer: str, message: dict[str, Any]) -> str:
        """Adds a message; returns its id. Raises if Redis does (the caller must know)."""
        # The PUBLISH comes after the XADD in one script: a woken socket finds the message.
        message_id = await self.redis().eval(
            _APPEND,
            2,
            self.stream_key(customer),
            self.dropped_key(customer),
            json.dumps(message, ensure_ascii=False),
            self.config.max_length,
            self.config.ttl_seconds,
            self.config.ttl_seconds * 4,
            self.notify_channel(),
            customer,
        )
        return str(message_id)

    # --- reading --------------------------------------------------------------

    async def after(
        self, customer: str, since: str, count: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Messages with ids greater than `since`, oldest first."""
        return (await self.read(customer, since, count)).messages

    async def read(self, customer: str, since: str, count: int | None = None) -> Batch:
        """Messages with ids greater than `since`, and whether some such were dropped."""
        key = self.stream_key(customer)
        # "(" makes the start exclusive (Redis ≥ 6.2).
        start = "-" if since in ("0", "0-0") else f"({since}"
        # One transaction: the trim marks match the stream read.
        async with self.redis().pipeline(transaction=True) as pipe:
            pipe.xrange(key, start, "+", count=count)
            pipe.xrange(key, "-", "+", count=1)
            pipe.hmget(self.dropped_key(customer), "dropped", "last")
            entries, first, (dropped, last) = await pipe.execute()
        first_kept = str(first[0][0]) if first else None
        # No stream at all: it expired, with everything up to its last append.
        dropped_up_to = dropped if first_kept else last
        gap = bool(dropped_up_to) and stream_id_key(since) < stream_id_key(dropped_up_to)
        messages = [(str(i), _decode(fields)) for i, fields in entries]
        return Batch(messages, gap, first_kept, dropped_up_to if gap else None)

    async def last_id(self, customer: str) -> str:
        entries = await self.redis().xrevrange(self.stream_key(customer), count=1)
        return str(entries[0][0]) if entries else "0"

    # --- presence -------------------------------------------------------------

    async def mark_online(self, customer: str, socket_id: str) -> None:
        key = self.presence_key(customer)
        now = time.time()
        async with self.redis().pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {socket_id: now + self.config.presence_ttl_seconds})
            pipe.expire(key, self.config.presence_ttl_seconds)
            await pipe.execute()

    async def mark_offline(self, customer: str, socket_id: str) -> None:
        await self.redis().zrem(self.presence_key(customer), socket_id)

    async def is_online(self, customer: str) -> bool:
        # Instances of one service share NTP time; the TTL dwarfs any skew.
        return bool(await self.redis().zcount(self.presence_key(customer), time.time(), "+inf"))

    # --- push notifications ---------------------------------------------------

    def sign(self, body: bytes) -> str:
        secret = (self.config.push_webhook_secret or "").encode()
        return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()

    async def notify(self, customer: str, message_id: str, message: dict[str, Any]) -> bool:
        """POST the push-notification webhook; True when it answered 2xx. Never raises."""
        url = self.config.push_webhook_url
        if not url:
            return False
        preview = as_text(message)
        if len(preview) > PREVIEW_CHARS:
            preview = preview[: PREVIEW_CHARS - 1] + "…"
        body = json.dumps(
            {
                "customer_id": customer,
                "conversation_id": conversation_id("app", customer),
                "message_id": message_id,
                "preview": preview,
                # Lets the receiver refuse replays of an old, validly signed call.
                "sent_at": int(time.time()),
            },
            ensure_ascii=False,
        ).encode()
        headers = {"Content-Type": "application/json", "X-Signature": self.sign(body)}
        timeout = aiohttp.ClientTimeout(total=self.config.push_timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                # A redirect is not followed: the signed call would go wherever it points.
                session.post(url, data=body, headers=headers, allow_redirects=False) as answer,
            ):
                if answer.status // 100 == 2:
                    return True
                logger.warning(
                    "app push webhook answered HTTP %s%s for %s (message %s stays in the outbox)",
                    answer.status,
                    " (a redirect: not followed; configure the final URL)"
                    if answer.status // 100 == 3
                    else "",
                    customer,
                    message_id,
                )
        except Exception as error:  # any failure: log, keep the message
            logger.warning(
                "app push webhook failed for %s: %r (message %s stays in the outbox)",
                customer,
                error,
                message_id,
            )
        return False

    async def deliver(
        self, customer: str, message: dict[str, Any], wait_for_push: bool = False
    ) -> str | None:
        """Append a message; notify the push webhook if the customer has no open socket.

        `wait_for_push`: a process that pushes and then exits (a script, the desk's
        shutdown) awaits the (short-timeout) webhook call; the server doesn't.
        """
        message = app_message(message)
        if not message:
            return None
        message_id = await self.append(customer, message)
        if self.config.push_webhook_url and not await self._online_or_unknown(customer):
            call = self.notify(customer, message_id, message)
            if wait_for_push:
                await call
            else:
                task = asyncio.create_task(call)
                _background.add(task)
                task.add_done_callback(_background.discard)
        return message_id

    async def _online_or_unknown(self, customer: str) -> bool:
        try:
            return await self.is_online(customer)
        except Exception:  # the message is stored; skip the notification
            logger.exception("could not read app presence for %s", customer)
            return True


class Wakeups:
    """One pub/sub subscriber per process waking the local sockets of a customer.

    A socket `register`s an Event, clears it before each XRANGE and waits on it
    after: a notification that arrives in between leaves it set, so nothing
    slips through. The subscriber runs while at least one socket is registered.
    """

    RETRY_SECONDS = 1.0

    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self.client = client
        self.channel = channel
        self.waiters: dict[str, set[asyncio.Event]] = {}
        self.task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()  # for tests and the bench: the subscription is live

    def register(self, customer: str) -> asyncio.Event:
        event = asyncio.Event()
        event.set()  # read once before waiting
        self.waiters.setdefault(customer, set()).add(event)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        return event

    def unregister(self, customer: str, event: asyncio.Event) -> None:
        events = self.waiters.get(customer)
        if events is not None:
            events.discard(event)
            if not events:
                del self.waiters[customer]
        if not self.waiters and self.task is not None:
            # Nobody listens: give the connection back (also lets a test's loop close cleanly).
            self.task.cancel()
            self.task = None
            self.subscribed.clear()

    def _wake(self, customer: str) -> None:
        for event in self.waiters.get(customer, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self.waiters.values():
            for event in events:
                event.set()

    async def _run(self) -> None:
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    # The timeout only bounds each read; health checks ping a quiet connection.
                    message = await pubsub.get_message(timeout=30.0)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        self._wake(str(message["data"]))
                    elif message["type"] == "subscribe":
                        # Whatever was appended before this point was not announced to us.
                        self.subscribed.set()
                        self._wake_all()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("app outbox notifications interrupted: %r; resubscribing", error)
                self.subscribed.clear()
                self._wake_all()  # sockets XRANGE meanwhile instead of waiting a full interval
                await asyncio.sleep(self.RETRY_SECONDS)
            finally:
                await asyncio.shield(_close(pubsub))


async def _close(pubsub: Any) -> None:
    try:
        await pubsub.reset()
    except Exception:  # the connection is already gone
        logger.debug("closing the app outbox subscriber failed", exc_info=True)


# One subscriber per loop and bounded client.
_wakeups: PerLoop[Wakeups] = PerLoop()


def _decode(fields: dict[str, str]) -> dict[str, Any]:
    try:
        return json.loads(fields["message"])
    except (KeyError, ValueError):
        logger.warning("unreadable outbox entry: %r", fields)
        return {}


class AppOutput(OutputChannel):
    """Delivers bot, agent and proactive messages to an app customer: outbox + push.

    Each Rasa message is one outbox entry, whole (text with its buttons, image…):
    the app renders it natively, nothing is flattened to text.
    """

    def __init__(self, outbox: Outbox, wait_for_push: bool = False) -> None:
        self.outbox = outbox
        self.wait_for_push = wait_for_push
        self.message_ids: list[str] = []  # what this instance appended, in order

    @classmethod
    def name(cls) -> str:
        return "app"

    async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
        channel, customer = split_conversation_id(recipient_id)
        if channel != "app":
            raise ValueError(f"{recipient_id!r} is not an app conversation")
        message_id = await self.outbox.deliver(customer, message, self.wait_for_push)
        if message_id:
            self.message_ids.append(message_id)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self.send_response(recipient_id, {"text": text})
