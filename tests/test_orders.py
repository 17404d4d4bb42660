"""Order status (actions/orders.py) for verified customers, in process with the
real action server on the session's seeded shop database."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.nlu.language import message_language
from bot.shop import database
from bot.shop.schema import AuditRecord, Identity, Order
from tests.conversations import Chat
from tests.test_accounts import DEMO_EN, DEMO_ZH, texts


def orders_of(shop_url: str, channel: str, subject: str) -> dict[str, Order]:
    """The customer's orders by status."""
    with database.session(shop_url) as session:
        bound = session.scalars(
            select(Identity).where(Identity.channel == channel, Identity.subject == subject)
        ).one()
        orders = {o.status: o for o in bound.customer.orders}
        for order in orders.values():
            order.items  # noqa: B018 - loaded while the session is open
        return orders


def test_a_verified_customer_follows_their_parcel_in_chinese(
    dialogue_agent: Any, shop_url: str
) -> None:
    parcel = orders_of(shop_url, "web", "demo-zh")["in_transit"]
    chat = Chat(dialogue_agent, identity=DEMO_ZH)
    assert [m["utter_action"] for m in chat.say("我的快递到哪了")] == ["utter_ask_order_id"]
    answer = chat.say(parcel.id)
    assert [m["utter_action"] for m in answer] == ["utter_order_status_in_transit"]
    said = texts(answer)
    assert parcel.id in said and parcel.tracking_number in said and parcel.carrier in said
    assert message_language(said) == "zh" and parcel.items[0].name_zh in said


@pytest.mark.parametrize(
    "status", ["pending_payment", "paid", "dispatched", "delivered", "cancelled", "refunded"]
)
def test_every_shipping_state_has_its_answer_in_english(
    dialogue_agent: Any, shop_url: str, status: str
) -> None:
    order = orders_of(shop_url, "app", "app-demo-en")[status]
    answer = Chat(dialogue_agent, identity=DEMO_EN).say(f"where is my order {order.id}")
    assert [m["utter_action"] for m in answer] == [f"utter_order_status_{status}"]
    assert order.id in texts(answer) and message_language(texts(answer)) == "en"


def test_someone_elses_order_reveals_nothing(dialogue_agent: Any, shop_url: str) -> None:
    theirs = orders_of(shop_url, "app", "app-demo-en")["in_transit"]
    chat = Chat(dialogue_agent, identity=DEMO_ZH)
    stranger = chat.say(f"查一下订单 {theirs.id}")
    missing = Chat(dialogue_agent, identity=DEMO_ZH).say("查一下订单 JM209901010000")
    assert [m["utter_action"] for m in stranger] == ["utter_order_not_found"]
    # Word for word what a number that doesn't exist gets (but the number).
    assert texts(stranger).replace(theirs.id, "#") == texts(missing).replace(
        "JM209901010000", "#"
    )
    assert theirs.tracking_number not in texts(stranger)
    with database.session(shop_url) as session:
        record = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.subject == "demo-zh", AuditRecord.target == theirs.id)
            .order_by(AuditRecord.id.desc())
        ).first()
        assert record is not None and record.action == "order_status_not_found"


def test_an_unverified_customer_is_told_how_to_verify(dialogue_agent: Any) -> None:
    # Without an identity of its own (a REST caller): log in; the number echoed.
    answer = Chat(dialogue_agent, customer=False).say("where is my order JM202611250001")
    assert [m["utter_action"] for m in answer] == ["utter_order_not_verified"]
    assert "JM202611250001" in texts(answer) and "log in" in texts(answer)
    # A web visitor: offered to verify with a code.
    answer = Chat(dialogue_agent).say("where is my order JM202611250001")
    assert [m["utter_action"] for m in answer] == ["utter_account_not_verified_bind"]
    assert answer[0]["buttons"][0]["payload"] == "/bind_account"


def test_a_verified_customer_picks_from_their_recent_orders(
    dialogue_agent: Any, shop_url: str
) -> None:
    mine = orders_of(shop_url, "app", "app-demo-en")
    chat = Chat(dialogue_agent, identity=DEMO_EN)
    (asked,) = chat.say("where is my order")
    shown = [b["title"].split(" · ")[0] for b in asked["buttons"]]
    newest = sorted(mine.values(), key=lambda o: o.created_at, reverse=True)[:5]
    assert shown == [o.id for o in newest]
    # A click on one is that order (an offered button may send its payload).
    picked = chat.say(asked["buttons"][0]["payload"])
    assert [m["utter_action"] for m in picked] == [f"utter_order_status_{newest[0].status}"]
    # Nobody else gets anyone's orders as buttons.
    (anonymous,) = Chat(dialogue_agent).say("where is my order")
    assert not anonymous.get("buttons")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("refunded", "utter_refund_status_paid"),
        ("delivered", "utter_refund_status_requested"),
        ("paid", "utter_refund_status_none"),
    ],
)
def test_refund_status_of_a_verified_customers_order(
    dialogue_agent: Any, shop_url: str, status: str, expected: str
) -> None:
    order = orders_of(shop_url, "app", "app-demo-en")[status]
    chat = Chat(dialogue_agent, identity=DEMO_EN)
    assert [m["utter_action"] for m in chat.say("where is my refund")] == [
        "utter_ask_order_id_refund_status"
    ]
    answer = chat.say(order.id)
    assert [m["utter_action"] for m in answer] == [expected]
    assert order.id in texts(answer) and message_language(texts(answer)) == "en"


def test_refund_status_of_someone_elses_order_reveals_nothing(
    dialogue_agent: Any, shop_url: str
) -> None:
    theirs = orders_of(shop_url, "app", "app-demo-en")["refunded"]
    chat = Chat(dialogue_agent, identity=DEMO_ZH)
    chat.say("我的退款到哪了")
    answer = chat.say(theirs.id)
    assert [m["utter_action"] for m in answer] == ["utter_order_not_found"]
    assert "RF" not in texts(answer) and "¥" not in texts(answer)


def status_of(shop_url: str, order_id: str) -> str:
    with database.session(shop_url) as session:
        return session.get(Order, order_id).status


def test_cancel_before_dispatch_needs_a_yes_then_is_done(
    dialogue_agent: Any, shop_url: str
) -> None:
    order = orders_of(shop_url, "web", "demo-zh")["pending_payment"]
    chat = Chat(dialogue_agent, identity=DEMO_ZH)
    asked = chat.say(f"帮我取消订单 {order.id}")
    assert [m["utter_action"] for m in asked] == ["utter_confirm_cancel"]
    assert [b["payload"] for b in asked[0]["buttons"]] == ["/affirm", "/deny"]
    assert status_of(shop_url, order.id) == "pending_payment"  # not before the yes
    done = chat.say("是的")
    assert [m["utter_action"] for m in done] == ["utter_order_cancelled"]
    assert status_of(shop_url, order.id) == "cancelled"
    assert message_language(texts(done)) == "zh"
    # A later "yes" cancels nothing more.
    assert [m["utter_action"] for m in chat.say("好的")] == ["utter_affirm_ack"]


def test_no_keeps_the_order(dialogue_agent: Any, shop_url: str) -> None:
    order = orders_of(shop_url, "app", "app-demo-en")["pending_payment"]
    chat = Chat(dialogue_agent, identity=DEMO_EN)
    (asked,) = chat.say(f"cancel order {order.id}")
    kept = chat.say(asked["buttons"][1]["payload"])  # "No, keep it"
    assert [m["utter_action"] for m in kept] == ["utter_cancel_kept"]
    assert status_of(shop_url, order.id) == "pending_payment"


def test_yes_after_talking_about_something_else_cancels_nothing(
    dialogue_agent: Any, shop_url: str
) -> None:
    order = orders_of(shop_url, "app", "app-demo-en")["paid"]
    chat = Chat(dialogue_agent, identity=DEMO_EN)
    chat.say(f"cancel order {order.id}")
    chat.say("how much is shipping")
    chat.say("yes")
    assert status_of(shop_url, order.id) == "paid"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("dispatched", "utter_cancel_refused_shipped"),
        ("in_transit", "utter_cancel_refused_shipped"),
        ("delivered", "utter_cancel_refused_shipped"),
        ("refunded", "utter_cancel_refused_closed"),
    ],
)
def test_cancel_after_dispatch_is_refused_with_the_reason(
    dialogue_agent: Any, shop_url: str, status: str, expected: str
) -> None:
    order = orders_of(shop_url, "app", "app-demo-en")[status]
    answer = Chat(dialogue_agent, identity=DEMO_EN).say(f"cancel my order {order.id}")
    assert [m["utter_action"] for m in answer] == [expected]
    assert status_of(shop_url, order.id) == status


@pytest.mark.parametrize("answer", ["是的，取消吧", "确认取消", "yes, cancel it"])
def test_cancel_it_is_a_yes_to_cancelling(
    dialogue_agent: Any, shop_url: str, answer: str
) -> None:
    from tests.test_refunds import customer_chat

    chat, made = customer_chat(dialogue_agent, shop_url, "zh")
    order_id = made["orders"]["pending_payment"]
    asked = chat.say(f"帮我取消订单 {order_id}")
    assert [m["utter_action"] for m in asked] == ["utter_confirm_cancel"]
    done = chat.say(answer)
    assert [m["utter_action"] for m in done] == ["utter_order_cancelled"]
    assert status_of(shop_url, order_id) == "cancelled"


def test_cancelling_another_order_is_no_yes_to_the_first(
    dialogue_agent: Any, shop_url: str
) -> None:
    from tests.test_refunds import customer_chat

    chat, made = customer_chat(dialogue_agent, shop_url, "en")
    first, other = made["orders"]["pending_payment"], made["orders"]["paid"]
    chat.say(f"cancel order {first}")
    chat.say(f"cancel order {other}")
    assert status_of(shop_url, first) == "pending_payment"
