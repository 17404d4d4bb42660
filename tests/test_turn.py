"""bot.policies.turn: what the dialogue policy reads from the tracker each step."""

from __future__ import annotations

from typing import Any

from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    SlotSet,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from bot.policies.turn import DIALOGUE_METADATA_KEY, read_turn

FORM = "order_form"


def tracker(*events: Any) -> DialogueStateTracker:
    return DialogueStateTracker.from_events("t", [ActionExecuted("action_listen"), *events])


def user(text: str, intent: str = "order_status", **parse: Any) -> UserUttered:
    return UserUttered(text, {"name": intent, "confidence": 0.9}, parse_data={
        "intent": {"name": intent, "confidence": 0.9}, **parse,
    })


def ask(first: bool = False) -> list[Any]:
    """One run of the form that asks for the order number."""
    run: list[Any] = [ActionExecuted(FORM)]
    if first:
        run.append(ActiveLoop(FORM))
    return [*run, SlotSet("requested_slot", "order_id"), BotUttered("number?"),
            ActionExecuted("action_listen")]


def test_a_turn_is_the_latest_message_and_what_followed() -> None:
    turn = read_turn(tracker(user("hi", "greet"), ActionExecuted("utter_greet"),
                             BotUttered("hello")))
    assert turn.intent == "greet" and turn.actions == ["utter_greet"]
    assert turn.spoke(forms=[]) and turn.loop_at_user is None


def test_asks_in_a_row_count_runs_of_the_form_that_ask() -> None:
    events = [user("where is my order"), *ask(first=True), user("how much is shipping", "faq"),
              ActionExecuted("utter_faq"), BotUttered("¥8"), *ask(), user("hmm", "affirm")]
    turn = read_turn(tracker(*events))
    assert (turn.loop_at_user, turn.slot_at_user, turn.asks_at_user) == (FORM, "order_id", 2)


def test_asks_start_again_with_a_new_activation_or_another_slot() -> None:
    events = [user("where is my order"), *ask(first=True), *ask(),
              ActiveLoop(None), SlotSet("requested_slot", None),
              user("refund", "request_refund"), *ask(first=True), user("hmm", "affirm")]
    assert read_turn(tracker(*events)).asks_at_user == 1
    other_slot = [user("x"), *ask(first=True), ActionExecuted(FORM),
                  SlotSet("requested_slot", "reason"), user("hmm", "affirm")]
    turn = read_turn(tracker(*other_slot))
    assert (turn.slot_at_user, turn.asks_at_user) == ("reason", 1)


def test_slots_the_message_changed() -> None:
    events = [user("where is my order"), SlotSet("order_request", "status"), *ask(first=True),
              user("refund instead", "request_refund"), SlotSet("order_request", "refund")]
    turn = read_turn(tracker(*events))
    assert turn.extracted_slots() == {"order_request": "refund"}
    assert turn.changed_slots() == {"order_request": "refund"}
    same = [user("where is my order"), SlotSet("order_request", "status"), *ask(first=True),
            user("where is my order"), SlotSet("order_request", "status")]
    assert read_turn(tracker(*same)).changed_slots() == {}


def test_a_replayed_message_is_the_turn_and_the_reverted_one_is_gone() -> None:
    events = [user("where is my order"), *ask(first=True), user("refund", "request_refund"),
              ActionExecuted("action_switch_task"), UserUtteranceReverted(), ActiveLoop(None),
              SlotSet("requested_slot", None), ActionExecuted("action_listen"),
              user("refund", "request_refund")]
    turn = read_turn(tracker(*events))
    assert turn.loop_at_user is None and turn.since == []


def test_pending_requests_are_those_not_injected_yet() -> None:
    requests = [{"text": "查订单", "intent": {"name": "order_status"}},
                {"text": "运费", "intent": {"name": "faq"}},
                {"text": "发票", "intent": {"name": "faq"}}]
    first = user("查订单 运费 发票", requests=requests)
    assert [r["text"] for r in read_turn(tracker(first)).pending_requests()] == ["运费", "发票"]
    part = user("运费", "faq")
    part.metadata = {DIALOGUE_METADATA_KEY: {"index": 1}}
    turn = read_turn(tracker(first, ActionExecuted("utter_x"), ActionExecuted("action_listen"),
                             part))
    assert turn.message is first
    assert [r["text"] for r in turn.pending_requests()] == ["发票"]


def test_in_rasa_test_a_response_action_or_a_form_counts_as_speaking() -> None:
    # `rasa test` replays stories without running actions: no BotUttered there.
    turn = read_turn(tracker(user("bye", "goodbye"), ActionExecuted("utter_goodbye")))
    assert turn.spoke(forms=[])
    turn = read_turn(tracker(user("where is my order"), ActionExecuted(FORM)))
    assert turn.spoke(forms=[FORM]) and not turn.spoke(forms=[])
