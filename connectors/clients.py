"""Shared clients of a connector process, created once per event loop.

Rasa runs one Sanic event loop per worker; a process that pushes (the desk,
`bot push`) has its own. A client bound to another loop can't be reused, so
the cache is keyed by the running loop.
"""

from __future__ import annotations

import asyncio
import os
import weakref

from redis import asyncio as aioredis

# Keyed by the loop object itself (weakly): a dead loop's id() can be reused
# by a new loop, which would then get a client bound to the closed one.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        raise RuntimeError("REDIS_URL is not set; `bot run` sets it for the Rasa server")
    return url


def get_redis(url: str | None = None) -> aioredis.Redis:
    """The async Redis client for the running loop (decoded strings)."""
    url = url or redis_url()
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(url)
    if client is None:
        # health_check_interval: notice a restarted Redis and reconnect
        # instead of failing the first command on a dead socket.
        client = aioredis.Redis.from_url(
            url, decode_responses=True, health_check_interval=10, socket_connect_timeout=5
        )
        per_loop[url] = client
    return client
