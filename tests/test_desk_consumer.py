"""A desk consumer killed mid-stream loses nothing and tells nothing twice.

The desk's event-pipe consumer runs as a process of its own (as in `bot run`)
on a real Redis. Customer messages of a conversation an agent has are appended
to the stream by the real broker; the consumer is killed with SIGKILL while it
works through them, and started again under the same name: the agent's feed
then holds every message exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from bot.events.stream import STREAM, RedisStreamBroker
from tests.conftest import ROOT

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('TEST_CONSUMER_REDIS_DB', '11')}"
CID = "web:v-consumer-test"
AGENT = 1

CONSUMER = """
import asyncio, sys
from pathlib import Path
from redis import asyncio as aioredis
from bot.desk import handoffs, state
from bot.desk.config import DeskConfig
from bot.desk.consumer import DeskConsumer
from bot.desk.phrases import Phrases
from bot.desk.rasa import RasaClient
from bot.events.stream import StreamConsumer
from connectors.push import Push

async def main() -> None:
    r = aioredis.Redis.from_url(sys.argv[1])
    root = Path(sys.argv[2])
    desk = handoffs.Desk(r, sys.argv[3], DeskConfig.from_file(root / "tests/data/desk.yml"),
                         Push([]), RasaClient("http://127.0.0.1:9", "-"),
                         Phrases.from_domain(root / "domain.yml"))
    print("ready", flush=True)
    await DeskConsumer(desk, StreamConsumer(r, "desk", "desk-one")).run(asyncio.Event())

asyncio.run(main())
"""


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    yield r
    r.flushdb()


def start_consumer(tmp_path: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, REDIS_URL, str(ROOT), f"sqlite:///{tmp_path}/x.db"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert b"ready" in line, line + process.stdout.read(4000)
    return process


def feed_texts(r: redis.Redis) -> list[str]:
    rows = r.xrange(f"desk:feed:{AGENT}", "-", "+")
    return [json.loads(fields[b"e"])["line"]["text"] for _, fields in rows]


def test_a_consumer_killed_mid_stream_loses_nothing(
    client: redis.Redis, tmp_path: Path
) -> None:
    # A conversation that agent 1 has (as bot.desk.state keeps it).
    client.hset(f"desk:chat:{CID}", mapping={
        "conversation_id": CID, "handoff_id": 1, "channel": "web", "group": "general",
        "state": "with_agent", "agent_id": AGENT, "agent_name": "A", "paused": 1,
    })
    broker = RedisStreamBroker(REDIS_URL)
    sent: list[str] = []

    def publish(count: int) -> None:
        for _ in range(count):
            text = f"message {len(sent)}"
            broker.publish({"event": "user", "sender_id": CID, "text": text,
                            "timestamp": time.time(), "parse_data": {}})
            sent.append(text)

    consumer = start_consumer(tmp_path)
    killed_with_pending = 0
    try:
        for _ in range(5):
            seen = len(feed_texts(client))
            publish(400)
            # Kill it while it is working through the burst.
            deadline = time.monotonic() + 30
            while len(feed_texts(client)) < seen + 50 and time.monotonic() < deadline:
                time.sleep(0.005)
            consumer.send_signal(signal.SIGKILL)
            consumer.wait()
            pending = client.xpending(STREAM, "desk")["pending"]
            killed_with_pending += pending > 0
            consumer = start_consumer(tmp_path)
            if killed_with_pending >= 2:
                break
        publish(50)
        deadline = time.monotonic() + 60
        while len(feed_texts(client)) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # anything extra would show up now
    finally:
        consumer.send_signal(signal.SIGKILL)
        consumer.wait()
    # The kills did land mid-batch: entries were read and not yet acknowledged.
    assert killed_with_pending >= 1
    texts = feed_texts(client)
    assert sorted(texts, key=lambda t: int(t.split()[1])) == sent
    assert len(texts) == len(set(texts))
