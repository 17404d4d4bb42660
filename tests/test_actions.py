from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.fallback import (
    ActionDefaultAskAffirmation,
    ActionDefaultFallback,
    suggestions,
)
from actions.orders import ValidateOrderForm, normalize_order_id
from bot.settings import get_settings
from tests.conftest import ROOT


def tracker(language: str = "zh", latest: dict[str, Any] | None = None) -> Tracker:
    return Tracker(
        sender_id="test",
        slots={"language": language},
        latest_message=latest or {},
        events=[],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name=None,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("JM202411230456", "JM202411230456"),
        ("jm202411230456", "JM202411230456"),
        ("202411230456", "JM202411230456"),
        (" JM 2024 1123 0456 ", "JM202411230456"),
        ("JM2024", None),
        ("13812345678", None),
        (None, None),
    ],
)
def test_normalize_order_id(value: Any, expected: str | None) -> None:
    assert normalize_order_id(value) == expected


def test_invalid_order_id_is_rejected_with_an_explanation_in_the_customers_language() -> None:
    dispatcher = CollectingDispatcher()
    result = ValidateOrderForm().validate_order_id("JM2024", dispatcher, tracker("en"), {})
    assert result == {"order_id": None}
    # The sentence is a domain response (zh and en variations, chosen by the language slot).
    assert dispatcher.messages[0]["response"] == "utter_invalid_order_id"


LOW_CONFIDENCE = {
    "text": "那个钱的事",
    "intent": {"name": "nlu_fallback", "confidence": 0.45},
    "intent_ranking": [
        {"name": "nlu_fallback", "confidence": 0.45},
        {"name": "refund_status", "confidence": 0.31},
        {"name": "faq", "confidence": 0.2},
        {"name": "check_balance", "confidence": 0.1},
    ],
    "response_selector": {
        "faq": {"response": {"intent_response_key": "faq/return_policy"}},
    },
}


def test_suggestions_name_the_likely_topics_in_chinese() -> None:
    buttons = suggestions(tracker("zh", LOW_CONFIDENCE), "zh")
    assert buttons == [
        {"title": "查询退款进度", "payload": "/refund_status"},
        # FAQ topics send the canonical question so the answer selector can pick it.
        {"title": "退换货政策", "payload": "你们的退货政策是什么"},
    ]


@pytest.mark.asyncio
async def test_ask_affirmation_offers_none_of_these_in_english() -> None:
    dispatcher = CollectingDispatcher()
    await ActionDefaultAskAffirmation().run(dispatcher, tracker("en", LOW_CONFIDENCE), {})
    message = dispatcher.messages[0]
    assert message["response"] == "utter_did_you_mean"
    titles = [b["title"] for b in message["buttons"]]
    assert titles == ["Refund progress", "Return policy", "Something else"]
    # "Something else" must send out_of_scope: that's what moves Rasa's
    # two-stage fallback on to asking for a rephrase.
    assert message["buttons"][-1]["payload"] == "/out_of_scope"


@pytest.mark.asyncio
async def test_giving_up_hands_over_to_a_person_and_reverts_the_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Outside business hours no person can come: the bot says when people are back
    # and offers a message (its buttons), and nothing is queued.
    monkeypatch.setenv("BUSINESS_HOURS_FILE", str(ROOT / "tests" / "data" / "hours_closed.yml"))
    get_settings.cache_clear()
    try:
        dispatcher = CollectingDispatcher()
        events = await ActionDefaultFallback().run(dispatcher, tracker("zh"), {})
    finally:
        get_settings.cache_clear()
    assert events == [
        {"event": "rewind", "timestamp": None},
        {"event": "slot", "name": "handoff_outcome", "timestamp": None, "value": "closed_hours"},
    ]
    assert [m["response"] for m in dispatcher.messages] == ["utter_handoff_closed_hours"]
