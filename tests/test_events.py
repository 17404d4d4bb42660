"""The event pipe: the broker appends tracker events to a Redis Stream, and
consumer groups read them so that nothing is lost or handled twice.

Against the machine's Redis server (streams of their own), and the running
service's embedded Redis for the events a real conversation leaves.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Awaitable, Callable, List

import redis
from redis import asyncio as aioredis

from bot.events.stream import Entry, RedisStreamBroker, StreamConsumer
from tests.conftest import Service

REDIS_URL = "redis://127.0.0.1:6379/9"


def publish(broker: RedisStreamBroker, numbers: range, sender: str = "web:v-1") -> None:
    for number in numbers:
        broker.publish({"sender_id": sender, "event": "user", "text": f"m{number}"})


def texts(entries: List[Entry]) -> List[str]:
    return [e.event["text"] for e in entries]


def with_stream(test: Callable[[aioredis.Redis, str], Awaitable[None]]) -> None:
    async def run() -> None:
        stream = f"events-test-{uuid.uuid4().hex[:8]}"
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            await test(client, stream)
        finally:
            await client.delete(stream)
            await client.close()

    asyncio.run(run())


def test_a_consumer_killed_mid_stream_loses_nothing_and_handles_nothing_twice() -> None:
    async def scenario(client: aioredis.Redis, stream: str) -> None:
        broker = RedisStreamBroker(REDIS_URL, stream)
        publish(broker, range(5))
        first = StreamConsumer(client, "desk", "desk-1", stream)
        got = await first.read(count=5)
        assert texts(got) == ["m0", "m1", "m2", "m3", "m4"]
        await first.ack(got[:3])  # handled three, then the process died
        publish(broker, range(5, 7))
        handled: List[str] = []

        async def handle(entry: Entry) -> None:
            handled.append(entry.event["text"])

        again = StreamConsumer(client, "desk", "desk-1", stream)  # restarted
        while await again.run_once(handle):
            pass
        # What it held and never acknowledged first, then the new ones; none twice.
        assert handled == ["m3", "m4", "m5", "m6"]
        assert await again.read() == []
        # Another group (the archive, later) gets everything, independently.
        archive = StreamConsumer(client, "archive", "archive-1", stream)
        assert texts(await archive.read(count=100)) == [f"m{n}" for n in range(7)]

    with_stream(scenario)


def test_entries_a_dead_consumer_held_are_taken_over() -> None:
    async def scenario(client: aioredis.Redis, stream: str) -> None:
        publish(RedisStreamBroker(REDIS_URL, stream), range(3))
        dead = StreamConsumer(client, "desk", "desk-dead", stream)
        assert len(await dead.read()) == 3  # never acknowledged, never back
        live = StreamConsumer(client, "desk", "desk-live", stream, claim_after_ms=0)
        taken = await live.read()
        assert texts(taken) == ["m0", "m1", "m2"]
        await live.ack(taken)
        assert await live.read() == []

    with_stream(scenario)


def test_a_redis_that_is_away_loses_the_conversation_nothing() -> None:
    broker = RedisStreamBroker("redis://127.0.0.1:1/0")  # nothing listens there
    assert not broker.is_ready()
    broker.publish({"sender_id": "web:v-1", "event": "user", "text": "hi"})  # no raise


def test_a_conversation_through_the_service_lands_in_the_stream(service: Service) -> None:
    sender = f"events-{uuid.uuid4().hex[:8]}"
    service.say(sender, "运费怎么算")
    url = (service.var_dir / "run" / "redis_url").read_text().strip()
    client = redis.Redis.from_url(url)
    try:
        rows: List[Any] = client.xrange("events", "-", "+")
    finally:
        client.close()
    mine = [Entry(i.decode(), f[b"sender_id"].decode(), json.loads(f[b"event"]))
            for i, f in rows if f[b"sender_id"].decode() == sender]
    kinds = [e.event["event"] for e in mine]
    assert "user" in kinds and "bot" in kinds
    user = next(e.event for e in mine if e.event["event"] == "user")
    bot = next(e.event for e in mine if e.event["event"] == "bot")
    assert user["text"] == "运费怎么算" and "包邮" in bot["text"]
    assert kinds.index("user") < kinds.index("bot")  # in order
