"""Customer text is text: bot.nlu.payloads, on trackers built from events."""

from __future__ import annotations

from typing import Any

import pytest
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUtteranceReverted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.nlu.payloads import as_words, check_customer_text, looks_like_payload

BUTTONS = [
    {"title": "查订单", "payload": "/order_status"},
    {"title": "运费", "payload": "运费怎么算"},
]


def tracker(*events: Any) -> DialogueStateTracker:
    return DialogueStateTracker.from_events("t", [ActionExecuted("action_listen"), *events])


def bot(text: str, **data: Any) -> BotUttered:
    return BotUttered(text, data)


@pytest.mark.parametrize(
    "text",
    ["/restart", "\u3000/restart", " /restart", "\u200b/restart", "\ufeff/greet", "／restart",
     '/inform{"order_id": "JM202411230456"}', "\t\n/restart"],
)
def test_typed_payloads_become_words(text: str) -> None:
    assert looks_like_payload(text)
    meaning, notes = check_customer_text(text, tracker(bot("你好")))
    assert not looks_like_payload(meaning) and notes == {"typed_payload": True}
    assert meaning.startswith(("restart", "greet", "inform"))


def test_words_stay_words() -> None:
    for text in ["我的订单到哪了", "a/b testing", "50/50", "JM202411230456"]:
        assert check_customer_text(text, tracker()) == (text, {})
    assert as_words("/ / restart") == "restart"


def test_a_click_on_an_offered_button_is_a_payload() -> None:
    seen = tracker(UserUttered("你好"), bot("请选择", buttons=BUTTONS))
    assert check_customer_text("/order_status", seen) == ("/order_status", {})
    # Offered earlier in the session still counts (a click on an older button).
    later = tracker(
        UserUttered("你好"), bot("请选择", buttons=BUTTONS), UserUttered("嗯"), bot("好的")
    )
    assert check_customer_text("/order_status", later) == ("/order_status", {})
    # Never offered: words.
    assert check_customer_text("/human_handoff", seen)[1] == {"typed_payload": True}


def test_a_number_picks_from_the_last_list_of_the_latest_turn() -> None:
    two_lists = tracker(
        UserUttered("?"),
        bot("A or B?", buttons=[{"title": "A", "payload": "/affirm"}]),
        bot("pick", buttons=BUTTONS),
    )
    meaning, notes = check_customer_text("2", two_lists)
    assert meaning == "运费怎么算"
    assert notes == {"option": {"number": 2, "payload": "运费怎么算"}}
    assert check_customer_text("１", two_lists)[0] == "/order_status"
    assert check_customer_text("3", two_lists) == ("3", {})


def test_options_expire_when_the_conversation_moves_on() -> None:
    moved_on = tracker(
        UserUttered("你好"), bot("请选择", buttons=BUTTONS), UserUttered("运费"), bot("满99包邮")
    )
    assert check_customer_text("1", moved_on) == ("1", {})


def test_a_satisfaction_survey_offers_its_scores() -> None:
    survey = tracker(UserUttered("bye"), bot("", custom={"type": "satisfaction"}))
    assert check_customer_text('/rate{"score": 5}', survey) == ('/rate{"score": 5}', {})
    # The options are numbered by score: "5" is five points.
    assert check_customer_text("5", survey)[0] == '/rate{"score": 5}'
    assert check_customer_text("1", survey)[0] == '/rate{"score": 1}'


def test_the_fallbacks_last_offer_counts_though_rasa_reverts_its_turn() -> None:
    # action_default_fallback says "a person or a message?" and reverts the turn.
    give_up = [{"title": "转人工", "payload": "/human_handoff"},
               {"title": "留言", "payload": "/leave_message"}]
    seen = tracker(
        UserUttered("qwzx"),
        bot("您是想问：", buttons=[{"title": "投诉", "payload": "/complain"}]),
        UserUttered("qwzx"),
        bot("还是没能理解", buttons=give_up),
        UserUtteranceReverted(),
    )
    assert check_customer_text("2", seen)[0] == "/leave_message"
    assert check_customer_text("/human_handoff", seen) == ("/human_handoff", {})


def test_a_later_request_of_the_same_message_is_still_the_latest_reply() -> None:
    part = UserUttered("运费")
    part.metadata = {"dialogue": {"index": 1}}
    seen = tracker(UserUttered("查订单，运费"), bot("请选择", buttons=BUTTONS), part, bot("¥8"))
    assert check_customer_text("1", seen)[0] == "/order_status"
