from __future__ import annotations

from rasa.shared.core.events import SlotSet, UserUttered
from rasa.shared.core.slots import CategoricalSlot
from rasa.shared.core.trackers import DialogueStateTracker

from bot.policies.language import language_event


def tracker(slot: str | None, text: str, parsed: str | None = "absent") -> DialogueStateTracker:
    slots = [CategoricalSlot("language", [], values=["zh", "en"], initial_value=slot)]
    parse = {"intent": {"name": "greet", "confidence": 1.0}}
    if parsed != "absent":
        parse["language"] = parsed
    return DialogueStateTracker.from_events("t", [UserUttered(text, parse_data=parse)], slots)


def test_switch_to_the_language_of_the_latest_message() -> None:
    assert language_event(tracker("zh", "hello", "en")) == SlotSet("language", "en")
    assert language_event(tracker("en", "你好", "zh")) == SlotSet("language", "zh")


def test_no_event_when_the_language_is_unchanged_or_unknown() -> None:
    assert language_event(tracker("zh", "你好", "zh")) is None
    assert language_event(tracker("zh", "JM202411230456", None)) is None


def test_payloads_keep_the_language_even_without_nlu_output() -> None:
    # Button clicks ("/affirm") skip the NLU pipeline's output in some paths.
    assert language_event(tracker("zh", "/affirm")) is None
    assert language_event(tracker("zh", "where is my order")) == SlotSet("language", "en")


def test_an_intent_triggered_from_outside_keeps_the_language() -> None:
    # The desk closing a chat: Rasa's trigger_intent writes "EXTERNAL: handoff_closed",
    # which reads as English; a Chinese customer must get the survey in Chinese.
    slots = [CategoricalSlot("language", [], values=["zh", "en"], initial_value="zh")]
    events = [
        UserUttered("你好", parse_data={"intent": {"name": "greet"}, "language": "zh"}),
        UserUttered.create_external("handoff_closed"),
    ]
    assert language_event(DialogueStateTracker.from_events("t", events, slots)) is None
