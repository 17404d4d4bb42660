"""Rasa tracker and lock stores configured by URL from the environment.

Rasa's own SQL and Redis stores take host/port/db fields from endpoints.yml;
these subclasses take one URL each from the settings instead, so the embedded
default (SQLite under var/, the embedded Redis) and the scale-out setup
(PostgreSQL, a shared Redis) differ only in environment variables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

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
from rasa.utils.endpoints import EndpointConfig

from bot.settings import get_settings


def sqlalchemy_url(url: str) -> str:
    """Normalize a database URL for SQLAlchemy 1.4 and create SQLite's folder."""
    if url.startswith("postgres://"):  # Heroku-style; SQLAlchemy 1.4 wants postgresql
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return url


class URLTrackerStore(SQLTrackerStore):
    """SQL tracker store at settings.tracker_db_url (SQLite or PostgreSQL)."""

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
