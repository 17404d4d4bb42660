"""Two-stage fallback: "did you mean …?" with the likeliest topics as buttons.

Rasa's built-in version shows raw intent names in English. This one names the
likely topics in the customer's language; a topic button sends an intent
payload (or, for FAQ topics, the canonical question so the answer selector
picks the right answer), and "none of these" sends /out_of_scope, which makes
Rasa ask for a rephrase and, after a second miss, offer a person.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from rasa_sdk import Action, Tracker
from rasa_sdk.events import UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import label, language

# intent -> (zh label, en label)
INTENT_LABELS: Dict[str, Tuple[str, str]] = {
    "greet": ("打招呼", "Saying hello"),
    "goodbye": ("结束对话", "Ending the chat"),
    "thank": ("表示感谢", "Saying thanks"),
    "bot_challenge": ("我是不是机器人", "Whether I'm a bot"),
    "human_handoff": ("转人工客服", "Talking to a person"),
    "complain": ("投诉与意见", "Making a complaint"),
    "leave_message": ("给客服留言", "Leaving a message"),
    "check_balance": ("查询钱包余额", "Your wallet balance"),
    "check_points": ("查询积分", "Your points"),
    "account_info": ("查询账户信息", "Your account details"),
    "order_status": ("查询订单物流", "Tracking an order"),
    "cancel_order": ("取消订单", "Cancelling an order"),
    "request_refund": ("申请退款", "Asking for a refund"),
    "refund_status": ("查询退款进度", "Refund progress"),
    "reset_password": ("重置密码 / 无法登录", "Resetting your password"),
    "update_address": ("修改收货地址", "Changing an address"),
    "bind_account": ("验证手机号、绑定账户", "Verifying your phone"),
}

# faq/<key> -> (zh label, en label, zh question, en question)
FAQ_TOPICS: Dict[str, Tuple[str, str, str, str]] = {
    "business_hours": (
        "人工客服服务时间", "Service hours", "人工客服几点上班", "What are your opening hours?"
    ),
    "shipping_time": (
        "发货和配送时间", "Delivery times", "下单后多久能到", "How long does delivery take?"
    ),
    "shipping_fee": ("运费", "Shipping fees", "运费怎么算", "How much is shipping?"),
    "return_policy": (
        "退换货政策", "Return policy", "你们的退货政策是什么", "What is your return policy?"
    ),
    "payment_methods": (
        "支付方式", "Payment methods", "支持哪些支付方式", "Which payment methods do you accept?"
    ),
    "invoice": ("发票", "Invoices", "怎么开发票", "How do I get an invoice?"),
    "membership_levels": (
        "会员等级与权益", "Membership levels", "会员等级有哪些", "What membership levels are there?"
    ),
    "delivery_area": ("配送范围", "Delivery area", "哪些地区可以配送", "Where do you deliver?"),
    "warranty": ("保修", "Warranty", "保修期是多久", "How long is the warranty?"),
    "coupons": ("优惠券使用", "Coupons", "优惠券怎么用", "How do I use a coupon?"),
    "price_protection": (
        "价格保护", "Price protection", "买完降价了能退差价吗", "Do you have price protection?"
    ),
    "authenticity": ("正品保证", "Genuine goods", "你们卖的是正品吗", "Are your products genuine?"),
}

_SKIP = {"nlu_fallback", "out_of_scope", "affirm", "deny", "inform"}
MAX_SUGGESTIONS = 2


def _faq_key(tracker: Tracker) -> str | None:
    selector = tracker.latest_message.get("response_selector", {}).get("faq", {})
    key = selector.get("response", {}).get("intent_response_key") or ""
    return key.split("/", 1)[1] if key.startswith("faq/") else None


def suggestions(tracker: Tracker, lang: str) -> List[Dict[str, str]]:
    """Buttons for the likeliest intents of the latest message, best first."""
    zh = lang == "zh"
    buttons: List[Dict[str, str]] = []
    for ranked in tracker.latest_message.get("intent_ranking", []):
        name = ranked.get("name")
        if name == "faq":
            key = _faq_key(tracker)
            if key in FAQ_TOPICS:
                zh_label, en_label, zh_q, en_q = FAQ_TOPICS[key]
                buttons.append(
                    {"title": zh_label if zh else en_label, "payload": zh_q if zh else en_q}
                )
        elif name in INTENT_LABELS and name not in _SKIP:
            zh_label, en_label = INTENT_LABELS[name]
            buttons.append({"title": zh_label if zh else en_label, "payload": f"/{name}"})
        if len(buttons) == MAX_SUGGESTIONS:
            break
    return buttons


class ActionDefaultAskAffirmation(Action):
    def name(self) -> str:
        return "action_default_ask_affirmation"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        lang = language(tracker)
        buttons = suggestions(tracker, lang)
        buttons.append({"title": label("none_of_these", lang), "payload": "/out_of_scope"})
        dispatcher.utter_message(response="utter_did_you_mean", buttons=buttons)
        return []


class ActionDefaultAskRephrase(Action):
    def name(self) -> str:
        return "action_default_ask_rephrase"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        dispatcher.utter_message(response="utter_ask_rephrase")
        return []


class ActionDefaultFallback(Action):
    """After two misses in a row: a person takes over (or, when nobody can, the bot
    offers a message); the misunderstood turn is forgotten."""

    def name(self) -> str:
        return "action_default_fallback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        from actions.handoff import hand_off

        # As Rasa's default does: the misunderstood message shouldn't steer the dialogue.
        return [UserUtteranceReverted(), *await hand_off(dispatcher, tracker, misunderstood=True)]
