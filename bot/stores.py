"""Rasa tracker and lock stores configured by URL from the environment.

Rasa's own SQL and Redis stores take host/port/db fields from endpoints.yml;
these subclasses take one URL each from the settings instead, so the embedded
default (SQLite under var/, the embedded Redis) and the scale-out setup
(PostgreSQL, a shared Redis) differ only in environment variables.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, TypeVar

import redis
from rasa.core.brokers.broker import EventBroker
from rasa.core.lock import TicketLock
from rasa.core.lock_store import (
    DEFAULT_SOCKET_TIMEOUT_IN_SECONDS,
    LOCK_LIFETIME,
    LockError,
    RedisLockStore,
)
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig
from redis import asyncio as aioredis
from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import QueuePool

from bot import fast_json
from bot.events.stream import RedisStreamBroker
from bot.settings import get_settings
from bot.shop.database import sqlite_pragmas

T = TypeVar("T")
# Worker threads for a server database (PostgreSQL): turns of different
# conversations read and write at once.
SERVER_DB_THREADS = 4


def sqlalchemy_url(url: str) -> str:
    """Normalize a database URL for SQLAlchemy 1.4 and create SQLite's folder."""
    if url.startswith("postgres://"):  # Heroku-style; SQLAlchemy 1.4 wants postgresql
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return url


def _tracker_pragmas(dbapi_connection: Any, record: Any) -> None:
    # The shop's settings (write-ahead log: readers such as the desk don't wait
    # for a writer), and synchronous=NORMAL: a commit appends to the log without
    # an fsync each time; a crash of the process loses nothing (a power cut may
    # lose the last turns).
    sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# On a tracker this store read: how many of its events are stored (bot.stores).
STORED_EVENTS = "_stored_events"
# Rasa's SQLTrackerStore table ("events") and `_event_query`'s meaning: with no
# SessionStarted, all of the conversation; else the events from the latest.
_SESSION_EVENTS = text(
    "WITH latest AS (SELECT max(timestamp) AS start FROM events "
    "WHERE sender_id = :sender AND type_name = 'session_started') "
    "SELECT events.data FROM events, latest WHERE events.sender_id = :sender "
    "AND (latest.start IS NULL OR events.timestamp >= latest.start) ORDER BY events.id"
)
_ALL_EVENTS = text("SELECT data FROM events WHERE sender_id = :sender ORDER BY id")


class URLTrackerStore(SQLTrackerStore):
    """SQL tracker store at settings.tracker_db_url (SQLite or PostgreSQL).

    Rasa's SQLTrackerStore runs its queries on the event loop, so every turn of
    every conversation waits for every other conversation's database work, and
    its `save` reads and rebuilds the whole stored conversation once more only
    to tell which events are new. Here reads and writes run in a worker thread
    (one for SQLite, which takes one writer at a time anyway; a few for a
    server database), a save counts the stored events instead of rebuilding
    them, and the new events go to the event pipe after they are committed
    (a consumer that reads the transcript then finds them).
    """

    def __init__(
        self,
        domain: Domain | None = None,
        host: str | None = None,
        event_broker: EventBroker | None = None,
        **kwargs: Any,
    ) -> None:
        url = sqlalchemy_url(host or get_settings().tracker_db_url)
        # SQLTrackerStore uses a host containing "://" as the whole database URL.
        super().__init__(domain=domain, host=url, event_broker=event_broker, **kwargs)
        workers = 1 if url.startswith("sqlite") else SERVER_DB_THREADS
        if url.startswith("sqlite"):
            # Rasa's engine opens and closes a SQLite connection (and its pragmas)
            # for every read and write: a third of the store thread's time under
            # load. A small pool keeps them open; the connections are used by one
            # thread at a time (the store's own, or the desk's writer).
            engine_url = self.engine.url
            self.engine.dispose()
            self.engine = create_engine(engine_url, poolclass=QueuePool, pool_size=2,
                                        max_overflow=4,
                                        connect_args={"check_same_thread": False})
            event.listen(self.engine, "connect", _tracker_pragmas)
            self.sessionmaker = sessionmaker(bind=self.engine)
        self._io = ThreadPoolExecutor(workers, thread_name_prefix="tracker-store")

    async def in_store_thread(self, work: Callable[..., T], *args: Any) -> T:
        """`work` in the store's own thread(s), where its database work belongs."""
        return await asyncio.get_running_loop().run_in_executor(self._io, work, *args)

    async def keys(self) -> Iterable[str]:
        return await self.in_store_thread(self._keys)

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        return await self.in_store_thread(self._read, sender_id, False)

    async def retrieve_full_tracker(self, conversation_id: str) -> DialogueStateTracker | None:
        return await self.in_store_thread(self._read, conversation_id, True)

    async def save(self, tracker: DialogueStateTracker) -> None:
        await self.in_store_thread(self._write, tracker)

    def _keys(self) -> list[str]:
        with self.session_scope() as session:
            return [sender_id for (sender_id,) in
                    session.query(self.SQLEvent.sender_id).distinct().all()]

    def _read(self, sender_id: str, all_sessions: bool) -> DialogueStateTracker | None:
        # Rasa's `_event_query` (the latest session's events, or all, in id order)
        # as one plain statement reading only the events' JSON: its ORM query
        # rebuilt and re-keyed the statement and made an object per row, about a
        # tenth of the Rasa server's Python time under load.
        query = _ALL_EVENTS if all_sessions else _SESSION_EVENTS
        with self.session_scope() as session:
            data = session.execute(query, {"sender": sender_id}).scalars().all()
            events = [fast_json.loads(raw) for raw in data]
        if not (self.domain and events):
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        if not all_sessions and len(tracker.events) == len(events):
            # What is stored of the current session: its save need not count it again.
            tracker.__dict__[STORED_EVENTS] = len(events)
        return tracker

    def _write(self, tracker: DialogueStateTracker) -> None:
        rows: list[dict[str, Any]] = []
        bodies: list[dict[str, Any]] = []
        # Rasa's save counts the stored events of the session (a query per save) to
        # tell which are new. A tracker this store read knows that number; every
        # write of a conversation holds its lock, so nothing was added meanwhile.
        stored = tracker.__dict__.get(STORED_EVENTS)
        with self.session_scope() as session:
            new_events = (
                itertools.islice(tracker.events, stored, None) if stored is not None
                else self._additional_events(session, tracker)
            )
            for event in new_events:
                data = event.as_dict()
                rows.append({
                    "sender_id": tracker.sender_id,
                    "type_name": event.type_name,
                    "timestamp": data.get("timestamp"),
                    "intent_name": (data.get("parse_data") or {}).get("intent", {}).get("name"),
                    "action_name": data.get("name"),
                    "data": fast_json.dumps(data),
                })
                bodies.append({"sender_id": tracker.sender_id, **data})
            if rows:
                # One multi-row INSERT, not the ORM's unit of work per event (the
                # same rows: Rasa's columns and its JSON of each event).
                session.execute(self.SQLEvent.__table__.insert(), rows)
            session.commit()
        # All of it is stored now: a later save of this tracker (a new
        # conversation's, created and saved at its first message) adds what is new.
        tracker.__dict__[STORED_EVENTS] = len(tracker.events)
        if isinstance(self.event_broker, RedisStreamBroker):
            self.event_broker.publish_many(bodies)  # one round trip for the turn's events
        elif self.event_broker is not None:
            for body in bodies:
                self.event_broker.publish(body)


# Rasa polls a conversation's lock once a second while another turn holds it: a
# customer who sends a second message while the first is answered waits up to a
# second more. Here the turn that lets go wakes the next ticket's waiter at once
# (it pushes to that ticket's wake list, on which the waiter blocks with BLPOP,
# across processes); the waiter still looks again every LOCK_POLL_SECONDS in
# case the holder died without letting go (its ticket then expires).
LOCK_POLL_SECONDS = 1.0
# A wake-up nobody took (the waiter saw its turn before blocking) lasts this long.
WAKE_TTL_MS = 60_000

# Rasa changes a lock by reading, changing and writing it back: two processes
# sharing the lock store (Rasa instances behind a load balancer, the desk
# writing an agent's line) can undo each other's change, and a ticket that
# vanishes makes the waiting turn fail ("Could not acquire lock": the
# customer's message is dropped). Each change here is this one script, which
# Redis runs atomically, on Rasa's own format (TicketLock.dumps: tickets are
# JSON strings in a JSON list), so it is also one round trip instead of five.
# KEYS: the lock, then the prefix of its wake lists (one per ticket number).
# ARGV: operation, now (the caller's clock, as Rasa's tickets use), the
# conversation id, then the lifetime (issue, take) or the ticket number, the
# wake list's time to live, and (poll) the lifetime of a ticket taken again.
# `take` is `issue` that also answers whether the new ticket is served at once
# (no other turn of the conversation running: nearly always), saving a `poll`.
_LOCK_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
local op, now = ARGV[1], tonumber(ARGV[2])
if raw == false and op ~= 'issue' and op ~= 'take' then
  return -1
end
local tickets = {}
if raw then
  for _, encoded in ipairs(cjson.decode(raw).tickets) do
    local ticket = cjson.decode(encoded)
    if ticket.expires >= now then table.insert(tickets, ticket) end
  end
end
local result = 0
local first = 0
if op == 'issue' or op == 'take' then
  local last = -1
  if #tickets > 0 then last = tickets[#tickets].number end
  result = last + 1
  table.insert(tickets, {number = result, expires = now + tonumber(ARGV[4])})
  if op == 'take' and tickets[1].number == result then
    first = 1
    redis.call('DEL', KEYS[2] .. tostring(result))
  end
elseif op == 'poll' then
  local mine = tonumber(ARGV[4])
  local held = false
  for _, t in ipairs(tickets) do
    if t.number == mine then held = true break end
  end
  if #tickets == 0 then
    -- Every ticket expired, ours too (it waited out a dead holder's lifetime):
    -- the lock is free, so ours is taken again rather than waited on for ever.
    table.insert(tickets, {number = mine, expires = now + tonumber(ARGV[6])})
    held = true
  end
  if not held then
    result = -1  -- ours expired while a later ticket lives: gone, as Rasa says
  elseif tickets[1].number == mine then
    result = 1
    redis.call('DEL', KEYS[2] .. ARGV[4])
  end
elseif op == 'finish' or op == 'cleanup' then
  local ticket = tonumber(ARGV[4])
  for i, t in ipairs(tickets) do
    if t.number == ticket then table.remove(tickets, i) break end
  end
  if #tickets > 0 then
    local wake = KEYS[2] .. tostring(tickets[1].number)
    redis.call('RPUSH', wake, 1)
    redis.call('PEXPIRE', wake, tonumber(ARGV[5]))
  end
end
if op == 'cleanup' and #tickets == 0 then
  redis.call('DEL', KEYS[1])
  return result
end
local encoded = {}
for i, t in ipairs(tickets) do
  encoded[i] = cjson.encode(cjson.encode({number = t.number, expires = t.expires}))
end
local lock = '{"conversation_id": ' .. cjson.encode(ARGV[3]) .. ', "tickets": ['
lock = lock .. table.concat(encoded, ', ') .. ']}'
redis.call('SET', KEYS[1], lock)
if op == 'take' then return {result, first} end
return result
"""


class RedisURLLockStore(RedisLockStore):
    """Redis lock store at REDIS_URL (`bot run` sets it to the embedded Redis).

    `lock()` talks to Redis asynchronously: Rasa's store makes blocking calls on
    the event loop, each of which also gives up the GIL to the inference thread
    (bot.rasa_threads) and waits to get it back.
    """

    def __init__(self, endpoint_config: EndpointConfig | None = None) -> None:
        url = (endpoint_config.url if endpoint_config else None) or get_settings().redis_url
        if not url:
            raise RuntimeError(
                "REDIS_URL is not set. Start the service with `bot run` (it starts "
                "an embedded Redis), or set REDIS_URL to your Redis server."
            )
        prefix = endpoint_config.kwargs.get("key_prefix") if endpoint_config else None
        super().__init__(key_prefix=prefix)
        self.url = url
        # Replace the client RedisLockStore made from host/port with one from the URL
        # (which may carry a password, a database number or a unix socket).
        self.red = redis.StrictRedis.from_url(
            url, socket_timeout=DEFAULT_SOCKET_TIMEOUT_IN_SECONDS
        )
        self._script = self.red.register_script(_LOCK_SCRIPT)
        self._async: tuple[asyncio.AbstractEventLoop, Any, Any] | None = None

    def _async_client(self) -> tuple[Any, Any]:
        """An asyncio client of the running loop's own, and the lock script on it."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = aioredis.Redis.from_url(
                self.url, socket_timeout=DEFAULT_SOCKET_TIMEOUT_IN_SECONDS
            )
            self._async = (loop, client, client.register_script(_LOCK_SCRIPT))
        return self._async[1], self._async[2]

    def _async_script(self) -> Any:
        return self._async_client()[1]

    async def _woken(self, wake_key: str, seconds: float) -> None:
        """Until the ticket before ours lets go, or `seconds` at most."""
        client, _ = self._async_client()
        try:
            await client.blpop([wake_key], timeout=seconds)
        except redis.RedisError as error:
            raise LockError(f"Lock store error (wait): {error}") from error

    def _keys(self, conversation_id: str) -> list[str]:
        return [self.key_prefix + conversation_id, self._wake_prefix(conversation_id)]

    def _wake_prefix(self, conversation_id: str) -> str:
        return f"{self.key_prefix}wake:{conversation_id}:"

    def _args(self, operation: str, conversation_id: str, value: float,
              lifetime: float = LOCK_LIFETIME) -> list[Any]:
        return [operation, repr(time.time()), conversation_id, value, WAKE_TTL_MS, lifetime]

    def _run(self, operation: str, conversation_id: str, value: float) -> int:
        try:
            return int(self._script(keys=self._keys(conversation_id),
                                    args=self._args(operation, conversation_id, value)))
        except redis.RedisError as error:
            raise LockError(f"Lock store error ({operation}): {error}") from error

    async def _run_async(self, operation: str, conversation_id: str, value: float,
                         lifetime: float = LOCK_LIFETIME) -> int:
        try:
            return int(await self._async_script()(
                keys=self._keys(conversation_id),
                args=self._args(operation, conversation_id, value, lifetime)))
        except redis.RedisError as error:
            raise LockError(f"Lock store error ({operation}): {error}") from error

    async def _take(self, conversation_id: str, lock_lifetime: float) -> tuple[int, int]:
        """A new ticket, and 1 if it is served at once."""
        try:
            ticket, serving = await self._async_script()(
                keys=self._keys(conversation_id),
                args=self._args("take", conversation_id, lock_lifetime))
        except redis.RedisError as error:
            raise LockError(f"Lock store error (take): {error}") from error
        return int(ticket), int(serving)

    @asynccontextmanager
    async def lock(
        self,
        conversation_id: str,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: float = 1,
    ) -> AsyncIterator[TicketLock]:
        """Rasa's ticket lock (same tickets, same order, same errors), without blocking."""
        ticket, serving = await self._take(conversation_id, lock_lifetime)
        try:
            wait = min(wait_time_in_seconds, LOCK_POLL_SECONDS)
            while not serving:
                await self._woken(f"{self._wake_prefix(conversation_id)}{ticket}", wait)
                serving = await self._run_async("poll", conversation_id, ticket, lock_lifetime)
                if serving < 0:  # the lock expired and is gone
                    raise LockError(
                        f"Could not acquire lock for conversation_id '{conversation_id}'."
                    )
            yield TicketLock(conversation_id)
        finally:
            await self._run_async("cleanup", conversation_id, ticket)

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        return self._run("issue", conversation_id, lock_lifetime)

    def update_lock(self, conversation_id: str) -> None:
        self._run("expire", conversation_id, 0)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        self._run("finish", conversation_id, ticket_number)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        self._run("cleanup", conversation_id, ticket_number)
