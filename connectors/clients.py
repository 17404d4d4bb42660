"""Shared clients of a connector process, created once per event loop.

Rasa runs one Sanic event loop per worker; a process that pushes (the desk,
`bot push`) has its own. A client bound to another loop can't be reused, so
the cache is keyed by the running loop.
"""

from __future__ import annotations

import asyncio
import os

from redis import asyncio as aioredis

_clients: dict[tuple[int, str], aioredis.Redis] = {}


def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        raise RuntimeError("REDIS_URL is not set; `bot run` sets it for the Rasa server")
    return url


def get_redis(url: str | None = None) -> aioredis.Redis:
    """The async Redis client for the running loop (decoded strings)."""
    url = url or redis_url()
    key = (id(asyncio.get_running_loop()), url)
    client = _clients.get(key)
    if client is None:
        # health_check_interval: notice a restarted Redis and reconnect
        # instead of failing the first command on a dead socket.
        client = aioredis.Redis.from_url(
            url, decode_responses=True, health_check_interval=10, socket_connect_timeout=5
        )
        _clients[key] = client
    return client
