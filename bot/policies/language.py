"""Keeps the `language` slot on the language of the customer's latest message.

Rasa 3.6 can only fill slots from entities, intents or text, and a fake
`language` entity would show up in every NLU evaluation. A policy may instead
attach events to its prediction, applied whichever policy wins, so this one
predicts nothing and sets the slot before the bot's answer is rendered: a
customer who switches language gets the next answer in the new one.
"""

from __future__ import annotations

from typing import Any, Dict, List

from rasa.core.policies.policy import Policy, PolicyPrediction
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import IS_EXTERNAL
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import SlotSet, UserUttered
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker

from bot.nlu.language import LANGUAGE_KEY, LANGUAGES, message_language

SLOT = "language"


def _said_in(event: UserUttered, detect: bool = True) -> str | None:
    """The language NLU found in a user message (`detect`: or, without NLU output,
    the one its text shows)."""
    parse = event.parse_data or {}
    if LANGUAGE_KEY in parse:
        found = parse.get(LANGUAGE_KEY)
    else:
        found = message_language(event.text) if detect and event.text else None
    return found if found in LANGUAGES else None


def language_event(tracker: DialogueStateTracker) -> SlotSet | None:
    """The slot change the latest user message calls for, if any.

    A message without words (an emoji, an order number), or an intent triggered
    from outside, keeps the language of the customer's latest message that had
    words. That is read from the events themselves, not the slot: Rasa's
    two-stage fallback rewinds turns, and a replay can lose the slot's earlier
    value.
    """
    message = tracker.latest_message
    if message is None or not message.text:
        return None
    if (message.metadata or {}).get(IS_EXTERNAL):
        # An intent triggered through the HTTP API (the desk closing a chat): its text
        # is Rasa's "EXTERNAL: handoff_closed", not the customer's words.
        return None
    detected = _said_in(message)
    if detected is None:
        detected = next(
            (
                found
                for event in reversed(tracker.events)
                # Only messages NLU read: not e.g. "[image] https://…" lines a
                # channel writes for media.
                if isinstance(event, UserUttered) and (found := _said_in(event, detect=False))
            ),
            None,
        )
    if detected is None or tracker.get_slot(SLOT) == detected:
        return None
    return SlotSet(SLOT, detected)


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=False
)
class LanguagePolicy(Policy):
    """Sets the language slot; never predicts an action itself."""

    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        return {"priority": 0}

    def train(
        self,
        training_trackers: List[TrackerWithCachedStates],
        domain: Domain,
        **kwargs: Any,
    ) -> Resource:
        return self._resource

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: Dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        has_slot = any(slot.name == SLOT for slot in domain.slots)
        event = language_event(tracker) if has_slot else None
        return self._prediction(
            self._default_predictions(domain), events=[event] if event else None
        )
