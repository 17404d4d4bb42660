"""Rasa tracker and lock stores configured by URL from the environment.

Rasa's own SQL and Redis stores take host/port/db fields from endpoints.yml;
these subclasses take one URL each from the settings instead, so the embedded
default (SQLite under var/, the embedded Redis) and the scale-out setup
(PostgreSQL, a shared Redis) differ only in environment variables.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

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

from bot.settings import get_settings

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
        self._io = ThreadPoolExecutor(workers, thread_name_prefix="tracker-store")

    async def _in_thread(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, work, *args)

    async def keys(self) -> Iterable[str]:
        return await self._in_thread(self._keys)

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        return await self._in_thread(self._read, sender_id, False)

    async def retrieve_full_tracker(self, conversation_id: str) -> DialogueStateTracker | None:
        return await self._in_thread(self._read, conversation_id, True)

    async def save(self, tracker: DialogueStateTracker) -> None:
        await self._in_thread(self._write, tracker)

    def _keys(self) -> list[str]:
        with self.session_scope() as session:
            return [sender_id for (sender_id,) in
                    session.query(self.SQLEvent.sender_id).distinct().all()]

    def _read(self, sender_id: str, all_sessions: bool) -> DialogueStateTracker | None:
        with self.session_scope() as session:
            rows = self._event_query(
                session, sender_id, fetch_events_from_all_sessions=all_sessions
            ).all()
            events = [json.loads(row.data) for row in rows]
        if not (self.domain and events):
            return None
        return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)

    def _write(self, tracker: DialogueStateTracker) -> None:
        with self.session_scope() as session:
            new_events = list(self._additional_events(session, tracker))
            for event in new_events:
                data = event.as_dict()
                session.add(self.SQLEvent(
                    sender_id=tracker.sender_id,
                    type_name=event.type_name,
                    timestamp=data.get("timestamp"),
                    intent_name=(data.get("parse_data") or {}).get("intent", {}).get("name"),
                    action_name=data.get("name"),
                    data=json.dumps(data),
                ))
            session.commit()
        if self.event_broker is not None:
            for event in new_events:
                self.event_broker.publish({"sender_id": tracker.sender_id, **event.as_dict()})


# Rasa polls a conversation's lock once a second while another turn holds it: a
# customer's message that arrives while the desk appends an agent's line to the
# same transcript (a few ms) would wait a whole second. Polling a local Redis
# every 20 ms costs nothing and keeps the wait near the holder's time.
LOCK_POLL_SECONDS = 0.02


class RedisURLLockStore(RedisLockStore):
    """Redis lock store at REDIS_URL (`bot run` sets it to the embedded Redis)."""

    def __init__(self, endpoint_config: EndpointConfig | None = None) -> None:
        url = (endpoint_config.url if endpoint_config else None) or get_settings().redis_url
        if not url:
            raise RuntimeError(
                "REDIS_URL is not set. Start the service with `bot run` (it starts "
                "an embedded Redis), or set REDIS_URL to your Redis server."
            )
        prefix = endpoint_config.kwargs.get("key_prefix") if endpoint_config else None
        super().__init__(key_prefix=prefix)
        # Replace the client RedisLockStore made from host/port with one from the URL
        # (which may carry a password, a database number or a unix socket).
        self.red = redis.StrictRedis.from_url(
            url, socket_timeout=DEFAULT_SOCKET_TIMEOUT_IN_SECONDS
        )

    async def _acquire_lock(
        self, conversation_id: str, ticket: int, wait_time_in_seconds: float
    ) -> TicketLock:
        return await super()._acquire_lock(
            conversation_id, ticket, min(wait_time_in_seconds, LOCK_POLL_SECONDS)
        )

    # Rasa changes a lock by reading, changing and writing it back: two processes
    # sharing the lock store (Rasa instances behind a load balancer, the desk
    # writing an agent's line) can undo each other's change, and a ticket that
    # vanishes makes the waiting turn fail ("Could not acquire lock": the
    # customer's message is dropped). Each change here is one Redis transaction
    # (WATCH/MULTI, again if the lock changed meanwhile).

    def _change(self, conversation_id: str, change: Callable[[TicketLock | None], Any]) -> Any:
        key = self.key_prefix + conversation_id
        with self.red.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    lock = TicketLock.from_dict(json.loads(raw)) if raw else None
                    result, after = change(lock)
                    pipe.multi()
                    if after is None:
                        pipe.delete(key)
                    else:
                        pipe.set(key, after.dumps())
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        def issue(lock: TicketLock | None) -> tuple[int, TicketLock]:
            lock = lock or TicketLock(conversation_id)
            return lock.issue_ticket(lock_lifetime), lock

        try:
            return self._change(conversation_id, issue)
        except redis.RedisError as error:
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    def update_lock(self, conversation_id: str) -> None:
        def expire(lock: TicketLock | None) -> tuple[None, TicketLock | None]:
            if lock is not None:
                lock.remove_expired_tickets()
            return None, lock

        self._change(conversation_id, expire)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        def finish(lock: TicketLock | None) -> tuple[None, TicketLock | None]:
            if lock is not None:
                lock.remove_ticket_for(ticket_number)
            return None, lock

        self._change(conversation_id, finish)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        def finish(lock: TicketLock | None) -> tuple[None, TicketLock | None]:
            if lock is None:
                return None, None
            lock.remove_ticket_for(ticket_number)
            # Kept while someone waits; gone, in the same step, when nobody does.
            return None, lock if lock.is_someone_waiting() else None

        self._change(conversation_id, finish)
