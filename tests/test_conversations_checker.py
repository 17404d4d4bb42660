"""The fuzzer's invariant checker (tests/conversations.py) on hand-made turns."""

from __future__ import annotations

from typing import Any, Dict, List

from tests.conversations import Checker


def said(*messages: tuple[str, str]) -> List[Dict[str, Any]]:
    return [{"text": text, "utter_action": action} for action, text in messages]


ASK = ("utter_ask_order_id", "Which order? Send me the order number.")
ASK_CANCEL = ("utter_ask_order_id_cancel", "Which order would you like to cancel?")
AGAIN = ("utter_ask_order_id_again", "I still need the order number to go on.")
FAQ = ("utter_faq/shipping_fee", "Shipping is free above 99 yuan.")


def kinds(checker: Checker, understood: str, bot: List[Dict[str, Any]]) -> List[str]:
    return [kind for kind, _ in checker.problems(understood, bot)]


def test_silence_template_error_and_language_are_caught() -> None:
    checker = Checker()
    assert kinds(checker, "hello", []) == ["silent"]
    assert kinds(checker, "hello", said(("utter_x", "Your order {order_id} is on its way"))) == [
        "template"
    ]
    assert kinds(checker, "hello", said(("utter_x", "Traceback (most recent call last)"))) == [
        "error_text"
    ]
    assert kinds(checker, "你好", said(("utter_greet", "Hello! How can I help?"))) == ["language"]
    # A message without words keeps the conversation's language (zh here).
    assert kinds(checker, "JM202411230456", said(("utter_x", "好的，正在查询。"))) == []


def test_a_third_ask_in_a_row_is_caught_across_turns() -> None:
    checker = Checker()
    assert kinds(checker, "where is my order", said(ASK)) == []
    assert kinds(checker, "how much is shipping", said(FAQ, AGAIN)) == []
    assert kinds(checker, "hmm", said(AGAIN)) == ["asks"]


def test_a_new_tasks_question_starts_a_new_run() -> None:
    checker = Checker()
    assert kinds(checker, "where is my order", said(ASK)) == []
    assert kinds(checker, "how much is shipping", said(FAQ, AGAIN)) == []
    # Switched to cancelling, with a side question: asked, answered, asked again
    # in one turn. The "again" repeats the cancel question, the run starts over.
    assert kinds(checker, "cancel it, and shipping?", said(ASK_CANCEL, FAQ, AGAIN)) == []
    assert kinds(checker, "hmm", said(AGAIN)) == []
    assert kinds(checker, "hmm", said(AGAIN)) == ["asks"]


def test_a_turn_without_a_question_ends_the_run() -> None:
    checker = Checker()
    for _ in range(3):
        assert kinds(checker, "where is my order", said(ASK)) == []
        assert kinds(checker, "thanks", said(("utter_thank", "You're welcome!"))) == []


def test_a_question_after_the_form_let_go_in_the_same_turn_starts_a_new_run() -> None:
    checker = Checker()
    assert kinds(checker, "where is my order", said(ASK)) == []
    assert kinds(checker, "hmm", said(AGAIN)) == []
    let_go = ("utter_task_let_go", "We can pick this up any time.")
    # The form lets go, then the message's second request starts it again.
    assert kinds(checker, "shipping? and my order", said(FAQ, let_go, ASK)) == []
    assert kinds(checker, "hmm", said(AGAIN)) == []
    assert kinds(checker, "hmm", said(AGAIN)) == ["asks"]
