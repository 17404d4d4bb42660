"""Leaving a message (actions/tickets.py) through the dialogue, in process, with the
real action server on the session's shop database."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select

from actions.shop import mask_phone
from bot.nlu.language import message_language
from bot.shop import database
from bot.shop.schema import AuditRecord, Ticket
from tests.conversations import Chat
from tests.shop_customers import fresh_customer
from tests.test_accounts import texts
from tests.test_refunds import said


def ticket(shop_url: str, number: str) -> Ticket:
    with database.session(shop_url) as session:
        found = session.get(Ticket, number)
        assert found is not None
        session.expunge(found)
        return found


def visitor() -> dict[str, Any]:
    return {"channel": "web", "subject": f"v-{uuid.uuid4().hex}",
            "verified_by": "visitor_token", "customer": False}


def test_a_visitor_leaves_a_message_and_gets_a_number_and_a_time(
    dialogue_agent: Any, shop_url: str
) -> None:
    me = visitor()
    chat = Chat(dialogue_agent, identity=me)
    assert said(chat.say("I'd like to leave a message")) == ["utter_ask_ticket_message"]
    message = "The parcel for JM202611250001 arrived with a broken lid, what now?"
    assert said(chat.say(message)) == ["utter_ask_ticket_contact"]
    assert said(chat.say("12345")) == ["utter_invalid_contact", "utter_ask_ticket_contact"]
    done = chat.say("+86 138 1234 5678")
    assert said(done) == ["utter_ticket_created"]
    number = re.search(r"TK\d{12}", texts(done)).group(0)  # type: ignore[union-attr]
    assert "138****5678" in texts(done) and "13812345678" not in texts(done)
    assert re.search(r"\d\d:\d\d on \w{3} \d\d \w{3}", texts(done))  # when, in working time
    assert message_language(texts(done)) == "en"
    stored = ticket(shop_url, number)
    assert (stored.message, stored.contact, stored.customer_id) == (message, "13812345678", None)
    assert (stored.channel, stored.language, stored.status) == ("web", "en", "open")
    assert stored.conversation_id == chat.sender
    with database.session(shop_url) as session:
        record = session.scalars(
            select(AuditRecord).where(AuditRecord.subject == me["subject"])
        ).one()
        assert (record.action, record.target) == ("leave_message", number)


def test_a_verified_customer_can_use_the_accounts_phone(
    dialogue_agent: Any, shop_url: str
) -> None:
    me = {"channel": "app", "subject": f"t-{uuid.uuid4().hex[:10]}", "verified_by": "jwt",
          "customer": True}
    customer = fresh_customer(shop_url, me["channel"], me["subject"], "zh")
    chat = Chat(dialogue_agent, identity=me)
    chat.say("我要留言")
    (asked,) = chat.say("龙井有没有礼盒装？有的话请联系我")
    assert asked["utter_action"] == "utter_ask_ticket_contact_account"
    assert mask_phone(customer["phone"]) in asked["text"]
    assert customer["phone"] not in asked["text"]
    done = chat.say(asked["buttons"][0]["payload"])
    assert said(done) == ["utter_ticket_created"]
    assert re.search(r"\d+月\d+日 \d\d:\d\d", texts(done))
    number = re.search(r"TK\d{12}", texts(done)).group(0)  # type: ignore[union-attr]
    stored = ticket(shop_url, number)
    assert (stored.contact, stored.customer_id) == (customer["phone"], customer["id"])
    assert stored.message == "龙井有没有礼盒装？有的话请联系我"


def test_an_email_address_is_a_contact_too(dialogue_agent: Any, shop_url: str) -> None:
    chat = Chat(dialogue_agent, identity=visitor())
    chat.say("can i leave a message for the team")
    chat.say("Please call me about a bulk order of green tea")
    done = chat.say("Jane.Doe@Example.com")
    assert said(done) == ["utter_ticket_created"]
    assert "j***@example.com" in texts(done)


def test_bye_before_writing_anything_leaves_no_ticket(dialogue_agent: Any, shop_url: str) -> None:
    me = visitor()
    chat = Chat(dialogue_agent, identity=me)
    chat.say("留言")
    assert said(chat.say("算了")) == ["utter_task_stopped"]
    with database.session(shop_url) as session:
        assert session.scalars(select(Ticket).where(Ticket.conversation_id == chat.sender)).all() \
            == []


def test_two_contacts_that_wont_do_and_the_form_lets_go(dialogue_agent: Any, shop_url: str) -> None:
    chat = Chat(dialogue_agent, identity=visitor())
    chat.say("I'd like to leave a message")
    chat.say("Do you ship to Macau?")
    assert said(chat.say("12345")) == ["utter_invalid_contact", "utter_ask_ticket_contact"]
    assert said(chat.say("abc")) == ["utter_invalid_contact", "utter_task_let_go"]
    assert chat.tracker.active_loop_name is None
    with database.session(shop_url) as session:
        assert session.scalars(select(Ticket).where(Ticket.conversation_id == chat.sender)).all() \
            == []


def test_many_customers_leaving_messages_at_once_all_get_their_own_number(
    shop_url: str,
) -> None:
    """Numbers are the day's highest + 1: customers who submit at the same moment
    collide on it, and each must still get one (40 at once; three immediate
    retries lost about one in six at 64 at once)."""
    import asyncio

    from actions.shop import in_thread_retrying, next_number

    conversation = f"test-race-{uuid.uuid4().hex[:8]}"

    def leave() -> str:
        with database.session(shop_url) as session:
            ticket = Ticket(id=next_number(session, Ticket, "TK"), conversation_id=conversation,
                            channel="web", contact="13800000000", message="race",
                            language="zh")
            session.add(ticket)
            session.flush()
            return str(ticket.id)

    async def main() -> list[str]:
        return await asyncio.gather(*(in_thread_retrying(leave) for _ in range(40)))

    numbers = asyncio.run(main())
    assert len(set(numbers)) == 40
    with database.session(shop_url) as session:
        stored = session.scalars(
            select(Ticket.id).where(Ticket.conversation_id == conversation)).all()
    assert sorted(stored) == sorted(numbers)
