"""Shared clients of a connector process, created once per event loop.

Rasa runs one Sanic event loop per worker; a process that pushes (the desk,
`bot push`) has its own. A client bound to another loop can't be reused, so
the cache is keyed by the running loop.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from redis import asyncio as aioredis

T = TypeVar("T")


class PerLoop(Generic[T]):
    """One object per running event loop and key, made on first use.

    Keyed by the loop object itself (weakly): a dead loop's id() can be reused
    by a new loop, which would then get an object bound to the closed one.
    """

    def __init__(self) -> None:
        self._items: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, T]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        items = self._items.setdefault(asyncio.get_running_loop(), {})
        if key not in items:
            items[key] = make()
        return items[key]


_clients: PerLoop[aioredis.Redis] = PerLoop()


def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        raise RuntimeError("REDIS_URL is not set; `bot run` sets it for the Rasa server")
    return url


def get_redis(url: str | None = None) -> aioredis.Redis:
    """The async Redis client for the running loop (decoded strings)."""
    url = url or redis_url()
    # health_check_interval: notice a restarted Redis and reconnect instead of
    # failing the first command on a dead socket.
    return _clients.get(
        url,
        lambda: aioredis.Redis.from_url(
            url, decode_responses=True, health_check_interval=10, socket_connect_timeout=5
        ),
    )
