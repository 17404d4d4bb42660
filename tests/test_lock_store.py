"""Rasa's conversation lock shared by several processes (Rasa instances behind a
load balancer, the desk writing agents' lines) on a real Redis. Rasa's own
RedisLockStore changes a lock by read-change-write, so processes undo each
other's tickets and a turn waits for ever or fails; ours changes it in one
Redis transaction each time. Three processes take turns on one conversation,
each holding the lock while it increments a counter by read-sleep-write: the
count is exact only if the lock excluded them all."""

from __future__ import annotations

import multiprocessing
import os

import redis

URL = f"redis://127.0.0.1:6379/{os.environ.get('TEST_LOCK_REDIS_DB', '9')}"
ROUNDS = 60


def _take_turns(results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import asyncio

    from rasa.utils.endpoints import EndpointConfig

    from bot.stores import RedisURLLockStore

    async def main() -> None:
        store = RedisURLLockStore(EndpointConfig(url=URL))
        client = redis.Redis.from_url(URL)
        for _ in range(ROUNDS):
            try:
                async with store.lock("web:v-shared", wait_time_in_seconds=0.01):
                    value = int(client.get("counter") or 0)
                    await asyncio.sleep(0.002)
                    client.set("counter", value + 1)
            except Exception as error:  # a lost ticket: the turn would be dropped
                results.put(repr(error))
        results.put("done")

    asyncio.run(main())


def test_three_processes_share_a_conversation_lock_without_losing_turns() -> None:
    client = redis.Redis.from_url(URL)
    client.flushdb()
    results: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()  # type: ignore[type-arg]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_take_turns, args=(results,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    alive = [w for w in workers if w.is_alive()]
    for worker in alive:
        worker.kill()
    outcomes = [results.get(timeout=5) for _ in range(3 - len(alive))]
    try:
        assert not alive, "a process still waits for the lock (a lost ticket)"
        assert outcomes == ["done"] * 3, outcomes
        assert int(client.get("counter") or 0) == 3 * ROUNDS
        assert client.keys("lock:*") == []  # nothing left behind
    finally:
        client.flushdb()


def test_a_waiting_turn_is_woken_when_the_lock_is_let_go() -> None:
    """The next turn starts when the one before lets go, not at its next look
    (every second, as a fallback for a holder that died)."""
    import asyncio
    import time

    from rasa.utils.endpoints import EndpointConfig

    from bot.stores import LOCK_POLL_SECONDS, RedisURLLockStore

    redis.Redis.from_url(URL).flushdb()
    holder_store = RedisURLLockStore(EndpointConfig(url=URL))
    waiter_store = RedisURLLockStore(EndpointConfig(url=URL))  # another process's client
    released_at: list[float] = []
    acquired_at: list[float] = []

    async def holder(entered: asyncio.Event) -> None:
        async with holder_store.lock("web:v-wake"):
            entered.set()
            await asyncio.sleep(0.3)
            released_at.append(time.monotonic())

    async def waiter() -> None:
        async with waiter_store.lock("web:v-wake", wait_time_in_seconds=5):
            acquired_at.append(time.monotonic())

    async def main() -> None:
        entered = asyncio.Event()
        first = asyncio.create_task(holder(entered))
        await entered.wait()
        await waiter()
        await first

    asyncio.run(main())
    assert LOCK_POLL_SECONDS >= 1.0
    assert acquired_at[0] - released_at[0] < 0.25, acquired_at[0] - released_at[0]
    assert not redis.Redis.from_url(URL).keys("*"), "the lock and its wake lists are gone"


def test_a_turn_queued_behind_a_dead_holder_is_served_when_both_tickets_lapse() -> None:
    """A Rasa killed mid-turn never lets go; its ticket lapses after its lifetime.
    A message that queued within a second of it got a ticket lapsing in the same
    poll interval: the lock then held no ticket, and the waiter was told "not
    yet" for ever (the soak's kill -9 run: 6 messages stuck until the client
    gave up). It is served once the lock is free."""
    import asyncio
    import time

    from rasa.utils.endpoints import EndpointConfig

    from bot.stores import RedisURLLockStore

    client = redis.Redis.from_url(URL)
    client.flushdb()

    async def main() -> float:
        store = RedisURLLockStore(EndpointConfig(url=URL))
        dead, _ = await store._take("web:v-dead", 2.0)  # taken, never let go
        assert dead == 0
        await asyncio.sleep(0.3)
        began = time.monotonic()
        async with store.lock("web:v-dead", lock_lifetime=2.0, wait_time_in_seconds=1):
            waited = time.monotonic() - began
        # Let go properly: the lock is gone and a new turn is served at once.
        async with store.lock("web:v-dead", lock_lifetime=2.0):
            pass
        return waited

    try:
        waited = asyncio.run(asyncio.wait_for(main(), 20))
        assert 1.5 <= waited <= 5, waited  # the dead ticket's lifetime, then served
        assert not client.exists("lock:web:v-dead")
    finally:
        client.flushdb()
