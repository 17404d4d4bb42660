"""The desk's queue and routing on a real Redis and a real SQLite database,
without Rasa: queue order (priority, then arrival), skill groups, least loaded
first, capacity, the grace period of an agent who left, event feeds with
resync. Customers can't be reached here (no channel configured), which the
desk survives: it logs and goes on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import AsyncIterator

import pytest
import pytest_asyncio
from redis import asyncio as aioredis
from sqlalchemy import select

from bot.desk import agents as people
from bot.desk import handoffs as ho
from bot.desk import state as st
from bot.desk.config import DeskConfig
from bot.desk.phrases import Phrases
from bot.desk.rasa import RasaClient
from bot.shop import database
from bot.shop.schema import Handoff
from connectors.push import Push
from tests.redis_db import flushed_redis, redis_url

pytestmark = pytest.mark.asyncio
REDIS_URL = redis_url("TEST_DESK_REDIS_DB", 12)
CONFIG = DeskConfig.from_file(Path(__file__).parent / "data" / "desk.yml")
redis = flushed_redis(REDIS_URL)


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    database.upgrade(url)
    _DB["url"] = url
    return url


@pytest_asyncio.fixture
async def desk(redis: aioredis.Redis, db: str) -> AsyncIterator[ho.Desk]:
    rasa = RasaClient("http://127.0.0.1:9", "no-token", timeout=1)
    phrases = Phrases.from_domain(Path(__file__).parent.parent / "domain.yml")
    yield ho.Desk(redis, db, CONFIG, Push([]), rasa, phrases)
    await rasa.close()


_DB: dict[str, str] = {}


async def online(redis: aioredis.Redis, agent_id: int, groups: list[str],
                 capacity: int = 2, role: str = "agent") -> st.AgentState:
    """Agent `agent_id` (the n-th made in this test's database), console open."""
    with database.session(_DB["url"]) as session:
        made = people.do_add(session, f"agent{agent_id}", "a-long-password", f"Agent {agent_id}",
                             role=role, groups=groups, capacity=capacity)
        assert made.id == agent_id
    agent = st.AgentState(agent_id, f"agent{agent_id}", f"Agent {agent_id}", role, groups,
                          capacity, "online")
    await st.register_agent(redis, agent, CONFIG.group_names)
    await st.set_status(redis, agent_id, "online")
    await st.touch(redis, agent_id)
    return agent


def request(cid: str, reason: str = "asked", topic: str | None = None,
            level: str = "") -> ho.Request:
    return ho.Request(conversation_id=cid, channel="web", language="zh", reason=reason,
                      topic_intent=topic, customer_level=level)


async def ask(redis: aioredis.Redis, db: str, req: ho.Request) -> ho.Outcome:
    return await ho.request(redis, db, CONFIG, req, is_open=True, opens=None)


async def pause(redis: aioredis.Redis, *cids: str) -> None:
    for cid in cids:
        await st.set_fields(redis, cid, paused=1)


async def test_nobody_online_or_closed_means_no_queue(redis: aioredis.Redis, db: str) -> None:
    assert (await ask(redis, db, request("web:v-a"))).kind == "no_agent"
    opens = dt.datetime(2026, 12, 1, 1, tzinfo=dt.timezone.utc)
    closed = await ho.request(redis, db, CONFIG, request("web:v-a"), is_open=False, opens=opens)
    assert (closed.kind, closed.opens) == ("closed_hours", opens)
    # An agent of another group doesn't help an order question.
    await online(redis, 1, ["billing"])
    assert (await ask(redis, db, request("web:v-a", topic="order_status"))).kind == "no_agent"
    assert await st.all_chats(redis) == []


async def test_queue_orders_by_priority_then_arrival(redis: aioredis.Redis, db: str) -> None:
    await online(redis, 1, ["general", "complaints"], capacity=1)
    first = await ask(redis, db, request("web:v-first"))
    second = await ask(redis, db, request("web:v-second"))
    vip = await ask(redis, db, request("web:v-vip", level="gold"))
    assert (first.kind, first.position) == ("connecting", 1)
    assert (second.kind, second.position) == ("queued", 2)
    assert second.wait_minutes >= 1
    # A gold member goes before earlier regular customers.
    assert vip.position == 1
    assert await st.queue(redis, "general") == ["web:v-vip", "web:v-first", "web:v-second"]
    # A complaint waits in the complaints group, with its priority.
    complaint = await ask(redis, db, request("web:v-angry", reason="complaint",
                                            topic="complain"))
    chat = await st.get_chat(redis, "web:v-angry")
    assert chat is not None and (chat.group, chat.priority) == ("complaints", 1)
    assert complaint.position == 1
    # Asking again while waiting keeps the place.
    again = await ask(redis, db, request("web:v-second"))
    assert (again.kind, again.handoff_id) == ("queued", second.handoff_id)
    with database.session(db) as session:
        states = {h.conversation_id: (h.state, h.group_name, h.priority)
                  for h in session.scalars(select(Handoff))}
    assert states["web:v-vip"] == ("queued", "general", 2)
    assert states["web:v-angry"] == ("queued", "complaints", 1)


async def test_routing_least_loaded_first_within_capacity(
    redis: aioredis.Redis, db: str, desk: ho.Desk,
) -> None:
    await online(redis, 1, ["orders"], capacity=2)
    await online(redis, 2, ["orders"], capacity=1)
    await online(redis, 3, ["billing"], capacity=5)
    cids = [f"web:v-{i}" for i in range(4)]
    for cid in cids:
        await ask(redis, db, request(cid, topic="order_status"))
    # Not paused yet (Rasa hasn't stored the pause): nobody joins.
    assert await desk.route() == 0
    await pause(redis, *cids)
    assert await desk.route() == 3
    chats = {c.conversation_id: c for c in await st.all_chats(redis)}
    # First to the least loaded (ties: lowest id), never past capacity, never agent 3.
    assert [chats[c].agent_id for c in cids[:3]] == [1, 2, 1]
    assert chats[cids[3]].state == "queued"
    assert await st.loads(redis, [1, 2, 3]) == {1: 2, 2: 1, 3: 0}
    # Agent 2 closes one: the waiting one goes to them.
    await desk.close(cids[1], await st.get_agent(redis, 2))
    assert await desk.route() == 1
    assert (await st.get_chat(redis, cids[3])).agent_id == 2
    with database.session(db) as session:
        closed = session.scalars(select(Handoff).where(
            Handoff.conversation_id == cids[1])).one()
        assert closed.state == "closed" and closed.ended_by == "agent:agent2"


async def test_an_agent_gone_past_the_grace_period_loses_chats_to_the_front(
    redis: aioredis.Redis, db: str, desk: ho.Desk,
) -> None:
    await online(redis, 1, ["general"], capacity=1)
    await ask(redis, db, request("web:v-mine"))
    await ask(redis, db, request("web:v-waiting"))
    await pause(redis, "web:v-mine", "web:v-waiting")
    await desk.route()
    assert (await st.get_chat(redis, "web:v-mine")).agent_id == 1
    # Within the grace period nothing moves.
    await st.touch(redis, 1, st.now() - CONFIG.grace_seconds + 2)
    await desk.tick()
    assert (await st.get_chat(redis, "web:v-mine")).agent_id == 1
    # Past it: back in the queue, before the one who waited.
    await st.touch(redis, 1, st.now() - CONFIG.grace_seconds - 1)
    await desk.tick()
    chat = await st.get_chat(redis, "web:v-mine")
    assert chat.state == "queued" and chat.front == 1
    assert await st.queue(redis, "general") == ["web:v-mine", "web:v-waiting"]
    assert await st.loads(redis, [1]) == {1: 0}
    # Another agent comes: the requeued chat is served first.
    await online(redis, 2, ["general"], capacity=1)
    await desk.route()
    assert (await st.get_chat(redis, "web:v-mine")).agent_id == 2


async def test_transfer_to_a_group_and_to_an_agent(
    redis: aioredis.Redis, db: str, desk: ho.Desk,
) -> None:
    first = await online(redis, 1, ["general"], capacity=3)
    await ask(redis, db, request("web:v-t"))
    await pause(redis, "web:v-t")
    await desk.route()
    # To the billing group: waits at the front of its queue (no billing agent yet).
    await desk.transfer_to_group("web:v-t", "billing", first)
    chat = await st.get_chat(redis, "web:v-t")
    assert (chat.state, chat.group, chat.front) == ("queued", "billing", 1)
    billing = await online(redis, 2, ["billing"])
    await desk.route()
    assert (await st.get_chat(redis, "web:v-t")).agent_id == 2
    # The billing agent passes it to a named colleague.
    await desk.assign("web:v-t", first, billing)
    chat = await st.get_chat(redis, "web:v-t")
    assert chat.agent_id == 1
    assert await st.loads(redis, [1, 2]) == {1: 1, 2: 0}
    with database.session(db) as session:
        assert session.scalars(select(Handoff)).one().transfers == 2
    with pytest.raises(ho.BadRequest):
        await desk.transfer_to_group("web:v-t", "no-such-group", first)


async def test_waiting_too_long_ends_the_wait(
    redis: aioredis.Redis, db: str, desk: ho.Desk,
) -> None:
    await online(redis, 1, ["general"], capacity=1)
    await ask(redis, db, request("web:v-busy"))
    await ask(redis, db, request("web:v-late"))
    await pause(redis, "web:v-busy", "web:v-late")
    await desk.route()
    await st.set_fields(redis, "web:v-late", queued_at=st.now() - CONFIG.max_wait_seconds - 1)
    await desk.tick()
    assert await st.get_chat(redis, "web:v-late") is None
    with database.session(db) as session:
        late = session.scalars(select(Handoff).where(
            Handoff.conversation_id == "web:v-late")).one()
        assert (late.state, late.ended_by) == ("cancelled", "system:timeout")


async def test_feeds_replay_after_an_id_and_ask_for_resync_when_trimmed(
    redis: aioredis.Redis,
) -> None:
    for n in range(3):
        await st.notify(redis, [7], {"type": "line", "n": n})
    rows = await st.feed_since(redis, 7, "0-0")
    assert [e["n"] for _, e in rows] == [0, 1, 2]
    assert [e["n"] for _, e in await st.feed_since(redis, 7, rows[0][0])] == [1, 2]
    assert await st.feed_since(redis, 7, rows[2][0]) == []
    assert await st.last_feed_id(redis, 7) == rows[2][0]
    # Entries the console never saw were trimmed away: it must reload.
    await redis.xtrim(st.feed_key(7), maxlen=1, approximate=False)
    assert await st.feed_since(redis, 7, rows[0][0]) is None
    # Live announcements carry the same ids.
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(st.LIVE)
    await st.notify(redis, [7, 8], {"type": "agent"})
    seen = []
    for _ in range(20):
        message = await pubsub.get_message(timeout=0.5)
        if message:
            seen.append(st.parse_announcement(message["data"].decode()))
        if len(seen) == 2:
            break
    await pubsub.close()
    assert [a for a, _, _ in seen] == [7, 8]
    assert seen[0][1] == await st.last_feed_id(redis, 7)


async def test_queue_events_go_only_to_agents_following_their_feeds(
    redis: aioredis.Redis, db: str, desk: ho.Desk,
) -> None:
    full = await online(redis, 1, ["general"], capacity=1)
    await online(redis, 2, ["general"])
    await st.set_status(redis, 2, "away")  # away, console open: told
    await online(redis, 3, ["general"])
    await st.set_status(redis, 3, "offline")  # console open but offline: not told
    await online(redis, 4, ["general"])
    # Console closed long ago: not told.
    await st.touch(redis, 4, st.now() - st.LISTENING_SECONDS - 1)
    await ask(redis, db, request("web:v-served"))
    await pause(redis, "web:v-served")
    await desk.route()
    assert (await st.get_chat(redis, "web:v-served")).agent_id == full.id
    for n in (1, 2, 3, 4):
        await redis.delete(st.feed_key(n))

    await ask(redis, db, request("web:v-waits"))

    async def told(agent_id: int) -> list[str]:
        return [e["type"] for _, e in await st.feed_since(redis, agent_id, "0-0")
                if e.get("conversation", {}).get("id") == "web:v-waits"
                or e.get("conversation_id") == "web:v-waits"]

    # The full agent still sees the queue (the console shows it); away too.
    assert await told(1) == ["conversation"] and await told(2) == ["conversation"]
    assert await told(3) == [] and await told(4) == []
    # Coming back (console again, status online): a resync first in the feed, so a
    # console from before reloads the state, which has the chat.
    assert await st.renew(redis, 4, seen=True) is not None
    assert await st.renew(redis, 3, status="online") is not None
    for n in (3, 4):
        assert [e["type"] for _, e in await st.feed_since(redis, n, "0-0")] == ["resync"]
    # Already following: no resync.
    assert await st.renew(redis, 1, seen=True) is None
    assert await st.renew(redis, 2, synced=True) is None
    assert await st.renew(redis, 3, status="away") is None
    assert await st.renew(redis, 2, status="offline") is None
    # From now on they are told: here that it no longer waits (the one online and
    # free, agent 4, takes it).
    await pause(redis, "web:v-waits")
    await desk.route()
    assert (await st.get_chat(redis, "web:v-waits")).agent_id == 4
    assert await told(1) == ["conversation", "conversation_removed"]
    assert await told(2) == ["conversation"]  # offline now
    assert await told(3) == ["conversation_removed"]
    assert await told(4) == ["assigned"]


async def test_cancel_words() -> None:
    assert ho.is_cancel("取消") and ho.is_cancel(" Cancel. ") and ho.is_cancel("不等了！")
    assert not ho.is_cancel("取消订单") and not ho.is_cancel("I want to cancel my order")



async def test_a_customer_line_reaches_the_agent_and_its_language_is_followed(
    redis: aioredis.Redis, db: str, desk: ho.Desk,
) -> None:
    await online(redis, 1, ["general"])
    await ask(redis, db, request("web:v-lang"))
    await pause(redis, "web:v-lang")
    await desk.route()
    chat = await st.get_chat(redis, "web:v-lang")
    event = {"event": "user", "text": "where is my parcel", "timestamp": st.now(),
             "parse_data": {"intent": {"name": "order_status", "confidence": 0.93},
                            "language": "en"}}
    await desk.on_customer_line(chat, event)
    chat = await st.get_chat(redis, "web:v-lang")
    assert (chat.language, chat.last_text, chat.unread) == ("en", "where is my parcel", 1)
    lines = [e for _, e in await st.feed_since(redis, 1, "0-0") if e["type"] == "line"]
    assert lines[-1]["line"] == {
        "role": "customer", "text": "where is my parcel", "at": event["timestamp"],
        "intent": "order_status", "confidence": 0.93, "agent": None, "buttons": [],
    }
