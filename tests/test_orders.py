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
    answer = Chat(dialogue_agent).say("where is my order JM202611250001")
    assert [m["utter_action"] for m in answer] == ["utter_order_not_verified"]
    assert "JM202611250001" in texts(answer) and "log in" in texts(answer)


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
