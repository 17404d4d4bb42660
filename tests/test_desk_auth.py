"""Login throttling and sessions of the desk on a real Redis: five wrong
passwords lock a username, twenty lock an address (a whole office may share
one), a success clears the username's count; sessions and CSRF tokens."""

from __future__ import annotations

import pytest
from redis import asyncio as aioredis

from bot.desk import auth
from tests.redis_db import flushed_redis, redis_url

pytestmark = pytest.mark.asyncio
REDIS_URL = redis_url("TEST_DESK_AUTH_REDIS_DB", 10)
redis = flushed_redis(REDIS_URL)


async def test_five_failures_lock_a_username_from_anywhere(redis: aioredis.Redis) -> None:
    for n in range(auth.MAX_FAILURES - 1):
        await auth.login_failed(redis, "mei", f"10.0.0.{n}")
    assert await auth.login_wait(redis, "mei", "10.0.0.99") == 0
    await auth.login_failed(redis, "Mei ", "10.0.0.50")
    wait = await auth.login_wait(redis, "mei", "10.0.0.99")
    assert 0 < wait <= auth.FAILURE_WINDOW
    assert await auth.login_wait(redis, "lan", "10.0.0.99") == 0


async def test_an_address_is_locked_only_after_many_failures(redis: aioredis.Redis) -> None:
    office = "192.168.1.1"
    for n in range(auth.MAX_FAILURES_PER_ADDRESS - 1):
        await auth.login_failed(redis, f"user{n}", office)
    # Colleagues behind the same address still log in.
    assert await auth.login_wait(redis, "someone-else", office) == 0
    await auth.login_failed(redis, "one-more", office)
    assert await auth.login_wait(redis, "someone-else", office) > 0
    assert await auth.login_wait(redis, "someone-else", "192.168.1.2") == 0


async def test_a_success_clears_the_usernames_failures(redis: aioredis.Redis) -> None:
    for _ in range(auth.MAX_FAILURES - 1):
        await auth.login_failed(redis, "mei", "10.0.0.1")
    await auth.login_succeeded(redis, "mei")
    await auth.login_failed(redis, "mei", "10.0.0.1")
    assert await auth.login_wait(redis, "mei", "10.0.0.1") == 0


async def test_sessions_and_csrf(redis: aioredis.Redis) -> None:
    session = await auth.create_session(redis, 7)
    found = await auth.get_session(redis, session.token)
    assert found == session and len(session.token) >= 40
    assert auth.csrf_ok(found, session.csrf)
    assert not auth.csrf_ok(found, None) and not auth.csrf_ok(found, session.csrf + "x")
    assert await auth.get_session(redis, "not-a-session") is None
    assert await auth.get_session(redis, "x" * 500) is None
    await auth.end_session(redis, session.token)
    assert await auth.get_session(redis, session.token) is None
