"""What several actions share: the customer's language and bilingual texts.

Most customer-facing text lives in domain.yml responses. The few texts here are
the ones Rasa's built-in machinery asks custom actions for (the form's question,
the fallback steps), kept in both languages and chosen by the language slot.
"""

from __future__ import annotations

from typing import Dict, List

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

TEXTS: Dict[str, Dict[str, str]] = {
    "ask_order_id": {
        "zh": "请提供您的订单号（JM 开头的编号，例如 JM202411230456，在“我的 › 订单”里可以找到）。",
        "en": "Could you give me your order number? It starts with JM, like JM202411230456; "
        "you'll find it under Me › Orders.",
    },
    "invalid_order_id": {
        "zh": "这个订单号好像不太对：订单号是 JM 加 12 位数字，例如 JM202411230456。",
        "en": "That doesn't look like one of our order numbers: they are JM followed by "
        "12 digits, like JM202411230456.",
    },
    "ask_rephrase": {
        "zh": "抱歉，我没太理解您的意思，能换个说法再说一次吗？",
        "en": "Sorry, I didn't quite get that. Could you say it another way?",
    },
    "give_up": {
        "zh": "抱歉，我还是没能理解您的问题。要不要转接人工客服，或者给我们留言？",
        "en": "Sorry, I still couldn't understand. Would you like to talk to a person, "
        "or leave us a message?",
    },
    "talk_to_person": {"zh": "转人工", "en": "Talk to a person"},
    "leave_message": {"zh": "给客服留言", "en": "Leave a message"},
    "did_you_mean": {
        "zh": "抱歉，我不太确定您的意思，您是想问：",
        "en": "Sorry, I'm not sure I understood. Did you mean:",
    },
    "none_of_these": {"zh": "都不是", "en": "Something else"},
}


def language(tracker: Tracker) -> str:
    """The customer's language (the language slot), "zh" or "en"."""
    return "en" if tracker.get_slot("language") == "en" else "zh"


def text(key: str, lang: str) -> str:
    return TEXTS[key][lang]


def say(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    key: str,
    buttons: List[Dict[str, str]] | None = None,
) -> None:
    """Send TEXTS[key] in the customer's language."""
    dispatcher.utter_message(text=text(key, language(tracker)), buttons=buttons or [])
