"""bot.tracker_copy: the copy holds what Rasa's replaying copy holds, and is its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActiveLoop,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    FollowupAction,
    LoopInterrupted,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker, EventVerbosity

from bot import tracker_copy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain.yml"))


def said(text: str, intent: str, **entities: Any) -> UserUttered:
    return UserUttered(text, {"name": intent, "confidence": 0.9},
                       [{"entity": k, "value": v} for k, v in entities.items()])


CONVERSATIONS: dict[str, list[Event]] = {
    "form, rejected, interrupted, resumed": [
        ActionExecuted("action_session_start"), SessionStarted(),
        SlotSet("language", "zh"), ActionExecuted("action_listen"),
        said("我的订单到哪了", "order_status"), ActionExecuted("order_form"),
        ActiveLoop("order_form"), SlotSet("requested_slot", "order_id"),
        ActionExecuted("action_listen"), said("退货政策是什么", "faq"),
        ActionExecutionRejected("order_form"), LoopInterrupted(True),
        ActionExecuted("utter_faq"), BotUttered("七天无理由退货", {"elements": None}),
        ActionExecuted("order_form"), ActionExecuted("action_listen"),
        said("12345678", "inform", order_id="12345678"),
    ],
    "paused for a person, followup, rewind": [
        ActionExecuted("action_listen"), said("hi", "greet"),
        ActionExecuted("utter_greet"), BotUttered("Hello!"),
        ActionExecuted("action_listen"), said("a person please", "human_handoff"),
        ActionExecuted("action_handoff"), ConversationPaused(),
        UserUttered("are you there"), ConversationResumed(), FollowupAction("action_survey_solved"),
        ActionExecuted("action_listen"), said("oops", "deny"), UserUtteranceReverted(),
    ],
    "restarted mid-form": [
        ActionExecuted("action_listen"), said("cancel my order", "cancel_order"),
        ActionExecuted("order_form"), ActiveLoop("order_form"),
        SlotSet("requested_slot", "order_id"), ActionExecuted("action_listen"),
        said("/restart", "restart"), Restarted(), ActionExecuted("action_listen"),
        said("where is my refund", "refund_status"),
    ],
}


def untimed(event: Event | None) -> dict[str, Any] | None:
    """An event as a dict without its time: a reset makes an empty one, stamped now."""
    return {k: v for k, v in event.as_dict().items() if k != "timestamp"} if event else None


def state(tracker: DialogueStateTracker) -> dict[str, Any]:
    return {
        "current": tracker.current_state(EventVerbosity.ALL),
        "slots": {n: (s.value, s.has_been_set) for n, s in tracker.slots.items()},
        "active_loop": tracker.active_loop,
        "latest_action": tracker.latest_action,
        "followup": tracker.followup_action,
        "paused": tracker.is_paused(),
        "latest_message": untimed(tracker.latest_message),
        "latest_bot": untimed(tracker.latest_bot_utterance),
        "ids": (tracker.model_id, tracker.assistant_id),
        "sender": (tracker.sender_id, tracker.is_rule_tracker),
    }


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_the_copy_is_what_rasas_replay_rebuilds(domain: Domain, name: str) -> None:
    tracker = DialogueStateTracker.from_events("cust-1", CONVERSATIONS[name], domain.slots)
    tracker.model_id, tracker.assistant_id = "model-1", "assistant-1"
    ours = tracker_copy.copy_tracker(tracker)
    rasas = tracker_copy._rasa_copy(tracker)
    assert state(ours) == state(rasas)
    assert ours.events is not tracker.events


def test_changing_the_copy_leaves_the_original(domain: Domain) -> None:
    tracker = DialogueStateTracker.from_events(
        "cust-2", CONVERSATIONS["form, rejected, interrupted, resumed"], domain.slots)
    before = state(tracker)
    duplicate = tracker_copy.copy_tracker(tracker)
    # What an action's run does to the copy it gets: flags on the loop, slots, events.
    duplicate.interrupt_loop(False)
    duplicate.reject_action("order_form")
    duplicate.update(SlotSet("order_id", "87654321"))
    duplicate.update(ActionExecuted("action_order_status"))
    duplicate.update(ActiveLoop(None))
    assert state(tracker) == before
    assert duplicate.get_slot("order_id") == "87654321"
    assert tracker.get_slot("order_id") is None


def test_a_capped_history_is_copied_rasas_way(domain: Domain) -> None:
    tracker = DialogueStateTracker.from_events(
        "cust-3", CONVERSATIONS["restarted mid-form"], domain.slots, max_event_history=4)
    assert state(tracker_copy.copy_tracker(tracker)) == state(tracker_copy._rasa_copy(tracker))


def test_installed_when_rasa_loads_our_policies() -> None:
    import bot.policies  # noqa: F401  (installs the fixes, as the model load does)

    assert DialogueStateTracker.copy is tracker_copy.copy_tracker
