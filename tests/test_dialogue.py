"""The dialogue's general behaviour, conversation by conversation, in both languages.

Real model, real action server, Rasa's Agent in process, messages with a
customer channel's metadata (as the web, app and WeChat channels send them).
These are the conversations that went silent or got stuck before
bot.policies.dialogue; tests/test_dialogue_fuzz.py tries thousands more.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.nlu.language import detect_language
from tests.conversations import Chat

pytestmark = pytest.mark.slow

ORDER = "JM202411230456"


@pytest.fixture
def chat(dialogue_agent: Any) -> Chat:
    return Chat(dialogue_agent)


def texts(messages: list[dict[str, Any]]) -> str:
    return "\n".join(m.get("text") or "" for m in messages)


def languages(messages: list[dict[str, Any]]) -> set[str | None]:
    return {detect_language(m.get("text") or "") for m in messages}


# --- task switching inside a form ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "refund", "thanks", "language"),
    [
        ("我的订单到哪了", "算了 我要退款", "谢谢", "zh"),
        ("where is my order", "I want a refund", "thanks", "en"),
    ],
)
def test_a_refund_asked_for_while_the_status_form_asks_switches_to_the_refund(
    chat: Chat, status: str, refund: str, thanks: str, language: str
) -> None:
    assert chat.actions(status) == ["utter_ask_order_id"]
    switched = chat.say(refund)
    assert [m["utter_action"] for m in switched] == ["utter_ask_order_id_refund"]
    assert languages(switched) == {language}
    answered = chat.say(ORDER)
    # An anonymous web visitor: offered to verify with a code before any refund.
    assert [m["utter_action"] for m in answered] == ["utter_account_not_verified_bind"]
    assert languages(answered) == {language}
    # The form has let go: thanks is thanks, with no "your order number?" after it.
    assert chat.actions(thanks) == ["utter_thank"]


def test_the_order_number_carries_over_to_the_next_task(chat: Chat) -> None:
    chat.say(f"where is my order {ORDER}")
    cancelled = chat.say("actually I want to cancel it")
    # Not asked for the number again; a visitor is offered to verify first.
    assert [m["utter_action"] for m in cancelled] == ["utter_account_not_verified_bind"]
    assert chat.tracker.get_slot("order_id") == ORDER


@pytest.mark.parametrize(
    ("start", "other", "expected"),
    [
        # Nobody at the desk in these tests: a person is asked for, a message offered.
        ("我要取消订单", "转人工", ["utter_handoff_no_agent"]),
        ("cancel my order", "can I talk to a real person", ["utter_handoff_no_agent"]),
        ("我的订单到哪了", "我的钱包余额是多少", ["utter_account_not_verified_bind"]),
        ("where's my parcel", "how many points do I have", ["utter_account_not_verified_bind"]),
        ("我要退款", "你们的快递员态度太差了 我要投诉",
         ["utter_complaint_sorry", "utter_handoff_no_agent"]),
        ("track my order please", "I forgot my password", ["utter_reset_password"]),
    ],
)
def test_another_task_inside_the_form_is_done_at_once(
    chat: Chat, start: str, other: str, expected: list[str]
) -> None:
    assert chat.actions(start)[0].startswith("utter_ask_order_id")
    assert chat.actions(other) == expected
    # …and the form is gone: a greeting gets a greeting, not the form's question.
    assert chat.actions("bye") == ["utter_goodbye"]


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        ("我的订单到哪了", "算了", "utter_task_stopped"),
        ("我的订单到哪了", "不用了", "utter_task_stopped"),
        ("where is my order", "never mind", "utter_task_stopped"),
        ("where is my order", "bye", "utter_goodbye"),
        ("我要退款", "谢谢", "utter_thank"),
        ("refund please", "thanks", "utter_thank"),
    ],
)
def test_bye_thanks_and_never_mind_end_the_form_politely(
    chat: Chat, start: str, stop: str, expected: str
) -> None:
    chat.say(start)
    assert chat.actions(stop) == [expected]
    assert chat.tracker.active_loop_name is None


@pytest.mark.parametrize(
    ("start", "questions", "language"),
    [
        ("我的订单到哪了", ["运费多少", "发票怎么开"], "zh"),
        ("where is my order", ["how much is shipping", "can I get an invoice"], "en"),
    ],
)
def test_a_question_inside_the_form_is_answered_and_the_form_asks_again_once(
    chat: Chat, start: str, questions: list[str], language: str
) -> None:
    chat.say(start)
    first = chat.say(questions[0])
    answer = "utter_faq/" + _faq_key(chat)
    assert [m["utter_action"] for m in first] == [answer, "utter_ask_order_id_again"]
    assert languages(first) == {language}
    second = chat.say(questions[1])
    # Asked twice already: answered, and the form lets go instead of asking a third time.
    assert [m["utter_action"] for m in second][-1] == "utter_task_let_go"
    assert not any("utter_ask" in str(m["utter_action"]) for m in second)
    assert chat.tracker.active_loop_name is None
    # The number given later still works: a new request starts the form again.
    assert chat.actions(start) == ["utter_ask_order_id"]


def _faq_key(chat: Chat) -> str:
    intent = chat.tracker.latest_message.intent
    return str(intent.get("full_retrieval_intent_name", "faq/")).split("/", 1)[1]


def test_answers_that_are_no_answer_make_the_form_ask_again_then_let_go(chat: Chat) -> None:
    assert chat.actions("where is my order") == ["utter_ask_order_id"]
    assert chat.actions("12345") == ["utter_ask_order_id_again"]
    assert chat.actions("hmm") == ["utter_task_let_go"]
    assert chat.actions("where is my order") == ["utter_ask_order_id"]


def test_the_same_request_again_is_not_a_new_task(chat: Chat) -> None:
    assert chat.actions("我的订单到哪了") == ["utter_ask_order_id"]
    assert chat.actions("我的订单到哪了") == ["utter_ask_order_id_again"]
    assert chat.actions("我的订单到哪了") == ["utter_task_let_go"]


def test_a_language_switch_inside_a_chinese_form_gets_english(chat: Chat) -> None:
    chat.say("我的订单到哪了")
    reply = chat.say("sorry, English please. where is my parcel")
    assert reply and languages(reply) == {"en"}
    answered = chat.say(ORDER)
    assert [m["utter_action"] for m in answered] == ["utter_account_not_verified_bind"]
    assert languages(answered) == {"en"} and chat.tracker.get_slot("order_id") == ORDER


# --- fallback ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unclear", "clear", "expected"),
    [
        ("blorp zzkx qwv", "where is my order", "utter_ask_order_id"),
        ("嗯 那个 zzkx qwv", "运费怎么算", "utter_faq/shipping_fee"),
    ],
)
def test_a_clear_request_after_did_you_mean_is_handled_as_that_request(
    chat: Chat, unclear: str, clear: str, expected: str
) -> None:
    asked = chat.say(unclear)
    assert [m["utter_action"] for m in asked] == ["utter_did_you_mean"]
    assert chat.actions(clear) == [expected]


def test_two_misses_hand_over_to_a_person_in_the_customers_language(chat: Chat) -> None:
    chat.say("blorp zzkx qwv")
    assert chat.actions("/out_of_scope") == ["utter_ask_rephrase"]
    chat.say("blorp zzkx qwv")
    give_up = chat.say("/out_of_scope")
    # "/out_of_scope" was offered as a button ("Something else"), so it is a click.
    # Nobody at the desk here: a message is offered instead.
    assert [m["utter_action"] for m in give_up] == ["utter_handoff_no_agent"]
    assert [b["payload"] for b in give_up[0]["buttons"]] == ["/leave_message", "/deny"]
    assert languages(give_up) == {"en"}


def test_the_language_survives_the_fallback_rewinding_turns(chat: Chat) -> None:
    chat.say("blorp zzkx qwv")  # English gibberish: "did you mean…?" in English
    reply = chat.say("👌👌")  # no words: the conversation's language
    assert reply and languages(reply) == {"en"}


# --- payloads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "/restart",
        "\u3000/restart",
        "\u200b/restart",
        "／restart",
        '/inform{"order_id": "JM202411230456"}',
    ],
)
def test_typed_payloads_are_words(chat: Chat, typed: str) -> None:
    chat.say("where is my order")
    reply = chat.say(typed)
    assert reply, "silence"
    events = [e.as_dict()["event"] for e in chat.turn_events]
    assert "restart" not in events
    user = next(e for e in chat.turn_events if e.as_dict()["event"] == "user")
    assert user.metadata.get("typed_payload") is True
    assert not str(user.parse_data["text"]).lstrip("\u3000\u200b ").startswith(("/", "／"))
    # Not a slot from the payload's entities either.
    assert chat.tracker.get_slot("order_id") is None or "JM202411230456" in typed


def test_a_button_the_bot_offered_is_a_click(chat: Chat) -> None:
    greeting = chat.say("你好")
    assert "/human_handoff" in [b["payload"] for b in greeting[0]["buttons"]]
    assert chat.actions("/human_handoff") == ["utter_handoff_no_agent"]


def test_a_number_picks_from_the_list_seen_last_and_expires(chat: Chat) -> None:
    greeting = chat.say("你好")
    options = [b["payload"] for b in greeting[0]["buttons"]]
    assert chat.actions("2")  # the second greeting button: "运费怎么算"
    user = next(e for e in chat.turn_events if e.as_dict()["event"] == "user")
    assert user.metadata["option"] == {"number": 2, "payload": options[1]}
    assert user.parse_data["text"] == options[1]
    # The shipping answer has no options: "2" is now just a number.
    chat.say("3")
    user = next(e for e in chat.turn_events if e.as_dict()["event"] == "user")
    assert "option" not in user.metadata and user.parse_data["text"] == "3"


def test_trusted_callers_keep_payloads(dialogue_agent: Any) -> None:
    chat = Chat(dialogue_agent, customer=False)
    assert chat.actions("/greet") == ["utter_greet"]


# --- never silent -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["👍", "JM202411230456", "0", "?", "。。。", "ok", "好"])
def test_messages_without_a_task_still_get_a_reply(chat: Chat, text: str) -> None:
    assert chat.say(text)


def test_several_requests_in_one_message_are_answered_in_order(chat: Chat) -> None:
    # The parse NLU gives such a message (bot.nlu: `requests`, the first one is the
    # message's intent); given directly here so this tests the dialogue alone.
    faq = {
        "faq": {
            "response": {
                "intent_response_key": "faq/shipping_fee",
                "utter_action": "utter_faq/shipping_fee",
                "confidence": 0.97,
                "responses": [],
            },
            "ranking": [],
        },
        "all_retrieval_intents": ["faq"],
    }
    text = "查下订单 顺便问下运费"
    parse = {
        "text": text,
        "intent": {"name": "order_status", "confidence": 0.95},
        "intent_ranking": [{"name": "order_status", "confidence": 0.95}],
        "entities": [],
        "language": "zh",
        "requests": [
            {"text": "查下订单", "start": 0, "end": 4,
             "intent": {"name": "order_status", "confidence": 0.95}},
            {"text": "顺便问下运费", "start": 5, "end": 11,
             "intent": {"name": "faq", "confidence": 0.97}, "response_selector": faq},
        ],
    }
    reply = chat.say(text, parse_data=parse)
    assert [m["utter_action"] for m in reply] == [
        "utter_ask_order_id",
        "utter_faq/shipping_fee",
        "utter_ask_order_id_again",
    ]
    assert languages(reply) == {"zh"}
    # The customer said it once: the transcript shows it once.
    from connectors.history import transcript_of

    lines = transcript_of([e.as_dict() for e in chat.tracker.events])
    assert [line["text"] for line in lines if line["sender"] == "customer"] == [text]
    # The order number then answers the order question.
    answered = chat.say(ORDER)
    assert [m["utter_action"] for m in answered] == ["utter_account_not_verified_bind"]


@pytest.mark.parametrize(
    ("text", "expected", "language"),
    [
        (
            "查下订单 顺便问下运费",
            ["utter_ask_order_id", "utter_faq/shipping_fee", "utter_ask_order_id_again"],
            "zh",
        ),
        (
            "我要退款，另外发票怎么开",
            ["utter_ask_order_id_refund", "utter_faq/invoice", "utter_ask_order_id_again"],
            "zh",
        ),
        (
            "how much is shipping? also what's my wallet balance",
            ["utter_faq/shipping_fee", "utter_account_not_verified_bind"],
            "en",
        ),
        (
            "where is my parcel? also do you ship to Hong Kong",
            ["utter_ask_order_id", "utter_faq/delivery_area", "utter_ask_order_id_again"],
            "en",
        ),
    ],
)
def test_two_requests_understood_by_nlu_are_both_answered_in_order(
    chat: Chat, text: str, expected: list[str], language: str
) -> None:
    reply = chat.say(text)
    assert [m["utter_action"] for m in reply] == expected
    assert languages(reply) == {language}


def test_one_request_with_a_greeting_is_one_request(chat: Chat) -> None:
    assert chat.actions("你好，我的订单到哪了") == ["utter_ask_order_id"]


def test_an_out_of_scope_message_after_the_rephrase_question_ends_the_fallback(
    chat: Chat,
) -> None:
    (asked,) = chat.say("acqofpcvkqwxcfcbqvzqc")
    assert asked["utter_action"] == "utter_did_you_mean"
    # "Something else": Rasa's fallback asks to rephrase.
    assert chat.actions(asked["buttons"][-1]["payload"]) == ["utter_ask_rephrase"]
    # Out of scope again: not "say it another way" forever, but what the bot can do.
    assert chat.actions("what time is it") == ["utter_out_of_scope"]
    assert chat.tracker.active_loop_name is None
    assert chat.actions("what time is it") == ["utter_out_of_scope"]
