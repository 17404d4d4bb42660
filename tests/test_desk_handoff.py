"""Handoff end to end with the real processes (`bot run`: Rasa, actions, desk,
embedded Redis, SQLite): a web customer (socket.io) asks for a person, an agent
(the desk's API and WebSocket, as the console uses them) gets the conversation
with its transcript, they talk, the agent closes, the bot asks whether it was
solved and for a rating, and the rating is stored."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest
from sqlalchemy import select

from bot.shop import database
from bot.shop.schema import AuditRecord, Handoff, Rating
from tests.conftest import ROOT, Service
from tests.desk_client import PASSWORD, DeskClient, add_agent
from tests.web_client import WebClient, texts, tracker

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


def shop_url(service: Service) -> str:
    return f"sqlite:///{service.var_dir / 'shop.db'}"


@contextlib.asynccontextmanager
async def agent_at_desk(service: Service, username: str, name: str,
                        groups: list[str], role: str = "agent",
                        capacity: int = 5, connect: bool = True) -> AsyncIterator[DeskClient]:
    """An agent logged in with the console's socket open (unless not `connect`:
    then never present, never routed a chat); offline afterwards, so later tests
    find nobody online unless they bring someone."""
    add_agent(shop_url(service), username, name, groups, role, capacity)
    agent = DeskClient(service.desk_url)
    await agent.login(username)
    try:
        if connect:
            await agent.connect()
        yield agent
    finally:
        with contextlib.suppress(Exception):
            await agent.post("/desk/api/status", {"status": "offline"})
        await agent.close()


@contextlib.asynccontextmanager
async def web_customer(service: Service) -> AsyncIterator[WebClient]:
    customer = await WebClient(service.url).connect()
    await customer.session()
    try:
        yield customer
    finally:
        await customer.close()


async def send(customer: WebClient, text: str) -> None:
    """What the widget sends; no reply is expected while a person has the chat."""
    await customer.emit("user_uttered", {"message": text, "session_id": customer.token,
                                         "customData": {}})


def bot_text(containing: str) -> Any:
    return lambda data: containing in (data.get("text") or "")


def handoffs_of(service: Service, conversation_id: str) -> list[Handoff]:
    with database.session(shop_url(service)) as session:
        rows = list(session.scalars(select(Handoff).where(
            Handoff.conversation_id == conversation_id).order_by(Handoff.id)))
        for row in rows:
            session.expunge(row)
        return rows


def ratings_of(service: Service, conversation_id: str) -> list[Rating]:
    with database.session(shop_url(service)) as session:
        rows = list(session.scalars(select(Rating).where(
            Rating.conversation_id == conversation_id)))
        for row in rows:
            session.expunge(row)
        return rows


async def test_web_customer_reaches_a_person_and_rates_the_service(service: Service) -> None:
    async with agent_at_desk(service, "lily", "小李", ["general", "orders"]) as agent, \
            web_customer(service) as customer:
        cid = customer.conversation_id
        answer = texts(await customer.say("我要转人工"))
        assert "人工" in answer, answer

        assigned = await agent.wait("assigned", lambda e: e["conversation"]["id"] == cid)
        assert assigned["conversation"]["state"] == "with_agent"
        assert assigned["conversation"]["agent"]["name"] == "小李"
        assert assigned["conversation"]["reason"] == "asked"
        # The customer is told who joined, in their language, on their channel.
        await customer.wait("bot_uttered", bot_text("小李"))

        # The agent sees the whole transcript with what NLU made of each message.
        detail = await agent.get(DeskClient.conv(cid))
        asked = [line for line in detail["transcript"] if line["role"] == "customer"]
        assert asked[-1]["text"] == "我要转人工"
        assert asked[-1]["intent"] == "human_handoff" and asked[-1]["confidence"] > 0.5
        assert detail["reason"] == "asked" and detail["slots"]["language"] == "zh"

        # The widget says the customer is typing; the agent's console hears it.
        await customer.emit("user_typing", {})
        typing = await agent.wait("typing")
        assert typing["conversation_id"] == cid and "id" not in typing

        # The customer writes; the agent gets it live. The bot says nothing.
        await send(customer, "我的快递三天没动了")
        line = await agent.wait("line", lambda e: e["line"]["role"] == "customer")
        assert line["line"]["text"] == "我的快递三天没动了"
        assert line["conversation_id"] == cid

        # The agent answers through the customer's channel.
        sent = await agent.post(DeskClient.conv(cid, "/messages"),
                                {"text": "您好，我帮您查一下物流。"})
        assert sent["delivered"] is True
        await customer.wait("bot_uttered", bot_text("我帮您查一下物流"))

        # /restart does not take the conversation from the person.
        await send(customer, "/restart")
        await agent.wait("line", lambda e: e["line"]["text"] == "/restart")
        assert (await agent.get("/desk/api/state"))["conversations"][0]["state"] == "with_agent"
        # (The customer's language follows their latest message: back to Chinese.)
        await send(customer, "好的，谢谢")
        await agent.wait("line", lambda e: e["line"]["text"] == "好的，谢谢")

        # The agent closes: the bot is back and asks whether it was solved.
        await agent.post(DeskClient.conv(cid, "/close"))
        removed = await agent.wait("conversation_removed",
                                   lambda e: e["conversation_id"] == cid)
        assert removed["why"] == "closed"
        survey = await customer.wait("bot_uttered", bot_text("解决"))
        assert [b["payload"] for b in survey.get("quick_replies") or survey.get("buttons")
                or []] == ["/affirm", "/deny"]

        answer = await customer.say("/affirm")
        assert answer, "the bot asks for a rating"
        # The widget's limit is a burst of 5 messages, then 1 a second: this is the 7th.
        await asyncio.sleep(2)
        answer = texts(await customer.say('/rate{"score": 4}'))
        assert answer

    handoff = handoffs_of(service, cid)[-1]
    assert handoff.state == "closed" and handoff.ended_by == "agent:lily"
    assert handoff.assigned_at and handoff.first_response_at and handoff.ended_at
    rating = ratings_of(service, cid)[-1]
    assert (rating.solved, rating.score, rating.handoff_id) == (1, 4, handoff.id)

    # The transcript is the tracker: the agent's line is a bot event naming the agent.
    events = tracker(service, cid)["events"]
    agent_lines = [e for e in events if e["event"] == "bot"
                   and (e.get("metadata") or {}).get("agent", {}).get("name") == "小李"]
    assert [e["text"] for e in agent_lines] == ["您好，我帮您查一下物流。"]
    kinds = [e["event"] for e in events]
    assert kinds.index("pause") < kinds.index("resume")

    # A reloaded widget shows the agent's message in its history.
    async with web_customer(service) as again:
        await again.close()
    again = await WebClient(service.url).connect()
    try:
        await again.session(customer.token)
        assert any("我帮您查一下物流" in (m.get("text") or "") for m in again.history or [])
    finally:
        await again.close()

    # Every agent action is audited.
    with database.session(shop_url(service)) as session:
        actions = set(session.scalars(select(AuditRecord.action).where(
            AuditRecord.actor == "agent:lily")))
    assert {"desk.login", "desk.view", "desk.reply", "desk.close"} <= actions


async def test_waiting_customer_may_cancel_and_gets_the_bot_back(service: Service) -> None:
    async with agent_at_desk(service, "busy", "小忙", ["general"], capacity=1) as agent, \
            web_customer(service) as first, web_customer(service) as second, \
            web_customer(service) as third:
        await first.say("转人工")
        await agent.wait("assigned", lambda e: e["conversation"]["id"] == first.conversation_id)
        # The only agent is full: the second customer waits, first in line.
        answer = texts(await second.say("转人工"))
        assert "排第 1 位" in answer, answer
        answer = texts(await third.say("转人工"))
        assert "排第 2 位" in answer, answer
        await agent.wait("conversation", lambda e: e["conversation"]["id"]
                         == second.conversation_id and e["conversation"]["state"] == "queued")
        # Typing while waiting: acknowledged, and the agent sees it in the queue.
        await send(second, "还要等多久")
        await second.wait("bot_uttered", bot_text("1"))
        await agent.wait("line", lambda e: e["conversation_id"] == second.conversation_id)
        # Cancel: back to the bot, which answers again.
        await send(second, "取消")
        await second.wait("bot_uttered", lambda d: bool(d.get("text")))
        await agent.wait("conversation_removed",
                         lambda e: e["conversation_id"] == second.conversation_id)
        answer = texts(await second.say("运费多少"))
        assert answer, "the bot answers after the cancel"
        # The third customer moved up, and is told (desk.yml here: at most every 1 s).
        await third.wait("bot_uttered", bot_text("排第 1 位"))
        await send(third, "cancel")
        await third.wait("bot_uttered", lambda d: bool(d.get("text")))
        await agent.post(DeskClient.conv(first.conversation_id, "/close"))
    assert handoffs_of(service, second.conversation_id)[-1].state == "cancelled"
    assert handoffs_of(service, third.conversation_id)[-1].state == "cancelled"


async def test_a_queued_chat_goes_into_the_feeds_of_agents_at_their_consoles_only(
    service: Service,
) -> None:
    """A waiting chat is written into the feeds of its group's agents who follow
    theirs (busy ones too: the console shows the queue), not of those who are not
    at their consoles: those load the queue from the state when they come."""
    async with agent_at_desk(service, "feed-full", "满员", ["general"], capacity=1) as full, \
            agent_at_desk(service, "feed-late", "晚到", ["general"], connect=False) as late, \
            web_customer(service) as first, web_customer(service) as second:
        await first.say("转人工")
        await full.wait("assigned", lambda e: e["conversation"]["id"] == first.conversation_id)
        cid = second.conversation_id
        answer = texts(await second.say("转人工"))
        assert "排第 1 位" in answer, answer
        # At the console, though full: told live.
        await full.wait("conversation", lambda e: e["conversation"]["id"] == cid
                        and e["conversation"]["state"] == "queued")
        # Not at theirs: the console that comes loads the chat with the state...
        state = await late.get("/desk/api/state")
        waiting = [c for c in state["conversations"] if c["id"] == cid]
        assert [(c["state"], c["position"]) for c in waiting] == [("queued", 1)], state
        # ...and their feed holds nothing from before but the resync of their coming
        # (a console of theirs from before would reload).
        await late.connect("0-0")
        await late.wait("resync")
        assert late.events[0]["type"] == "resync", late.events
        # Now there (and free): the chat is theirs; the full agent sees it go.
        await late.wait("assigned", lambda e: e["conversation"]["id"] == cid)
        await full.wait("conversation_removed", lambda e: e["conversation_id"] == cid)
        await late.post(DeskClient.conv(cid, "/close"))
        await full.post(DeskClient.conv(first.conversation_id, "/close"))


async def test_outside_business_hours_the_customer_may_leave_a_message(
    service: Service,
) -> None:
    hours = service.var_dir / "business_hours.yml"
    always = hours.read_text()
    hours.write_text((ROOT / "tests" / "data" / "hours_closed.yml").read_text())
    try:
        async with agent_at_desk(service, "night", "夜班", ["general"]), \
                web_customer(service) as customer:
            messages = await customer.say("转人工")
            payloads = [b.get("payload") for m in messages
                        for b in (m.get("quick_replies") or m.get("buttons") or [])]
            assert "/leave_message" in payloads, messages
            assert not handoffs_of(service, customer.conversation_id)
            answer = texts(await customer.say("/leave_message"))
            assert answer  # the ticket form asks for the message
    finally:
        hours.write_text(always)



async def test_a_disabled_agent_is_logged_out_everywhere(service: Service) -> None:
    from bot.desk import agents as people
    from bot.desk.app import ACTIVE_CHECK_SECONDS

    add_agent(shop_url(service), "leaving", "离职", ["general"])
    agent = DeskClient(service.desk_url)
    try:
        await agent.login("leaving")
        await agent.connect()
        assert (await agent.call("GET", "/desk/api/me"))[0] == 200
        with database.session(shop_url(service)) as session:
            people.do_disable(session, "leaving")
        # Within the desk's check of its connected agents (every 8 s, all in one
        # query) the socket closes, with no request of the agent's own; then the
        # API refuses too.
        assert agent._reader is not None
        await asyncio.wait_for(agent._reader, ACTIVE_CHECK_SECONDS + 10)
        assert agent.ws is not None and agent.ws.close_code == 4401
        deadline = asyncio.get_running_loop().time() + 30
        while (await agent.call("GET", "/desk/api/me"))[0] != 401:
            assert asyncio.get_running_loop().time() < deadline, "still logged in"
            await asyncio.sleep(0.5)
        status, _ = await agent.call("POST", "/desk/api/login",
                                     {"username": "leaving", "password": PASSWORD})
        assert status == 401
    finally:
        await agent.close()


async def test_a_verified_member_comes_first_with_profile_and_other_channels(
    service: Service,
) -> None:
    """demo-zh (a gold member, logged in on the host site) asks for a person: the
    agent sees the masked profile, why, and the customer's other channels, and may
    open those; an agent serving someone else may not."""
    from tests.web_client import host_auth

    add_agent(shop_url(service), "other-desk", "旁人", ["billing"])
    outsider = DeskClient(service.desk_url)
    await outsider.login("other-desk")
    customer = await WebClient(service.url).connect(auth=host_auth("demo-zh"))
    try:
        async with agent_at_desk(service, "vip-desk", "贵宾组", ["general"]) as agent:
            await customer.session()
            assert customer.conversation_id == "web:u-demo-zh"
            await customer.say("转人工")
            assigned = await agent.wait("assigned",
                                        lambda e: e["conversation"]["id"] == "web:u-demo-zh")
            view = assigned["conversation"]
            assert view["priority"] == 2 and view["customer"]["verified"] is True
            assert view["customer"]["level"] == "gold"
            detail = await agent.get(DeskClient.conv("web:u-demo-zh"))
            profile = detail["profile"]
            assert profile["verified"] and profile["level"] == "gold"
            assert "*" in profile["name"] and "*" in profile["phone"]
            assert "13800000001" not in str(detail["profile"])
            others = {p["id"] for p in detail["previous"]}
            assert "app:app-demo-zh" in others
            # The agent may open the customer's app conversation; an outsider may not.
            assert (await agent.call("GET", DeskClient.conv("app:app-demo-zh")))[0] == 200
            status, _ = await outsider.call("GET", DeskClient.conv("app:app-demo-zh"))
            assert status == 404
            status, _ = await outsider.call("GET", DeskClient.conv("web:u-demo-zh"))
            assert status == 403
            await agent.post(DeskClient.conv("web:u-demo-zh", "/close"))
    finally:
        await customer.close()
        await outsider.post("/desk/api/status", {"status": "offline"})
        await outsider.close()


async def test_a_complaint_goes_to_the_complaints_desk_with_an_apology(service: Service) -> None:
    async with agent_at_desk(service, "complaints-desk", "投诉专员", ["complaints"]) as agent, \
            web_customer(service) as customer:
        answer = texts(await customer.say("你们的服务太差了，我要投诉"))
        assert "抱歉" in answer and "人工" in answer, answer
        assigned = await agent.wait("assigned", lambda e: e["conversation"]["id"]
                                    == customer.conversation_id)
        view = assigned["conversation"]
        assert (view["group"], view["priority"], view["reason"]) == ("complaints", 1, "complaint")
        await agent.post(DeskClient.conv(customer.conversation_id, "/close"))
        await customer.wait("bot_uttered", bot_text("解决"))
    handoff = handoffs_of(service, customer.conversation_id)[-1]
    assert (handoff.group_name, handoff.reason, handoff.topic_intent) == (
        "complaints", "complaint", "complain")
