"""Refund requests (actions/refunds.py) and address changes (actions/addresses.py)
through the dialogue, in process, with the real action server on the session's
shop database: each test has a fresh customer of its own."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from actions.shop import money
from bot.nlu.language import message_language
from bot.shop import database
from bot.shop.schema import AuditRecord, Order, Refund
from tests.conversations import Chat
from tests.shop_customers import fresh_customer
from tests.test_accounts import texts


def identity(channel: str = "app", language: str = "zh") -> dict[str, Any]:
    return {"channel": channel, "subject": f"t-{language}-{uuid.uuid4().hex[:10]}",
            "verified_by": "jwt", "customer": True}


def customer_chat(agent: Any, shop_url: str, language: str) -> tuple[Chat, dict[str, Any]]:
    me = identity(language=language)
    made = fresh_customer(shop_url, me["channel"], me["subject"], language)
    return Chat(agent, identity=me), {**made, "subject": me["subject"]}


def said(messages: list[dict[str, Any]]) -> list[str]:
    return [str(m["utter_action"]) for m in messages]


def refunds_of(shop_url: str, order_id: str) -> list[Refund]:
    with database.session(shop_url) as session:
        found = session.scalars(select(Refund).where(Refund.order_id == order_id)).all()
        session.expunge_all()
        return list(found)


def test_a_refund_with_reason_and_amount_gets_a_number(dialogue_agent: Any, shop_url: str) -> None:
    chat, me = customer_chat(dialogue_agent, shop_url, "zh")
    order = me["orders"]["delivered"]
    assert said(chat.say("我要退款")) == ["utter_ask_order_id_refund"]
    (reason,) = chat.say(order)
    assert reason["utter_action"] == "utter_ask_refund_reason" and order in reason["text"]
    (amount,) = chat.say(reason["buttons"][0]["payload"])  # "质量问题"
    assert amount["utter_action"] == "utter_ask_refund_amount"
    assert money(12900) in amount["text"]
    done = chat.say("50元")
    assert said(done) == ["utter_refund_submitted"]
    (refund,) = refunds_of(shop_url, order)
    assert (refund.amount_cents, refund.reason, refund.status) == (5000, "quality", "requested")
    assert refund.id in texts(done) and money(5000) in texts(done)
    assert message_language(texts(done)) == "zh"
    with database.session(shop_url) as session:
        actions = session.scalars(
            select(AuditRecord.action).where(AuditRecord.subject == me["subject"])
        ).all()
    assert "refund_started" in actions and "request_refund" in actions
    # The new refund is what "where is my refund" finds now, and a second one waits.
    assert said(chat.say(f"我的退款到哪了 {order}")) == ["utter_refund_status_requested"]
    assert said(chat.say("我要退款")) == ["utter_refund_already_open"]


def test_a_refund_above_what_was_paid_is_refused(dialogue_agent: Any, shop_url: str) -> None:
    chat, me = customer_chat(dialogue_agent, shop_url, "en")
    order = me["orders"]["in_transit"]
    chat.say(f"I want a refund for {order}")
    chat.say('/inform{"refund_reason": "wrong_item"}')
    too_much = chat.say("¥500")
    assert said(too_much) == ["utter_refund_amount_too_high", "utter_ask_refund_amount"]
    assert money(12900) in texts(too_much) and message_language(texts(too_much)) == "en"
    assert refunds_of(shop_url, order) == []
    full = chat.say("full refund")
    assert said(full) == ["utter_refund_submitted"]
    (refund,) = refunds_of(shop_url, order)
    assert refund.amount_cents == 12900


def test_a_reason_in_the_customers_own_words_is_kept(dialogue_agent: Any, shop_url: str) -> None:
    chat, me = customer_chat(dialogue_agent, shop_url, "zh")
    order = me["orders"]["delivered"]
    chat.say(f"订单 {order} 申请退款")
    (asked,) = chat.say("收到的杯子是碎的")
    assert asked["utter_action"] == "utter_ask_refund_amount"
    assert said(chat.say("全额")) == ["utter_refund_submitted"]
    (refund,) = refunds_of(shop_url, order)
    assert refund.reason == "收到的杯子是碎的" and refund.amount_cents == 12900


def test_an_order_not_shipped_is_cancelled_instead(dialogue_agent: Any, shop_url: str) -> None:
    chat, me = customer_chat(dialogue_agent, shop_url, "en")
    order = me["orders"]["paid"]
    (instead,) = chat.say(f"refund order {order}")
    assert instead["utter_action"] == "utter_refund_cancel_instead"
    (button,) = instead["buttons"]
    # The offered button starts the cancellation of that very order.
    assert said(chat.say(button["payload"])) == ["utter_confirm_cancel"]
    assert said(chat.say("yes")) == ["utter_order_cancelled"]
    with database.session(shop_url) as session:
        assert session.get(Order, order).status == "cancelled"


def test_orders_that_cant_have_a_refund_say_why(dialogue_agent: Any, shop_url: str) -> None:
    chat, me = customer_chat(dialogue_agent, shop_url, "zh")
    expected = {
        "pending_payment": "utter_refund_refused_unpaid",
        "cancelled": "utter_refund_refused_closed",
        "refunded": "utter_refund_refused_closed",
    }
    for status, response in expected.items():
        # The number in the message: a bare "我要退款" means the order just talked about.
        reply = chat.say(f"我要退款，订单号 {me['orders'][status]}")
        assert said(reply) == [response], status
        assert message_language(texts(reply)) == "zh"


def test_a_strangers_order_reveals_nothing(dialogue_agent: Any, shop_url: str) -> None:
    chat, _ = customer_chat(dialogue_agent, shop_url, "en")
    _, someone = customer_chat(dialogue_agent, shop_url, "en")
    theirs = someone["orders"]["delivered"]
    assert said(chat.say(f"refund {theirs}")) == ["utter_order_not_found"]
    assert refunds_of(shop_url, theirs) == []


def test_two_amounts_that_wont_do_and_the_form_lets_go(
    dialogue_agent: Any, shop_url: str
) -> None:
    chat, me = customer_chat(dialogue_agent, shop_url, "zh")
    order = me["orders"]["delivered"]
    chat.say(f"订单 {order} 要退款")
    chat.say('/inform{"refund_reason": "changed_mind"}')
    assert said(chat.say("一千万")) == ["utter_invalid_refund_amount", "utter_ask_refund_amount"]
    assert said(chat.say("¥999")) == ["utter_refund_amount_too_high", "utter_task_let_go"]
    assert chat.tracker.active_loop_name is None
    assert refunds_of(shop_url, order) == []
    # A later question is just that, with nothing of the refund left over.
    assert said(chat.say("运费怎么算")) == ["utter_faq/shipping_fee"]


def test_goodbye_inside_the_refund_form_ends_it(dialogue_agent: Any, shop_url: str) -> None:
    chat, me = customer_chat(dialogue_agent, shop_url, "en")
    chat.say(f"i want my money back for {me['orders']['delivered']}")
    assert said(chat.say("bye")) == ["utter_goodbye"]
    assert chat.tracker.active_loop_name is None
    assert refunds_of(shop_url, me["orders"]["delivered"]) == []


# --- address changes -----------------------------------------------------------------

def test_the_address_of_an_order_not_shipped_changes(dialogue_agent: Any, shop_url: str) -> None:
    chat, me = customer_chat(dialogue_agent, shop_url, "zh")
    order = me["orders"]["paid"]
    assert said(chat.say("我想改一下收货地址")) == ["utter_ask_order_id_address"]
    (asked,) = chat.say(order)
    assert asked["utter_action"] == "utter_ask_new_address" and order in asked["text"]
    assert said(chat.say("随便")) == ["utter_invalid_address", "utter_ask_new_address"]
    new = "北京市朝阳区建国路 88 号 3 单元 501"
    done = chat.say(new)
    assert said(done) == ["utter_address_updated"] and new in texts(done)
    with database.session(shop_url) as session:
        assert session.get(Order, order).address == new
        trail = session.scalars(
            select(AuditRecord.action).where(AuditRecord.target == order)
        ).all()
    assert "update_address" in trail


def test_a_shipped_order_keeps_its_address_and_says_who_can_redirect_it(
    dialogue_agent: Any, shop_url: str
) -> None:
    chat, me = customer_chat(dialogue_agent, shop_url, "en")
    order = me["orders"]["dispatched"]
    chat.say("i need to change the delivery address")
    refused = chat.say(order)
    assert said(refused) == ["utter_address_refused_shipped"]
    assert "SF1234567890" in texts(refused) and message_language(texts(refused)) == "en"
    with database.session(shop_url) as session:
        assert session.get(Order, order).address == "上海市黄浦区南京东路 1 号"


def test_an_english_address_is_taken(dialogue_agent: Any, shop_url: str) -> None:
    chat, me = customer_chat(dialogue_agent, shop_url, "en")
    order = me["orders"]["pending_payment"]
    chat.say(f"change the address of {order}")
    done = chat.say("Flat 5, 12 Nanjing Road, Huangpu District, Shanghai 200001")
    assert said(done) == ["utter_address_updated"]
    with database.session(shop_url) as session:
        assert session.get(Order, order).address.startswith("Flat 5, 12 Nanjing Road")
