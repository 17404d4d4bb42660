"""Two desk instances sharing Redis and PostgreSQL (the scale-out column): an
agent logged in on one and listening on the other, a customer on the second
Rasa instance; the conversation is assigned once, messages cross instances,
and a console that reconnects to the other instance misses nothing."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import select

from bot.shop import database
from bot.shop.schema import Handoff
from tests.conftest import POSTGRES_URL, Service
from tests.desk_client import DeskClient, add_agent
from tests.test_desk_handoff import send, web_customer
from tests.web_client import texts

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def test_two_desks_share_the_queue_and_the_agents(scaled: list[Service]) -> None:
    first, second = scaled
    add_agent(POSTGRES_URL, "scaled-agent", "阿杰", ["general"])
    agent = DeskClient(first.desk_url)
    await agent.login("scaled-agent")
    # The session lives in Redis: the other instance knows it, and serves the socket.
    other = DeskClient(second.desk_url)
    await other.http.close()
    other.http, other.csrf = agent.http, agent.csrf  # same cookie: same host, other port
    await other.connect()
    try:
        async with web_customer(second) as customer:
            cid = customer.conversation_id
            assert "人工" in texts(await customer.say("转人工"))
            assigned = await other.wait("assigned", lambda e: e["conversation"]["id"] == cid)
            assert assigned["conversation"]["agent"]["name"] == "阿杰"
            await customer.wait("bot_uttered", lambda d: "阿杰" in (d.get("text") or ""))

            # Reconnect to the first instance from the last event seen: what was said
            # while the console was away arrives, once.
            last = other.last_event_id
            await other.disconnect()
            await send(customer, "第一条")
            await send(customer, "第二条")
            # Both are in the agent's feed before the console comes back.
            await agent.connect(last)
            await agent.wait("line", lambda e: e["line"]["text"] == "第一条")
            await agent.wait("line", lambda e: e["line"]["text"] == "第二条")
            said = [line["text"] for line in agent.lines(cid) if line["role"] == "customer"]
            assert said.count("第一条") == 1 and said.count("第二条") == 1

            # The reply goes out from the first desk to the customer on the second Rasa.
            await agent.post(DeskClient.conv(cid, "/messages"), {"text": "两台都通了"})
            await customer.wait("bot_uttered", lambda d: d.get("text") == "两台都通了")
            await other.post(DeskClient.conv(cid, "/close"))
            await customer.wait("bot_uttered", lambda d: "解决" in (d.get("text") or ""))
    finally:
        with contextlib.suppress(Exception):
            await agent.post("/desk/api/status", {"status": "offline"})
        await other.disconnect()
        await agent.close()
    with database.session(POSTGRES_URL) as session:
        handoff = session.scalars(select(Handoff).where(
            Handoff.conversation_id == cid)).one()
        assert (handoff.state, handoff.ended_by) == ("closed", "agent:scaled-agent")
        assert handoff.transfers == 0  # assigned once, by one of the two instances
