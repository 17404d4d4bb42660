"""What several actions share: the customer's language and button labels.

Sentences live in domain.yml responses (a zh and an en variation each, chosen
by the language slot); actions dispatch them by name. What is left here are the
labels of buttons that actions compose from data (the fallback's topics).
"""

from __future__ import annotations

from typing import Dict

from rasa_sdk import Tracker

LABELS: Dict[str, Dict[str, str]] = {
    "none_of_these": {"zh": "都不是", "en": "Something else"},
    # Membership levels (bot.shop.schema.LEVELS), filled into account answers.
    "level_regular": {"zh": "普通会员", "en": "Regular"},
    "level_silver": {"zh": "白银会员", "en": "Silver"},
    "level_gold": {"zh": "黄金会员", "en": "Gold"},
    "level_platinum": {"zh": "铂金会员", "en": "Platinum"},
}


def language(tracker: Tracker) -> str:
    """The customer's language (the language slot), "zh" or "en"."""
    return "en" if tracker.get_slot("language") == "en" else "zh"


def label(key: str, lang: str) -> str:
    return LABELS[key][lang]


def level_label(level: str | None, lang: str) -> str:
    """A membership level as the customer reads it ("铂金会员", "Platinum")."""
    return LABELS.get(f"level_{level}", {}).get(lang) or ("会员" if lang == "zh" else "VIP")
