"""A database of the machine's Redis (127.0.0.1:6379) for one test module: each
module has its own number, which an environment variable may change so that
parallel sessions don't flush each other's."""

from __future__ import annotations

import os
from typing import Any, AsyncIterator

import pytest_asyncio
from redis import asyncio as aioredis


def redis_url(variable: str, default: int) -> str:
    return f"redis://127.0.0.1:6379/{os.environ.get(variable, str(default))}"


def flushed_redis(url: str) -> Any:
    """A fixture `redis`: an asyncio client of `url`, the database empty before and
    after each test. In the module: `redis = flushed_redis(REDIS_URL)`."""

    @pytest_asyncio.fixture
    async def redis() -> AsyncIterator[aioredis.Redis]:
        client = aioredis.Redis.from_url(url)
        await client.flushdb()
        yield client
        await client.flushdb()
        await client.close()

    return redis
