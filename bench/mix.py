"""A realistic, seeded mix of customer conversations for bench/latency.py.

What customers really send, in both languages: greetings, order questions
that open a form and then give the order number, order status asked with
the number, cancelling an order (with the confirmation), refunds (the refund
form: order, reason, amount), address changes, FAQ questions, an FAQ
question in the middle of a form and then back to it, thanks and goodbye.

Every turn carries its kind (the latency table's rows) and the response
(`utter_action` of the bot's messages) that a turn going as scripted must
contain, so the benchmark can count turns that didn't go as scripted instead
of timing fallbacks. Order numbers are placeholders (`{delivered}`, …) filled
with a fresh customer's orders (tests/shop_customers.py: one order in every
state), since cancelling or refunding changes them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

# Turn kinds, in the order the tables show them.
GREET = "greet/thanks/bye"
FAQ = "faq"
FORM_START = "form start"
FORM_ANSWER = "form answer"
ORDER_STATUS = "order status (number given)"
TASK_SWITCH = "task switch (faq in a form)"
KINDS = (GREET, FAQ, FORM_START, FORM_ANSWER, ORDER_STATUS, TASK_SWITCH)

# Answers that mean the turn did not go as scripted, whatever else was said.
OFF_SCRIPT = {
    "utter_core_fallback", "utter_out_of_scope", "utter_ask_rephrase", "utter_default",
    "utter_technical_trouble", "utter_account_lookup_failed",
}


@dataclass(frozen=True)
class Turn:
    kind: str
    text: str  # may name an order: "{delivered}"
    expect: str  # a response the turn's bot messages must include ("utter_faq/" = any FAQ)

    def filled(self, orders: dict[str, str]) -> str:
        return self.text.format(**orders)


# Phrasings, picked at random (seeded) per conversation.
PHRASES: dict[str, dict[str, list[str]]] = {
    "zh": {
        "greet": ["你好", "您好", "在吗", "hi 客服"],
        "thanks": ["谢谢", "好的谢谢", "谢谢你"],
        "bye": ["拜拜", "再见"],
        "where": ["我的快递到哪了", "帮我查下订单", "我的包裹到哪里了"],
        "status_with": ["订单 {in_transit} 到哪了", "帮我查一下 {dispatched} 的物流"],
        "cancel": ["我要取消订单", "帮我取消一个订单"],
        "yes": ["是的", "确认", "对"],
        "refund": ["我要退款", "申请退款"],
        "reason": ["质量问题", "收到的东西坏了"],
        "amount": ["50", "全额", "30元"],
        "address": ["我要改收货地址", "收货地址填错了，想改一下"],
        "new_address": ["上海市徐汇区漕溪北路 88 号 3 楼", "北京市朝阳区建国路 1 号 5 单元"],
    },
    "en": {
        "greet": ["hi", "hello", "good morning"],
        "thanks": ["thanks", "thank you"],
        "bye": ["bye", "goodbye"],
        "where": ["where is my order", "track my parcel please", "where is my package"],
        "status_with": ["where is my order {in_transit}", "track order {dispatched}"],
        "cancel": ["cancel my order", "I want to cancel an order"],
        "yes": ["yes", "yes please"],
        "refund": ["I want a refund", "I'd like a refund please"],
        "reason": ["quality problem", "it is broken"],
        "amount": ["50", "full refund", "30 yuan"],
        "address": ["I need to change my delivery address", "change the shipping address"],
        "new_address": ["Flat 5, 12 Nanjing Road, Shanghai 200001",
                        "Room 301, 88 Caoxi North Road, Shanghai 200030"],
    },
}

# FAQ questions and the key each is answered with.
FAQS: dict[str, list[tuple[str, str]]] = {
    "zh": [
        ("运费怎么算", "shipping_fee"), ("能开发票吗", "invoice"),
        ("你们几点有人工客服", "business_hours"), ("下单后多久发货", "shipping_time"),
        ("退货政策是什么", "return_policy"), ("可以用支付宝付款吗", "payment_methods"),
        ("会员等级有什么区别", "membership_levels"), ("优惠券怎么用", "coupons"),
    ],
    "en": [
        ("how much is shipping", "shipping_fee"), ("can I get an invoice", "invoice"),
        ("what are your opening hours", "business_hours"),
        ("how long does shipping take", "shipping_time"),
        ("what is your return policy", "return_policy"),
        ("can I pay with alipay", "payment_methods"),
        ("what are the membership levels", "membership_levels"),
        ("how do I use a coupon", "coupons"),
    ],
}


class Script:
    """Picks phrasings with one seeded random generator."""

    def __init__(self, rng: random.Random, lang: str) -> None:
        self.rng, self.lang = rng, lang

    def say(self, key: str) -> str:
        return self.rng.choice(PHRASES[self.lang][key])

    def faq(self, kind: str = FAQ) -> Turn:
        text, key = self.rng.choice(FAQS[self.lang])
        return Turn(kind, text, f"utter_faq/{key}")


def order_status(s: Script) -> list[Turn]:
    return [Turn(FORM_START, s.say("where"), "utter_ask_order_id"),
            Turn(FORM_ANSWER, "{in_transit}", "utter_order_status_in_transit")]


def order_status_given(s: Script) -> list[Turn]:
    text = s.say("status_with")
    state = "in_transit" if "{in_transit}" in text else "dispatched"
    return [Turn(ORDER_STATUS, text, f"utter_order_status_{state}")]


def cancel(s: Script) -> list[Turn]:
    return [Turn(FORM_START, s.say("cancel"), "utter_ask_order_id_cancel"),
            Turn(FORM_ANSWER, "{pending_payment}", "utter_confirm_cancel"),
            Turn(FORM_ANSWER, s.say("yes"), "utter_order_cancelled")]


def refund(s: Script, switch: bool = False) -> list[Turn]:
    turns = [Turn(FORM_START, s.say("refund"), "utter_ask_order_id_refund"),
             Turn(FORM_ANSWER, "{delivered}", "utter_ask_refund_reason")]
    if switch:  # an FAQ question while the form waits for the reason, then back
        turns.append(s.faq(TASK_SWITCH))
    turns += [Turn(FORM_ANSWER, s.say("reason"), "utter_ask_refund_amount"),
              Turn(FORM_ANSWER, s.say("amount"), "utter_refund_submitted")]
    return turns


def address(s: Script, switch: bool = False) -> list[Turn]:
    turns = [Turn(FORM_START, s.say("address"), "utter_ask_order_id_address")]
    if switch:  # asked for the order number, the customer asks something else first
        turns.append(s.faq(TASK_SWITCH))
    turns += [Turn(FORM_ANSWER, "{paid}", "utter_ask_new_address"),
              Turn(FORM_ANSWER, s.say("new_address"), "utter_address_updated")]
    return turns


# What a conversation is about, with weights (order questions and FAQ most often).
TASKS: list[tuple[Callable[[Script], list[Turn]], int]] = [
    (order_status, 4), (order_status_given, 2), (cancel, 2), (refund, 2),
    (lambda s: refund(s, switch=True), 2), (address, 1), (lambda s: address(s, switch=True), 1),
]


def conversation(rng: random.Random) -> tuple[str, list[Turn]]:
    """One customer's conversation: (language, turns)."""
    lang = rng.choice(("zh", "en"))
    s = Script(rng, lang)
    turns: list[Turn] = []
    if rng.random() < 0.7:
        turns.append(Turn(GREET, s.say("greet"), "utter_greet"))
    if rng.random() < 0.4:
        turns.append(s.faq())
    tasks, weights = zip(*TASKS, strict=True)
    turns += rng.choices(tasks, weights)[0](s)
    for _ in range(rng.choice((0, 1, 1, 2))):
        turns.append(s.faq())
    turns.append(Turn(GREET, s.say("thanks"), "utter_thank"))
    if rng.random() < 0.5:
        turns.append(Turn(GREET, s.say("bye"), "utter_goodbye"))
    return lang, turns


def conversations(count: int, seed: int) -> list[tuple[str, list[Turn]]]:
    rng = random.Random(seed)
    return [conversation(rng) for _ in range(count)]


def replies_by_turn(events: list[dict], sent: list[str]) -> list[list[str]]:
    """The `utter_action` of the bot messages answering each sent text, from the
    conversation's tracker events (a user event whose text is the next sent one
    starts the next turn; other user events, e.g. re-routed ones, stay in the turn)."""
    said: list[list[str]] = []
    for event in events:
        if event.get("event") == "user" and len(said) < len(sent) and (
            event.get("text") == sent[len(said)]
        ):
            said.append([])
        elif event.get("event") == "bot" and said:
            said[-1].append((event.get("metadata") or {}).get("utter_action") or "?")
    return said + [[] for _ in range(len(sent) - len(said))]


def as_scripted(expect: str, said: list[str]) -> bool:
    """Whether a turn's responses (utter_action names, in order) are what the script expects."""
    if any(name in OFF_SCRIPT for name in said):
        return False
    if expect.endswith("/"):
        return any(name.startswith(expect) for name in said)
    return expect in said
