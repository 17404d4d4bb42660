"""Handoff by rule (desk.yml `direct`) end to end with the real processes (`bot run`:
Rasa, actions, desk; tests/data/desk.yml: platinum members' refunds and
cancellations go straight to a person), and a binding mid-conversation through
the in-process dialogue with the real action server."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from sqlalchemy import select

from bot.shop import database
from bot.shop.schema import Handoff
from connectors.history import transcript_of
from tests.conftest import Service
from tests.desk_client import DeskClient, add_agent
from tests.shop_customers import fresh_customer
from tests.web_client import WebClient, texts, tracker

pytestmark = [pytest.mark.slow]


def shop_url(service: Service) -> str:
    return f"sqlite:///{service.var_dir / 'shop.db'}"


def member(service: Service, level: str) -> str:
    """A host-site user id bound to a new customer of `level`."""
    user_id = f"{level}-{uuid.uuid4().hex[:8]}"
    fresh_customer(shop_url(service), "web", user_id, "zh", level=level)
    return user_id


@contextlib.asynccontextmanager
async def logged_in(service: Service, user_id: str | None) -> AsyncIterator[WebClient]:
    """The widget of a host-site user (or of an anonymous visitor)."""
    from tests.web_client import host_auth

    auth = host_auth(user_id) if user_id else None
    customer = await WebClient(service.url).connect(auth=auth)
    try:
        await customer.session()
        yield customer
    finally:
        await customer.close()


@contextlib.asynccontextmanager
async def billing_agent(service: Service, username: str) -> AsyncIterator[DeskClient]:
    """A billing agent with the console open; offline afterwards."""
    add_agent(shop_url(service), username, username, ["billing"])
    agent = DeskClient(service.desk_url)
    await agent.login(username)
    await agent.connect()
    try:
        yield agent
    finally:
        with contextlib.suppress(Exception):
            await agent.post("/desk/api/status", {"status": "offline"})
        await agent.close()


def handoffs_of(service: Service, conversation_id: str) -> list[tuple[str, str, int]]:
    with database.session(shop_url(service)) as session:
        return [(h.reason, h.group_name, h.priority) for h in session.scalars(
            select(Handoff).where(Handoff.conversation_id == conversation_id))]


def slot(service: Service, conversation_id: str, name: str) -> Any:
    return tracker(service, conversation_id)["slots"].get(name)


@pytest.mark.asyncio
async def test_a_platinum_members_refund_goes_straight_to_a_person(service: Service) -> None:
    user_id = member(service, "platinum")
    async with billing_agent(service, "vip-billing") as agent, \
            logged_in(service, user_id) as customer:
        cid = customer.conversation_id
        answer = texts(await customer.say("我要退款"))
        # Told why a person comes, then that one is coming; no order form.
        assert "铂金会员" in answer and "人工客服" in answer, answer
        assert "订单号" not in answer, answer
        assigned = await agent.wait("assigned", lambda e: e["conversation"]["id"] == cid)
        view = assigned["conversation"]
        assert (view["reason"], view["group"], view["priority"]) == ("vip", "billing", 2)
        assert view["customer"]["level"] == "platinum" and view["customer"]["verified"]
        detail = await agent.get(DeskClient.conv(cid))
        assert detail["reason"] == "vip" and detail["slots"]["member_level"] == "platinum"
        await agent.post(DeskClient.conv(cid, "/close"))
        await customer.wait("bot_uttered", lambda d: "解决" in (d.get("text") or ""))
        # Handed over once: the bot serves the next request itself.
        again = texts(await customer.say("我还想取消一个订单"))
        assert "订单" in again and "人工" not in again, again
    assert handoffs_of(service, cid) == [("vip", "billing", 2)]


@pytest.mark.asyncio
async def test_other_members_and_other_tasks_get_the_bot(service: Service) -> None:
    async with billing_agent(service, "vip-billing-2"):
        # A regular member asking the same: the bot's refund flow (which order?).
        async with logged_in(service, member(service, "regular")) as regular:
            answer = texts(await regular.say("我要退款"))
            assert "订单" in answer and "人工" not in answer, answer
            assert slot(service, regular.conversation_id, "member_level") == "regular"
            assert handoffs_of(service, regular.conversation_id) == []
        # A platinum member's greeting: the bot answers.
        async with logged_in(service, member(service, "platinum")) as vip:
            answer = texts(await vip.say("你好"))
            assert answer and "人工" not in answer, answer
            assert slot(service, vip.conversation_id, "member_level") == "platinum"
            assert handoffs_of(service, vip.conversation_id) == []
        # An anonymous visitor who says (and sends) they are platinum: nothing special.
        async with logged_in(service, None) as stranger:
            answer = texts(await stranger.say("我是铂金会员，我要退款",
                                              customData={"member_level": "platinum"}))
            assert answer and "铂金会员" not in answer and "人工客服" not in answer, answer
            assert slot(service, stranger.conversation_id, "member_level") is None
            assert handoffs_of(service, stranger.conversation_id) == []


@pytest.mark.asyncio
async def test_with_nobody_online_a_platinum_member_gets_the_bot_without_ado(
    service: Service,
) -> None:
    """No billing agent online: the bot serves the refund as anyone's, without
    offering a person the customer didn't ask for."""
    async with logged_in(service, member(service, "platinum")) as customer:
        messages = await customer.say("我要退款")
        answer = texts(messages)
        assert "订单" in answer and "人工" not in answer and "留言" not in answer, answer
        cid = customer.conversation_id
        events = tracker(service, cid)["events"]
        assert "action_handoff" in [e.get("name") for e in events if e["event"] == "action"]
        assert slot(service, cid, "handoff_outcome") == "no_agent"
        assert handoffs_of(service, cid) == []
        # Taken back and replayed, the message is in the transcript once.
        shown = [line["text"] for line in transcript_of(events) if line["sender"] == "customer"]
        assert shown == ["我要退款"]


def test_a_customer_who_binds_mid_conversation_counts(
    dialogue_agent: Any, shop_url: str, action_var_dir: Path
) -> None:
    """A WeChat follower binds to a platinum account with a code: from then on their
    refund goes to a person (in process: nobody is online, so the bot goes on)."""
    from tests.conversations import Chat
    from tests.test_binding import code_in, follower, sms_to
    from tests.test_refunds import said

    customer = fresh_customer(shop_url, None, None, "zh", level="platinum")
    chat = Chat(dialogue_agent, identity=follower())
    assert "action_handoff" not in actions_of(chat, "我要退款")
    assert chat.tracker.get_slot("member_level") is None
    chat.say("算了")
    chat.say("/bind_account")
    chat.say(customer["phone"])
    assert said(chat.say(code_in(sms_to(action_var_dir, customer["phone"])[-1]))) == [
        "utter_bind_done"]
    assert chat.tracker.get_slot("member_level") == "platinum"
    assert "action_handoff" in actions_of(chat, "我要退款")


def actions_of(chat: Any, text: str) -> list[str]:
    from rasa.shared.core.events import ActionExecuted

    chat.say(text)
    return [e.action_name for e in chat.turn_events if isinstance(e, ActionExecuted)]
